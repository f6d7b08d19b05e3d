// redis_store: the counter store shared by every node, one Lua function call (FCALL) per request on one pipelined
// connection, and on the same connection the operator commands (locks, status, top, hold journal). Asio owns
// the socket, deadlines and reconnects; hiredis is only the RESP encoder/decoder.
// With Sentinel it asks the sentinels for the master at every (re)connect and confirms it with ROLE; over TLS
// when told (redis_link). Not a general Redis client: no Cluster (a cluster node is refused at the handshake:
// one atomic script over several identities needs them in one hash slot), no RESP3.
//
// Keys: <prefix>{<identity>} is a hash per identity: its counter buckets ("m60:<bucket>" = count), its lock
// ("lock" = "until_ms:since_ms:reason"), its baselines ("bm3600" = "average:last period:first period") and
// its signal caches ("xi86400" = "bucket:distinct"), with a TTL covering the longest window, the lock and,
// while a baseline is kept, 4 half-lives after its last fold; <prefix>{<identity>}:i86400:<bucket> is one
// quarter window of a signal (a HyperLogLog, same hash tag); <prefix>holds is the hold journal, a stream
// trimmed exactly to redis_options.journal on every add.
#pragma once

#include "redis_link.hpp"
#include "redis_sentinel.hpp"
#include "store.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace rg {

// The defaults are redis_defaults' (store_types.hpp), shared with the settings file.
struct redis_options {
  std::string address{redis_defaults::address};  // "host:port", "[v6]:port", "host" (port 6379), or a unix
                                                  // socket path starting with '/' (also "unix:/path")
  std::string username;                           // optional ACL user
  std::string password;                           // optional AUTH; never logged
  int db = redis_defaults::db;                    // SELECT when non-zero
  // Per-request deadline ("redis timeout"); also of the operator commands, except top and journal_read:
  // max(5 s, 10 x timeout).
  std::chrono::milliseconds timeout{redis_defaults::timeout};
  std::size_t max_pending = redis_defaults::max_pending;  // requests in flight to Redis; beyond: fail fast
                                                          // ("redis overloaded")
  std::string key_prefix{redis_defaults::key_prefix};
  journal_caps journal;  // the hold journal stream <key_prefix>holds
  // Sentinel: when sentinel.sentinels is not empty, `address` is ignored and the master is whichever server
  // the sentinels name (asked again at every reconnect, after a timeout, READONLY or NOREPLICAS).
  sentinel_options sentinel;
  redis_tls_options tls;  // TLS to the servers and to the sentinels alike
};

class redis_store final : public store {
 public:
  // Throws std::invalid_argument when `opts.address` cannot be parsed (a start-up configuration error).
  redis_store(boost::asio::any_io_executor ex, redis_options opts);
  // Stops: pending requests complete with ok=false; no handler is left waiting forever.
  ~redis_store() override;

  // Connect in the background (non-blocking); reconnects on its own until stop(). Until connected, requests
  // fail at once with "redis not connected". Connect + handshake have a deadline of max(1 s, 5 x timeout).
  void start();
  // Close, fail pending requests ("redis store stopped"), stop reconnecting (for shutdown); idempotent.
  // The store cannot be started again. Call it (or destroy the store) before its executor's io_context dies.
  void stop();
  bool connected() const;
  // Non-empty when the server can never serve this store (a Redis Cluster node): the store has stopped
  // reconnecting and fails every request with this text. The daemon refuses to start on it.
  const std::string& refused() const;

  std::string name() const override { return "redis"; }

  // The check-and-charge function's library (FUNCTION LOAD) and the function's name (the benchmark calls it
  // with redis-benchmark); its keys, arguments, layout and reply are laid out in redis_check.hpp.
  static std::string_view lua_script();
  static std::string_view lua_function();

 protected:
  void start_check(store_request req, boost::asio::any_completion_handler<void(store_result)> done) override;
  void start_admin(admin_request req, boost::asio::any_completion_handler<void(admin_result)> done) override;

 private:
  class impl;
  // Shared with the pending asynchronous operations, so a completion arriving after the store is gone
  // finds live memory (the socket and timers die with the last operation, not with this object).
  std::shared_ptr<impl> impl_;
};

}  // namespace rg
