// Test helper: sustained load on the real daemon. N persistent policy connections (like N smtpd processes),
// one thread each, send requests one at a time in a loop and record every request's answer and latency,
// bounded by time and count. It measures and prints; the tests judge. Not a benchmark (see tests/bench).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace rg::test {

class policy_client;
using load_clock = std::chrono::steady_clock;

struct load_sample {
  int conn = 0;           // connection index
  std::uint64_t seq = 0;  // request number on that connection
  load_clock::time_point sent, done;
  // The reply's action; "" when the peer closed, "timeout" past reply_timeout_ms, "malformed reply: ..."
  std::string action;

  bool answered() const {
    return !action.empty() && action != "timeout" && !action.starts_with("malformed reply");
  }
  double ms() const { return std::chrono::duration<double, std::milli>(done - sent).count(); }
};

struct load_options {
  std::string socket_path;
  int connections = 8;
  std::chrono::milliseconds duration{1000};  // each connection stops sending after this...
  std::uint64_t max_requests = 1'000'000;    // ...or after this many requests
  std::chrono::milliseconds pause{0};        // between an answer and the next request on a connection
  int reply_timeout_ms = 3000;  // a slower reply is recorded as "timeout" and ends the connection
  // The `seq`th request of connection `conn`. Default: a RCPT of a new message by sasl_username "load<conn>".
  std::function<std::string(int conn, std::uint64_t seq)> request;
};

struct load_summary {
  std::size_t sent = 0, answered = 0, errors = 0;  // errors: closed, timed out or malformed
  double max_ms = 0;                               // the slowest answer
  std::map<std::string, std::size_t> actions;      // answers by their first word (DUNNO, 450, 451, ...)

  std::size_t count(const std::string& first_word) const;
  std::string text() const;  // "sent=... answered=... errors=... max_ms=... actions={...}"
};

load_summary summarize(const std::vector<load_sample>& samples);

class load_driver {
 public:
  // Connects every connection first (throws if one cannot), then starts sending.
  explicit load_driver(load_options opts);
  ~load_driver();
  load_driver(const load_driver&) = delete;
  load_driver& operator=(const load_driver&) = delete;

  // Every connection ends after its current request; joins. Idempotent.
  void stop();
  // Joins after duration/max_requests ran out (bounded by duration + one reply timeout).
  void wait();
  std::size_t answered_so_far() const { return answered_.load(); }
  // After stop()/wait(): every request, connection by connection, in send order.
  const std::vector<load_sample>& samples() const { return samples_; }
  load_summary summary() const { return summarize(samples_); }

 private:
  void run(int conn);
  void join();

  load_options opts_;
  std::vector<std::unique_ptr<policy_client>> clients_;
  std::atomic<bool> stop_{false};
  std::atomic<std::size_t> answered_{0};
  std::vector<std::vector<load_sample>> per_conn_;
  std::vector<std::thread> threads_;
  std::vector<load_sample> samples_;
};

// One row of the docs/reliability.md table, printed as a line starting with "RELIABILITY:" so the table can
// be regenerated with: ctest --test-dir build -R '^(fault|hostile|sentinel):' -V | grep RELIABILITY:
void print_reliability(const std::string& what, const load_summary& s, int crashes, const std::string& notes,
                       const std::string& test);

// The daemon's resident memory in kB (VmRSS), 0 if unknown.
long rss_kb(int pid);

// Under AddressSanitizer freed memory stays in quarantine, so RSS growth says nothing about buffering.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool rss_is_meaningful = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool rss_is_meaningful = false;
#else
inline constexpr bool rss_is_meaningful = true;
#endif
#else
inline constexpr bool rss_is_meaningful = true;
#endif

}  // namespace rg::test
