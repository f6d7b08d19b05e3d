// The Redis store test bench shared by test_redis_store.cpp (counting, faults) and test_redis_admin.cpp
// (locks, journal, operator commands): a private redis-server, an io_context with a bounded run loop and a
// started redis_store, plus the fixed test epoch. No assertions of its own beyond "it came up in time".
#pragma once

#include "redis_fixture.hpp"
#include "redis_store.hpp"
#include "store_requests.hpp"

#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <algorithm>
#include <chrono>
#include <optional>
#include <string>

namespace rg::test {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

// A multiple of every bucket width used below (5 s for 60 s windows, 300 s for 3600 s windows).
inline constexpr std::int64_t t0 = 1'700'000'000'000;

// Runs the loop until `done()` or `limit`; the store's connection manager never runs out of work, so
// io_context::run() alone would never return.
template <typename Pred>
bool run_until(asio::io_context& io, Pred done, clock_type::duration limit) {
  const auto deadline = clock_type::now() + limit;
  while (!done()) {
    const auto now = clock_type::now();
    if (now >= deadline) return false;
    if (io.stopped()) io.restart();
    io.run_one_for(std::min<clock_type::duration>(deadline - now, 10ms));
  }
  return true;
}

inline void run_for(asio::io_context& io, clock_type::duration d) {
  run_until(io, [] { return false; }, d);
}

// The default 100 ms deadline is tight for a loaded CI box; timing tests set their own.
inline rg::redis_options relaxed() {
  rg::redis_options o;
  o.timeout = 1s;
  return o;
}

// `o` pointed at `server` as the fixture serves it: its unix socket, or TCP over TLS (RG_REDIS_TLS).
inline rg::redis_options for_server(const redis_server& server, rg::redis_options o = {}) {
  o.address = server.address();
  if (server.tls()) {
    o.tls.enabled = true;
    o.tls.ca_file = server.tls()->ca();
  }
  return o;
}

struct env {
  explicit env(rg::redis_options o = relaxed(), redis_server_options so = {}, bool tcp_address = false)
      : server(std::move(so)), store(io.get_executor(), fix(std::move(o), tcp_address)) {
    store.start();
    REQUIRE(run_until(io, [&] { return store.connected(); }, 2s));
  }
  rg::redis_options fix(rg::redis_options o, bool tcp_address) {
    o = for_server(server, std::move(o));
    if (tcp_address) o.address = "127.0.0.1:" + std::to_string(server.tcp_port());
    return o;
  }

  store_result check(store_request req) {
    std::optional<store_result> out;
    store.async_check(std::move(req), [&](store_result r) { out = std::move(r); });
    REQUIRE(run_until(io, [&] { return out.has_value(); }, 3s));
    return *out;
  }

  rg::admin_result admin(rg::admin_request req, clock_type::duration limit = 12s) {
    std::optional<rg::admin_result> out;
    store.async_admin(std::move(req), [&](rg::admin_result r) { out = std::move(r); });
    REQUIRE(run_until(io, [&] { return out.has_value(); }, limit));
    return *out;
  }

  redis_server server;  // declared first: outlives the store and the loop
  asio::io_context io;
  rg::redis_store store;
};

// The Redis hash field of a bucket ("m60:<bucket index>"), as the check script names it.
inline std::string field(char tag, std::uint32_t window_s, std::int64_t now_ms) {
  const std::int64_t w = window_s * 1000 / 12;
  return std::string(1, tag) + std::to_string(window_s) + ":" + std::to_string(now_ms / w);
}

}  // namespace rg::test
