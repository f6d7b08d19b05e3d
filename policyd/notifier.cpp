// The notification's text, and the child process: posix_spawn (its stdin and stdout+stderr are pipes the event
// loop drives with Asio, every other descriptor closed), then waitpid(WNOHANG) polled on a timer, bounded
// by a deadline past which the child is killed. Only our own child's pid is ever waited for or signalled.
#include "notifier.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cctype>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <cstring>
#include <spdlog/spdlog.h>

#include "decision_log.hpp"
#include "log_exception.hpp"

extern char** environ;

namespace rg {

namespace asio = boost::asio;
using asio::awaitable;
using namespace asio::experimental::awaitable_operators;
constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);

namespace {
// Held messages a notification lists (the newest ones): enough to act on, short enough to read.
constexpr std::size_t held_listed = 10;
// A mailer that has not finished by then is stuck: killed, and the failure logged.
constexpr auto child_deadline = std::chrono::seconds(60);
// What of the child's output is kept for the log line.
constexpr std::size_t output_kept = 512;

// Postfix queue IDs are letters and digits (short or long form): anything else is not pasted into a command.
bool plain_queue_id(std::string_view q) {
  if (q.empty() || q.size() > 32) return false;
  for (unsigned char c : q)
    if (!std::isalnum(c)) return false;
  return true;
}

std::vector<std::string> queue_ids(const notification& n) {
  std::vector<std::string> ids;
  for (const hold_record& h : n.held)
    if (plain_queue_id(h.queue_id)) ids.push_back(h.queue_id);
  return ids;
}

std::string hostname() {
  std::array<char, 256> buf{};
  if (gethostname(buf.data(), buf.size() - 1) != 0) return "localhost";
  return buf.data();
}
}  // namespace

std::string shell_quote(std::string_view s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string notification_mail(const notification& n, const std::string& to) {
  // Every value from a request is escaped (no control character: no header injection, no broken line).
  const std::string key = escape_log_value(n.lock.key, 256);
  std::string m;
  if (!to.empty()) m += "To: " + to + "\n";
  m += "Subject: rateguard on " + escape_log_value(n.host, 64) + ": " + key + " locked (" +
       escape_log_value(n.lock.rule, 128) + ")\n";
  m += "Auto-Submitted: auto-generated\nContent-Type: text/plain; charset=utf-8\n\n";
  m += "rateguardd locked " + key + " until " + iso_time(n.lock.until_ms) + ":\n";
  m += "every later message of this key is accepted and held in Postfix's hold queue.\n\n";
  m += "  rule    " + escape_log_value(n.lock.rule, 128) + "\n";
  m += "  reason  " + escape_log_value(n.lock.reason) + "\n";
  m += "  client  " + escape_log_value(n.lock.client, 64) + "\n";
  m += "  sender  <" + escape_log_value(n.lock.sender, 256) + ">\n\n";
  const auto ids = queue_ids(n);
  if (n.held.empty()) {
    m += "No held message of this key is in the hold journal yet.\n";
  } else {
    m += "Held messages of this key (the newest " + std::to_string(n.held.size()) + ", from the hold journal):\n";
    for (const hold_record& h : n.held)
      m += "  " + iso_time(h.time_ms) + "  " + (h.queue_id.empty() ? std::string("NOQUEUE") : escape_log_value(h.queue_id, 32)) +
           "  rcpts=" + std::to_string(h.recipients) + "  sender=<" + escape_log_value(h.sender, 256) + ">  " +
           escape_log_value(h.reason, 128) + "\n";
  }
  m += "\nIf the login is compromised: change its password, then delete the held mail:\n";
  for (const auto& q : ids) m += "  postsuper -d " + q + "\n";
  m += "If it is a false alarm: release the lock (held mail stays held), then release the held mail:\n";
  m += "  rateguardctl release " + shell_quote(key) + "\n";
  for (const auto& q : ids) m += "  postsuper -H " + q + "\n";
  m += "All held mail of this key: rateguardctl holds --key " + shell_quote(key) + "\n";
  return m;
}

std::vector<std::string> notification_env(const notification& n) {
  const auto ids = queue_ids(n);
  std::string list;
  for (const auto& q : ids) list += (list.empty() ? "" : " ") + q;
  const std::string key = escape_log_value(n.lock.key, 256);
  return {"RG_KEY=" + key,
          "RG_RULE=" + escape_log_value(n.lock.rule, 128),
          "RG_REASON=" + escape_log_value(n.lock.reason),
          "RG_UNTIL=" + iso_time(n.lock.until_ms),
          "RG_CLIENT=" + escape_log_value(n.lock.client, 64),
          "RG_SENDER=" + escape_log_value(n.lock.sender, 256),
          "RG_QUEUE_IDS=" + list,
          "RG_RELEASE_COMMAND=rateguardctl release " + shell_quote(key)};
}

notifier::notifier(asio::io_context& io, store& st, metrics::registry& reg)
    : io_(io), store_(st),
      results_(reg.counters("rateguard_notifications_total",
                            "Lock notifications by result (sent, failed, rate_limited)", {{"result"}})) {
  for (const char* r : {"sent", "failed", "rate_limited"}) results_.with({r});  // every series from the start
}

void notifier::apply(const daemon_config& c) {
  notify_ = c.notify;
  command_ = c.notify_command;
  sendmail_ = c.sendmail_path;
  rate_limit_ = c.notify_rate_limit;
  delay_ = c.notify_delay;
}

void notifier::on_lock(const lock_event& e) {
  if (!enabled()) return;
  const auto now = std::chrono::steady_clock::now();
  while (!sent_.empty() && now - sent_.front() >= std::chrono::hours(1)) sent_.pop_front();
  if (sent_.size() >= rate_limit_) {
    results_.with({"rate_limited"}).inc();
    limited_warning_.warn("notify: {} notifications in the last hour (notify_rate_limit): none sent for the lock of {}",
                          sent_.size(), escape_log_value(e.key));
    return;
  }
  sent_.push_back(now);
  asio::co_spawn(io_, send(e), [](std::exception_ptr ex) { log_exception(ex, "notify"); });
}

awaitable<void> notifier::send(lock_event e) {
  if (delay_.count() > 0) {
    asio::steady_timer t(io_, delay_);
    co_await t.async_wait(tuple_awaitable);
  }
  notification n{std::move(e), {}, hostname()};
  admin_request q;
  q.op = admin_op::journal_read;
  q.key = n.lock.key;
  q.limit = held_listed;
  admin_result res = co_await store_.async_admin(std::move(q), asio::use_awaitable);
  if (res.ok) n.held = std::move(res.holds);  // a store that does not answer: the mail says "none yet"
  std::vector<std::string> argv, env;
  std::string what;
  if (!notify_.empty()) {
    argv = {sendmail_, "-i", "--", notify_};
    what = "mail to " + notify_;
  } else {
    argv = {command_};
    env = notification_env(n);
    what = command_;
  }
  const std::string error = co_await run(std::move(argv), std::move(env), notification_mail(n, notify_));
  if (error.empty()) {
    results_.with({"sent"}).inc();
    spdlog::info("notify: {} about the lock of {}: sent", what, escape_log_value(n.lock.key));
  } else {
    results_.with({"failed"}).inc();
    spdlog::warn("notify: {} about the lock of {} failed: {}", what, escape_log_value(n.lock.key), error);
  }
}

awaitable<std::string> notifier::run(std::vector<std::string> argv, std::vector<std::string> env, std::string input) {
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0) co_return std::string("pipe: ") + std::strerror(errno);
  if (pipe2(out, O_CLOEXEC) != 0) {
    const int err = errno;
    ::close(in[0]);
    ::close(in[1]);
    co_return std::string("pipe: ") + std::strerror(err);
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, out[1], 2);
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);  // listeners, Redis, the log: none is the child's
  // Signals the daemon blocks or handles must not stay blocked in the mailer.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<std::string> envs;
  for (char** e = environ; *e; ++e) envs.emplace_back(*e);
  envs.insert(envs.end(), env.begin(), env.end());
  std::vector<char*> av, ev;
  for (auto& a : argv) av.push_back(a.data());
  av.push_back(nullptr);
  for (auto& e : envs) ev.push_back(e.data());
  ev.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, av[0], &fa, &attr, av.data(), ev.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ::close(in[0]);
  ::close(out[1]);
  if (rc != 0) {
    ::close(in[1]);
    ::close(out[0]);
    co_return argv[0] + ": " + std::strerror(rc);
  }
  asio::posix::stream_descriptor to_child(io_, in[1]), from_child(io_, out[0]);
  auto feed = [&]() -> awaitable<void> {
    co_await asio::async_write(to_child, asio::buffer(input), tuple_awaitable);  // EPIPE: the exit status says
    boost::system::error_code ignored;
    to_child.close(ignored);
  };
  std::string output;
  auto drain = [&]() -> awaitable<void> {
    std::array<char, 1024> buf;
    for (;;) {
      auto [ec, n] = co_await from_child.async_read_some(asio::buffer(buf), tuple_awaitable);
      if (ec) co_return;  // EOF: the child (and whatever it started) closed its output
      output.append(buf.data(), std::min(n, output_kept - std::min(output_kept, output.size())));
    }
  };
  const auto deadline = std::chrono::steady_clock::now() + child_deadline;
  asio::steady_timer timer(io_, deadline);
  co_await ((feed() && drain()) || timer.async_wait(tuple_awaitable));
  boost::system::error_code ignored;
  to_child.close(ignored);
  from_child.close(ignored);
  // Reaped by polling its own pid: no SIGCHLD handler to share with anything else in the process.
  int status = 0;
  pid_t done = 0;
  while ((done = ::waitpid(pid, &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < deadline) {
    timer.expires_after(std::chrono::milliseconds(50));
    co_await timer.async_wait(tuple_awaitable);
  }
  if (done == 0) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);  // at once: SIGKILL cannot be caught
    co_return argv[0] + ": still running after " + std::to_string(child_deadline.count()) + " s: killed";
  }
  while (!output.empty() && (output.back() == '\n' || output.back() == '\r')) output.pop_back();
  const std::string said = output.empty() ? std::string() : ": " + escape_log_value(output, output_kept);
  if (done < 0) co_return std::string("waitpid: ") + std::strerror(errno);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) co_return std::string();
  if (WIFEXITED(status)) co_return argv[0] + " exited with status " + std::to_string(WEXITSTATUS(status)) + said;
  co_return argv[0] + " killed by signal " + std::to_string(WTERMSIG(status)) + said;
}

}  // namespace rg
