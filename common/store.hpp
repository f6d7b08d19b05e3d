// The counter store interface: one atomic "check every counter, charge them all only if no refusing limit
// is exceeded" per request. Implementations: memory_store (in-process, one box) and redis_store (shared by
// every node on the same Redis). No rules or Postfix knowledge here: counters are identity + unit + window.
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <cstdint>
#include <string>
#include <vector>

namespace rg {

// Every window is cut into this many buckets; a count adds the current bucket and the `buckets_per_window`
// before it, each whole. So a count never misses an event of the last `seconds`, which gives the
// guarantee "at most N accepted in any interval of length T"; the price is that an old event keeps
// counting up to T/12 longer than an exact log would keep it.
inline constexpr std::uint32_t buckets_per_window = 12;

struct counter_spec {
  std::string identity;        // e.g. "u:alice", "ip:192.0.2.1", "s:bob@example.com", "d:example.com"
  char unit_tag = 'm';         // 'm' messages, 'r' recipients
  std::uint32_t window_s = 0;  // window length in seconds
  std::uint32_t cost = 1;      // what this request adds if charged
  // The smallest limit of a refusing rule (defer/reject) on this counter; 0 when none refuses. The
  // request is charged only if count + cost <= refuse_limit for every counter that has one.
  std::uint64_t refuse_limit = 0;
};

struct store_request {
  std::vector<counter_spec> counters;
  std::int64_t now_ms = 0;  // 0: the store's own clock (Redis: TIME, so nodes with skewed clocks agree)
  bool charge = true;       // false: only read the counts (rateguardctl explain)
};

struct store_result {
  bool ok = false;                   // false: store failure; `error` says why, counts are empty
  std::string error;
  std::vector<std::uint64_t> counts; // per counter, the count before this request (same order)
  bool charged = false;
};

class store {
 public:
  virtual ~store() = default;
  store() = default;
  store(const store&) = delete;
  store& operator=(const store&) = delete;

  // Completes exactly once, on the caller's executor, within the store's deadline.
  template <typename Token>
  auto async_check(store_request req, Token&& token) {
    return boost::asio::async_initiate<Token, void(store_result)>(
        [this](auto handler, store_request r) {
          start_check(std::move(r), boost::asio::any_completion_handler<void(store_result)>(std::move(handler)));
        },
        token, std::move(req));
  }

  virtual std::string name() const = 0;  // "memory" / "redis"

 protected:
  virtual void start_check(store_request req, boost::asio::any_completion_handler<void(store_result)> done) = 0;
};

}  // namespace rg
