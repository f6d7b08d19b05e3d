// Notify on lock: for each lock this daemon sets, one mail to `notify` through the local sendmail, or one run
// of `notify_command` with the facts in its environment (and the same text on its standard input). The
// child runs beside the event loop: spawned, fed through a pipe and reaped asynchronously, so a slow or
// broken mailer never delays a policy answer. Rate-limited (notify_rate_limit per hour); a failure is a
// warning in the log. Not here: deciding to lock (policy_service), the mail's delivery (Postfix).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <deque>
#include <string>
#include <vector>

#include "config.hpp"
#include "metrics.hpp"
#include "policy_service.hpp"
#include "rate_limited_warning.hpp"
#include "store.hpp"

namespace rg {

// What a notification says: the lock, the held messages of its key (newest last), the commands to act.
struct notification {
  lock_event lock;
  std::vector<hold_record> held;
  std::string host;  // this machine's name, for the subject
};
// The text of the mail (headers and body, for sendmail -i) or of notify_command's standard input.
std::string notification_mail(const notification& n, const std::string& to);
// notify_command's environment: RG_KEY, RG_RULE, RG_REASON, RG_UNTIL, RG_CLIENT, RG_SENDER, RG_QUEUE_IDS,
// RG_RELEASE_COMMAND, each NAME=VALUE.
std::vector<std::string> notification_env(const notification& n);
// `s` quoted for a POSIX shell (the commands in the mail are pasted into one).
std::string shell_quote(std::string_view s);

class notifier {
 public:
  // `st` (the hold journal) and `reg` must outlive the notifier.
  notifier(boost::asio::io_context& io, store& st, metrics::registry& reg);
  // notify, notify_command, sendmail_path, notify_rate_limit, notify_delay (a reload applies them).
  void apply(const daemon_config& c);
  bool enabled() const { return !notify_.empty() || !command_.empty(); }
  // A lock was set: after notify_delay, the notification goes out (unless the rate limit is reached).
  void on_lock(const lock_event& e);

 private:
  boost::asio::awaitable<void> send(lock_event e);
  // Runs argv with `env` added, writes `input` to its stdin; returns "" or why it failed.
  boost::asio::awaitable<std::string> run(std::vector<std::string> argv, std::vector<std::string> env,
                                          std::string input);

  boost::asio::io_context& io_;
  store& store_;
  std::string notify_, command_, sendmail_;
  std::size_t rate_limit_ = 10;
  std::chrono::milliseconds delay_{0};
  std::deque<std::chrono::steady_clock::time_point> sent_;  // the last hour's notifications
  metrics::family<metrics::counter>& results_;
  rate_limited_warning limited_warning_{std::chrono::minutes(1)};
};

}  // namespace rg
