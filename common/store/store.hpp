// The counter store interface: one atomic "check every counter, charge them all only if no refusing limit
// is exceeded" per request. Implementations: memory_store (in-process, one box) and redis_store (shared by
// every node on the same Redis). No rules or Postfix knowledge here: counters are identity + unit + window;
// the values it carries are in store_types.hpp.
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <stdexcept>
#include <string>

#include "store_types.hpp"

namespace rg {

// Completion contract of async_check and async_admin, kept by both stores and enforced by the "completion
// contract" tests (tests/unit/test_memory_store.cpp, tests/integration/test_redis_store.cpp): the handler runs
//   - exactly once, also when the store fails, is stopped or is destroyed with the request in flight;
//   - never before the initiating call has returned (nothing is called inline: a caller's loop cannot recurse);
//   - on the store's executor -- the one single-threaded io_context the store and its callers share (the daemon
//     has one) -- and NOT through the handler's own associated executor: the Redis store calls it from its read
//     loop, the memory store posts it to its executor. A caller on another executor (a strand, a thread pool)
//     must hop back itself.
class store {
 public:
  virtual ~store() = default;
  store() = default;
  store(const store&) = delete;
  store& operator=(const store&) = delete;

  // Completes per the contract above, within the store's deadline (the memory store has none to miss).
  template <typename Token>
  auto async_check(store_request req, Token&& token) {
    return boost::asio::async_initiate<Token, void(store_result)>(
        [this](auto handler, store_request r) {
          start_check(std::move(r), boost::asio::any_completion_handler<void(store_result)>(std::move(handler)));
        },
        token, std::move(req));
  }

  // Completes per the contract above, within the store's deadline (top may take several round trips: it still
  // has one overall deadline).
  template <typename Token>
  auto async_admin(admin_request req, Token&& token) {
    return boost::asio::async_initiate<Token, void(admin_result)>(
        [this](auto handler, admin_request r) {
          start_admin(std::move(r), boost::asio::any_completion_handler<void(admin_result)>(std::move(handler)));
        },
        token, std::move(req));
  }

  virtual std::string name() const = 0;  // "memory" / "redis"

  // A store whose every answer is ready when asked (the memory store: no I/O) says so and answers here, without a
  // completion handler, so a front decides without suspending. Only such a store is asked this way.
  virtual bool answers_at_once() const { return false; }
  virtual store_result check_at_once(const store_request&) { throw std::logic_error(name() + " store: no answer at once"); }
  virtual admin_result admin_at_once(const admin_request&) { throw std::logic_error(name() + " store: no answer at once"); }

 protected:
  virtual void start_check(store_request req, boost::asio::any_completion_handler<void(store_result)> done) = 0;
  virtual void start_admin(admin_request req, boost::asio::any_completion_handler<void(admin_result)> done) = 0;
};

}  // namespace rg
