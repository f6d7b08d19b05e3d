// Integration tests of redis_store against a real, private redis-server (fixture): counting semantics with
// injected time, key layout, TTLs, concurrency, deadlines, reconnects, NOSCRIPT and shutdown; locks, the
// hold journal and the operator commands.
// Each test runs its own io_context with a bounded run loop; none relies on a shared Redis.
#include "redis_fixture.hpp"
#include "redis_store.hpp"
#include "store_requests.hpp"

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <optional>
#include <iostream>
#include <sstream>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
using rg::counter_spec;
using rg::store_request;
using rg::store_result;
using rg::test::redis_server;
using rg::test::redis_server_options;
namespace sr = rg::test;  // the store request builders shared with the memory store tests

// A multiple of every bucket width used below (5 s for 60 s windows, 300 s for 3600 s windows).
constexpr std::int64_t t0 = 1'700'000'000'000;

counter_spec counter(std::string identity, std::uint32_t window_s, std::uint64_t limit, std::uint32_t cost = 1,
                     char tag = 'm') {
  counter_spec c;
  c.identity = std::move(identity);
  c.unit_tag = tag;
  c.window_s = window_s;
  c.cost = cost;
  c.refuse_limit = limit;
  return c;
}

store_request request(std::vector<counter_spec> counters, std::int64_t now_ms, bool charge = true) {
  store_request r;
  r.counters = std::move(counters);
  r.now_ms = now_ms;
  r.charge = charge;
  return r;
}

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

void run_for(asio::io_context& io, clock_type::duration d) {
  run_until(io, [] { return false; }, d);
}

// The default 100 ms deadline is tight for a loaded CI box; timing tests set their own.
rg::redis_options relaxed() {
  rg::redis_options o;
  o.timeout = 1s;
  return o;
}

struct env {
  explicit env(rg::redis_options o = relaxed(), redis_server_options so = {}, bool tcp_address = false)
      : server(std::move(so)), store(io.get_executor(), fix(std::move(o), tcp_address)) {
    store.start();
    REQUIRE(run_until(io, [&] { return store.connected(); }, 2s));
  }
  rg::redis_options fix(rg::redis_options o, bool tcp_address) {
    o.address = tcp_address ? "127.0.0.1:" + std::to_string(server.tcp_port()) : server.socket_path();
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

// Captures the default logger's lines ("level: message") for the lifetime of the object.
struct log_capture {
  log_capture() : previous(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(lines);
    auto logger = std::make_shared<spdlog::logger>("capture", sink);
    logger->set_pattern("%l: %v");
    logger->set_level(spdlog::level::debug);
    spdlog::set_default_logger(logger);
  }
  ~log_capture() { spdlog::set_default_logger(previous); }
  std::size_t count(std::string_view needle) const {
    const auto s = lines.str();
    std::size_t n = 0;
    for (auto pos = s.find(needle); pos != std::string::npos; pos = s.find(needle, pos + 1)) ++n;
    return n;
  }
  std::ostringstream lines;
  std::shared_ptr<spdlog::logger> previous;
};

std::string field(char tag, std::uint32_t window_s, std::int64_t now_ms) {
  const std::int64_t w = window_s * 1000 / 12;
  return std::string(1, tag) + std::to_string(window_s) + ":" + std::to_string(now_ms / w);
}

struct tally {
  int charged = 0, refused = 0, failed = 0, finished = 0;
};

asio::awaitable<void> fifty_requests(rg::redis_store& store, tally& t) {
  for (int i = 0; i < 50; ++i) {
    // Built outside the co_await: g++ 12 rejects a braced initializer list inside it ("array used as
    // initializer").
    auto req = request({counter("u:eve", 60, 100)}, t0);
    // The next request is issued from inside the previous one's completion: the re-entrant path.
    auto r = co_await store.async_check(std::move(req), asio::use_awaitable);
    if (!r.ok) {
      ++t.failed;
    } else if (r.charged) {
      ++t.charged;
    } else {
      ++t.refused;
    }
  }
  ++t.finished;
}

}  // namespace

TEST_CASE("a burst of N is allowed and the N+1st refused and not charged", "[redis]") {
  env e;
  constexpr std::uint64_t n = 5;
  for (std::uint64_t i = 0; i < n; ++i) {
    const auto r = e.check(request({counter("u:alice", 60, n)}, t0 + static_cast<std::int64_t>(i) * 10));
    REQUIRE(r.ok);
    CHECK(r.charged);
    REQUIRE(r.counts.size() == 1);
    CHECK(r.counts[0] == i);
  }
  const auto refused = e.check(request({counter("u:alice", 60, n)}, t0 + 100));
  REQUIRE(refused.ok);
  CHECK_FALSE(refused.charged);
  CHECK(refused.counts == std::vector<std::uint64_t>{n});

  // Refused means not charged: the count and the stored bucket stay at N.
  const auto again = e.check(request({counter("u:alice", 60, n)}, t0 + 200, false));
  CHECK(again.counts == std::vector<std::uint64_t>{n});
  CHECK(e.server.command({"HGETALL", "rg:{u:alice}"}) == "[" + field('m', 60, t0) + ", 5]");
}

TEST_CASE("window edges: an event counts for the whole window and drops within one bucket after", "[redis]") {
  env e;
  constexpr std::int64_t window_ms = 60'000, w = 5'000;
  auto count_at = [&](const std::string& id, std::int64_t now) {
    const auto r = e.check(request({counter(id, 60, 0)}, now, false));
    REQUIRE(r.ok);
    return r.counts.at(0);
  };
  SECTION("event at the first ms of its bucket") {
    REQUIRE(e.check(request({counter("u:a", 60, 0)}, t0)).charged);
    CHECK(count_at("u:a", t0 + window_ms - 1) == 1);
    CHECK(count_at("u:a", t0 + window_ms) == 1);
    CHECK(count_at("u:a", t0 + window_ms + w - 1) == 1);
    CHECK(count_at("u:a", t0 + window_ms + w) == 0);
  }
  SECTION("event at the last ms of its bucket") {
    const auto ev = t0 + w - 1;
    REQUIRE(e.check(request({counter("u:a", 60, 0)}, ev)).charged);
    CHECK(count_at("u:a", ev) == 1);
    CHECK(count_at("u:a", ev + window_ms - 1) == 1);
    CHECK(count_at("u:a", ev + window_ms + 1) == 0);
  }
  SECTION("a charge deletes buckets that fell out of the window, only of its own window") {
    REQUIRE(e.check(request({counter("u:a", 60, 0), counter("u:a", 3600, 0)}, t0)).charged);
    REQUIRE(e.check(request({counter("u:a", 60, 0)}, t0 + window_ms + w)).charged);
    const auto fields = e.server.command_list({"HKEYS", "rg:{u:a}"});
    CHECK(fields.size() == 2);
    CHECK(std::count(fields.begin(), fields.end(), field('m', 60, t0 + window_ms + w)) == 1);
    CHECK(std::count(fields.begin(), fields.end(), field('m', 3600, t0)) == 1);
    CHECK(std::count(fields.begin(), fields.end(), field('m', 60, t0)) == 0);
  }
}

TEST_CASE("several counters in one request: all charged or none", "[redis]") {
  env e;
  const auto both = [](std::int64_t now) {
    return request({counter("u:bob", 60, 10), counter("ip:192.0.2.1", 3600, 1), counter("d:example.com", 60, 0, 3)},
                   now);
  };
  const auto first = e.check(both(t0));
  REQUIRE(first.ok);
  CHECK(first.charged);
  CHECK(first.counts == std::vector<std::uint64_t>{0, 0, 0});

  const auto second = e.check(both(t0 + 1));  // the ip counter is full: nothing is charged
  REQUIRE(second.ok);
  CHECK_FALSE(second.charged);
  CHECK(second.counts == std::vector<std::uint64_t>{1, 1, 3});

  const auto read = e.check(request({counter("u:bob", 60, 0), counter("d:example.com", 60, 0)}, t0 + 2, false));
  CHECK(read.counts == std::vector<std::uint64_t>{1, 3});

  // Without a refusing limit a counter is charged however high it is.
  const auto unlimited = e.check(request({counter("d:example.com", 60, 0, 3)}, t0 + 3));
  CHECK(unlimited.charged);
  CHECK(unlimited.counts == std::vector<std::uint64_t>{3});
}

TEST_CASE("charge=false only reads", "[redis]") {
  env e;
  for (int i = 0; i < 3; ++i) {
    const auto r = e.check(request({counter("u:carol", 60, 5)}, t0 + i, false));
    REQUIRE(r.ok);
    CHECK_FALSE(r.charged);
    CHECK(r.counts == std::vector<std::uint64_t>{0});
  }
  CHECK(e.server.command({"EXISTS", "rg:{u:carol}"}) == "0");
  REQUIRE(e.check(request({counter("u:carol", 60, 5)}, t0 + 10)).charged);
  const auto r = e.check(request({counter("u:carol", 60, 5)}, t0 + 11, false));
  CHECK_FALSE(r.charged);
  CHECK(r.counts == std::vector<std::uint64_t>{1});
  CHECK(e.server.command({"HGET", "rg:{u:carol}", field('m', 60, t0)}) == "1");
}

TEST_CASE("keys get a TTL of window + two buckets that a shorter window never shortens", "[redis]") {
  env e;
  REQUIRE(e.check(request({counter("u:dave", 60, 0)}, t0)).charged);
  auto pttl = std::stoll(e.server.command({"PTTL", "rg:{u:dave}"}));
  CHECK(pttl > 60'000);
  CHECK(pttl <= 70'000);

  REQUIRE(e.check(request({counter("u:dave", 60, 0), counter("u:dave", 3600, 0, 1, 'r')}, t0 + 1)).charged);
  pttl = std::stoll(e.server.command({"PTTL", "rg:{u:dave}"}));
  CHECK(pttl > 3'600'000);
  CHECK(pttl <= 4'200'000);

  REQUIRE(e.check(request({counter("u:dave", 60, 0)}, t0 + 2)).charged);
  CHECK(std::stoll(e.server.command({"PTTL", "rg:{u:dave}"})) > 3'600'000);
}

TEST_CASE("8 concurrent coroutines x 50 requests on one store: exactly the limit is charged", "[redis]") {
  auto o = relaxed();
  o.timeout = 2s;
  env e(o);
  tally t;
  for (int c = 0; c < 8; ++c) asio::co_spawn(e.io, fifty_requests(e.store, t), asio::detached);
  REQUIRE(run_until(e.io, [&] { return t.finished == 8; }, 10s));
  CHECK(t.failed == 0);
  CHECK(t.charged == 100);
  CHECK(t.refused == 300);
  CHECK(e.check(request({counter("u:eve", 60, 100)}, t0, false)).counts == std::vector<std::uint64_t>{100});
}

TEST_CASE("Redis paused: every request fails within timeout + 50 ms and then works again", "[redis]") {
  rg::redis_options o;
  o.timeout = 100ms;
  env e(o);
  auto& store = e.store;

  e.server.pause();
  struct outcome {
    clock_type::time_point issued;
    std::optional<clock_type::time_point> done;
    store_result r;
  };
  std::vector<outcome> outcomes(20);
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    if (i == 10) run_for(e.io, 30ms);  // a second wave, with the first still in flight
    outcomes[i].issued = clock_type::now();
    store.async_check(request({counter("u:frank", 60, 0)}, t0, false), [&outcomes, i](store_result r) {
      outcomes[i].done = clock_type::now();
      outcomes[i].r = std::move(r);
    });
  }
  const bool all_done = run_until(
      e.io, [&] { return std::all_of(outcomes.begin(), outcomes.end(), [](auto& x) { return x.done.has_value(); }); },
      1s);
  e.server.resume();
  REQUIRE(all_done);
  for (const auto& x : outcomes) {
    CHECK_FALSE(x.r.ok);
    CHECK(x.r.error == "redis timeout");
    CHECK(*x.done - x.issued <= 150ms);
    CHECK(*x.done - x.issued >= 100ms);
  }
  // The late replies arrive now and are dropped; the FIFO stays in step, so the next answer is this one's.
  const auto charged = [&](std::int64_t now) {
    std::optional<store_result> out;
    store.async_check(request({counter("u:frank", 60, 0)}, now), [&](store_result r) { out = std::move(r); });
    REQUIRE(run_until(e.io, [&] { return out.has_value(); }, 2s));
    return *out;
  };
  const auto r1 = charged(t0);
  REQUIRE(r1.ok);
  CHECK(r1.counts == std::vector<std::uint64_t>{0});
  const auto r2 = charged(t0);
  REQUIRE(r2.ok);
  CHECK(r2.counts == std::vector<std::uint64_t>{1});
}

TEST_CASE("Redis unresponsive past the stall limit: connection dropped and back after resume", "[redis]") {
  log_capture logs;
  redis_server server;
  asio::io_context io;
  rg::redis_options o;
  o.address = server.socket_path();
  o.timeout = 100ms;  // stall limit max(1 s, 5 x timeout) = 1 s
  rg::redis_store store(io.get_executor(), o);
  store.start();
  REQUIRE(run_until(io, [&] { return store.connected(); }, 2s));

  server.pause();
  const auto paused_at = clock_type::now();
  std::optional<clock_type::time_point> dropped_at;
  int completed = 0, late = 0, issued = 0;
  while (clock_type::now() - paused_at < 1500ms) {
    const auto issued_at = clock_type::now();
    ++issued;
    store.async_check(request({counter("u:gina", 60, 0)}, t0, false), [&, issued_at](store_result r) {
      ++completed;
      if (r.ok || clock_type::now() - issued_at > 150ms) ++late;
    });
    run_for(io, 50ms);
    if (!store.connected() && !dropped_at) dropped_at = clock_type::now();
  }
  server.resume();
  const auto resumed_at = clock_type::now();
  REQUIRE(run_until(io, [&] { return completed == issued; }, 1s));
  CHECK(late == 0);
  REQUIRE(dropped_at.has_value());
  CHECK(*dropped_at - paused_at >= 1s);
  CHECK(*dropped_at - paused_at <= 1300ms);
  REQUIRE(run_until(io, [&] { return store.connected(); }, 2s));
  CHECK(clock_type::now() - resumed_at <= 1s);
  CHECK(logs.count("warning: redis " + o.address + ": connection lost: no reply for 1000 ms") == 1);
  CHECK(logs.count("warning:") == 1);
  CHECK(logs.count("connection restored") == 1);
}

TEST_CASE("Redis stopped and restarted: fail fast and reconnect on its own within 1 s with one warning", "[redis]") {
  log_capture logs;
  env e;
  REQUIRE(e.check(request({counter("u:hank", 60, 0)}, t0)).charged);

  e.server.stop();
  REQUIRE(run_until(e.io, [&] { return !e.store.connected(); }, 500ms));
  const auto before = clock_type::now();
  const auto r = e.check(request({counter("u:hank", 60, 0)}, t0));
  CHECK_FALSE(r.ok);
  CHECK(r.error == "redis not connected");
  CHECK(clock_type::now() - before < 50ms);

  run_for(e.io, 1200ms);  // several reconnect attempts fail meanwhile: they must not log each
  e.server.start();
  const auto restarted = clock_type::now();
  REQUIRE(run_until(e.io, [&] { return e.store.connected(); }, 2s));
  CHECK(clock_type::now() - restarted <= 1s);
  const auto after = e.check(request({counter("u:hank", 60, 0)}, t0));
  REQUIRE(after.ok);
  CHECK(after.charged);
  CHECK(after.counts == std::vector<std::uint64_t>{0});  // no persistence: counting starts afresh
  CHECK(logs.count("warning:") == 1);
  CHECK(logs.count("connection lost: closed by server") == 1);
  CHECK(logs.count("info: redis " + e.server.socket_path() + ": connection restored") == 1);
}

TEST_CASE("NOSCRIPT: after SCRIPT FLUSH the next request is resent with EVAL and succeeds", "[redis]") {
  env e;
  REQUIRE(e.check(request({counter("u:ian", 60, 10)}, t0)).charged);
  REQUIRE(e.server.command({"SCRIPT", "FLUSH"}) == "OK");
  REQUIRE(e.server.command({"CONFIG", "RESETSTAT"}) == "OK");
  const auto r = e.check(request({counter("u:ian", 60, 10)}, t0 + 1));
  REQUIRE(r.ok);
  CHECK(r.charged);
  CHECK(r.counts == std::vector<std::uint64_t>{1});  // charged once: the refused EVALSHA did not run
  const auto stats = e.server.command({"INFO", "commandstats"});
  CHECK(stats.find("cmdstat_eval:calls=1,") != std::string::npos);
  CHECK(stats.find("cmdstat_script|load:calls=1,") != std::string::npos);  // reloaded for the next ones
  const auto next = e.check(request({counter("u:ian", 60, 10)}, t0 + 2));
  CHECK(next.counts == std::vector<std::uint64_t>{2});
  CHECK(e.server.command({"INFO", "commandstats"}).find("cmdstat_eval:calls=1,") != std::string::npos);
}

TEST_CASE("identities with ':' '{' '}' and binary bytes stay in their own keys", "[redis]") {
  env e;
  const std::vector<std::string> ids = {"a",    "a:b", "a{b", "a}b", "{a}", "a}{b", "}", "",
                                        std::string("bin\0\x01\xff\r\n", 8)};
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const auto r = e.check(request({counter(ids[i], 60, 0, static_cast<std::uint32_t>(i + 1))}, t0));
    REQUIRE(r.ok);
    CHECK(r.counts == std::vector<std::uint64_t>{0});
  }
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const auto r = e.check(request({counter(ids[i], 60, 0)}, t0, false));
    CHECK(r.counts == std::vector<std::uint64_t>{i + 1});
  }
  CHECK(e.server.command_list({"KEYS", "rg:*"}).size() == ids.size());
  CHECK(e.server.command({"HGET", "rg:{" + ids.back() + "}", field('m', 60, t0)}) == std::to_string(ids.size()));
}

TEST_CASE("Redis TIME is used when now_ms is 0", "[redis]") {
  env e;
  REQUIRE(e.check(request({counter("u:jack", 60, 0)}, 0)).charged);
  CHECK(e.check(request({counter("u:jack", 60, 0)}, 0, false)).counts == std::vector<std::uint64_t>{1});
  // Injected time far in the past sees nothing of it.
  CHECK(e.check(request({counter("u:jack", 60, 0)}, t0 - 3'600'000'000, false)).counts ==
        std::vector<std::uint64_t>{0});
}

TEST_CASE("TCP address with AUTH and SELECT and a wrong password reported once and never logged", "[redis]") {
  redis_server_options so;
  so.tcp = true;
  so.password = "s3cret-pw";
  SECTION("right password") {
    auto o = relaxed();
    o.password = so.password;
    o.db = 3;
    env e(o, so, true);
    REQUIRE(e.check(request({counter("u:kim", 60, 0)}, t0)).charged);
    CHECK(e.server.command({"EXISTS", "rg:{u:kim}"}, 3) == "1");
    CHECK(e.server.command({"EXISTS", "rg:{u:kim}"}, 0) == "0");
  }
  SECTION("wrong password") {
    log_capture logs;
    redis_server server(so);
    asio::io_context io;
    rg::redis_options o;
    o.address = "127.0.0.1:" + std::to_string(server.tcp_port());
    o.password = "wrong-pw";
    rg::redis_store store(io.get_executor(), o);
    store.start();
    run_for(io, 800ms);
    CHECK_FALSE(store.connected());
    CHECK(logs.count("warning: redis " + o.address + ": cannot connect: AUTH: WRONGPASS") == 1);
    CHECK(logs.count("warning:") == 1);
    CHECK(logs.count("wrong-pw") == 0);
  }
}

TEST_CASE("fail fast when not started or overloaded or stopped: every request completes exactly once", "[redis]") {
  redis_server server;
  asio::io_context io;
  rg::redis_options o;
  o.address = server.socket_path();
  o.max_pending = 4;
  o.timeout = 200ms;
  std::vector<std::string> errors;
  auto issue = [&](rg::redis_store& s) {
    s.async_check(request({counter("u:lee", 60, 0)}, t0), [&](store_result r) { errors.push_back(r.error); });
  };

  SECTION("not started") {
    rg::redis_store store(io.get_executor(), o);
    issue(store);
    CHECK(errors.empty());  // never completed inside the initiating call
    REQUIRE(run_until(io, [&] { return errors.size() == 1; }, 100ms));
    CHECK(errors[0] == "redis not connected");
  }
  SECTION("overloaded beyond max_pending") {
    rg::redis_store store(io.get_executor(), o);
    store.start();
    REQUIRE(run_until(io, [&] { return store.connected(); }, 2s));
    server.pause();
    for (int i = 0; i < 10; ++i) issue(store);
    REQUIRE(run_until(io, [&] { return errors.size() == 6; }, 50ms));
    CHECK(std::count(errors.begin(), errors.end(), "redis overloaded") == 6);
    REQUIRE(run_until(io, [&] { return errors.size() == 10; }, 1s));
    CHECK(std::count(errors.begin(), errors.end(), "redis timeout") == 4);
    server.resume();
  }
  SECTION("stop() fails what is in flight, and everything after") {
    rg::redis_store store(io.get_executor(), o);
    store.start();
    REQUIRE(run_until(io, [&] { return store.connected(); }, 2s));
    server.pause();
    for (int i = 0; i < 3; ++i) issue(store);
    run_for(io, 20ms);
    store.stop();
    issue(store);
    REQUIRE(run_until(io, [&] { return errors.size() == 4; }, 100ms));
    CHECK(std::count(errors.begin(), errors.end(), "redis store stopped") == 4);
    CHECK_FALSE(store.connected());
    run_for(io, 300ms);  // past the request deadline: no second completion
    CHECK(errors.size() == 4);
    server.resume();
  }
  SECTION("destroyed with a request in flight and the loop not running") {
    {
      rg::redis_store store(io.get_executor(), o);
      store.start();
      REQUIRE(run_until(io, [&] { return store.connected(); }, 2s));
      issue(store);
    }
    CHECK(errors.empty());  // completion is posted to the loop, not run from the destructor
    run_for(io, 300ms);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0] == "redis store stopped");
  }
}

TEST_CASE("a server that accepts but never answers: the connect deadline retries with one warning", "[redis]") {
  // A listening unix socket nobody accepts on: the kernel completes connect(), then silence, like a
  // stopped Redis or a black-holed host.
  char dir_template[] = "/tmp/rg-blackhole-XXXXXX";
  REQUIRE(mkdtemp(dir_template) != nullptr);
  const std::string dir = dir_template;
  const std::string path = dir + "/sock";
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
  REQUIRE(fd >= 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::copy(path.begin(), path.end(), sa.sun_path);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  REQUIRE(listen(fd, 16) == 0);

  log_capture logs;
  int attempts = 0;
  {
    asio::io_context io;
    rg::redis_options o;
    o.address = path;
    o.timeout = 100ms;  // connect deadline max(1 s, 5 x timeout) = 1 s
    rg::redis_store store(io.get_executor(), o);
    store.start();
    run_for(io, 2300ms);
    CHECK_FALSE(store.connected());
    while (true) {  // count the connections made, without answering them
      const int c = accept(fd, nullptr, nullptr);
      if (c < 0) break;
      ::close(c);
      ++attempts;
    }
  }
  ::close(fd);
  std::filesystem::remove_all(dir);
  CHECK(attempts >= 2);  // 0 s, then after 1 s + back-off, then again
  CHECK(attempts <= 3);
  CHECK(logs.count("warning: redis " + path + ": cannot connect: connect timeout") == 1);
  CHECK(logs.count("warning:") == 1);
}

TEST_CASE("fixture: persistence keeps data across stop/start and without it data is gone", "[redis][fixture]") {
  redis_server_options so;
  so.persistence = true;
  redis_server durable(so);
  redis_server volatile_server;
  for (auto* s : {&durable, &volatile_server}) {
    REQUIRE(s->command({"SET", "k", "v"}) == "OK");
    const auto old_pid = s->pid();
    s->stop();
    CHECK_FALSE(s->running());
    s->start();
    CHECK(s->pid() != old_pid);
  }
  CHECK(durable.command({"GET", "k"}) == "v");
  CHECK(volatile_server.command({"GET", "k"}) == "(nil)");
}

TEST_CASE("bad addresses are rejected at construction", "[redis]") {
  asio::io_context io;
  for (const char* bad : {"", "host:", "host:0", "host:99999", "::1:6379", "[::1", "unix:relative", ":6379"}) {
    rg::redis_options o;
    o.address = bad;
    CHECK_THROWS_AS(rg::redis_store(io.get_executor(), o), std::invalid_argument);
  }
  for (const char* good : {"localhost", "127.0.0.1:6379", "[::1]:6379", "/run/redis.sock", "unix:/run/redis.sock"}) {
    rg::redis_options o;
    o.address = good;
    CHECK_NOTHROW(rg::redis_store(io.get_executor(), o));
  }
}

// --- locks, operator commands, hold journal -------------------------------------------------------------------

TEST_CASE("a lock is seen by the check script once per identity and kept, released and reset", "[redis][admin]") {
  env e;
  const auto set = e.admin(sr::lock("u:alice", 60'000, "limits.conf:7 61 messages per 1m", t0));
  REQUIRE(set.ok);
  CHECK(set.changed);
  REQUIRE(set.identities.size() == 1);
  REQUIRE(set.identities[0].lock);
  CHECK(set.identities[0].lock->identity == "u:alice");
  CHECK(set.identities[0].lock->since_ms == t0);
  CHECK(set.identities[0].lock->until_ms == t0 + 60'000);
  // The field of the identity's own hash, with a TTL that covers the lock.
  CHECK(e.server.command({"HGET", "rg:{u:alice}", "lock"}) ==
        std::to_string(t0 + 60'000) + ":" + std::to_string(t0) + ":limits.conf:7 61 messages per 1m");
  const auto pttl = std::stoll(e.server.command({"PTTL", "rg:{u:alice}"}));
  CHECK(pttl > 55'000);
  CHECK(pttl <= 60'000);

  // Two locked identities, one of them with two counters, and one unlocked: each locked one once, in the
  // order of the request; the lock changes neither counting nor charging.
  REQUIRE(e.admin(sr::lock("d:example.com", 60'000, "by hand", t0)).changed);
  const auto r = e.check(request(
      {counter("ip:192.0.2.1", 60, 0), counter("d:example.com", 60, 0), counter("u:alice", 60, 10), counter("u:alice", 3600, 0)},
      t0 + 1000));
  REQUIRE(r.ok);
  CHECK(r.charged);
  CHECK(r.counts == std::vector<std::uint64_t>{0, 0, 0, 0});
  REQUIRE(r.locks.size() == 2);
  CHECK(r.locks[0].identity == "d:example.com");
  CHECK(r.locks[0].reason == "by hand");
  CHECK(r.locks[1].identity == "u:alice");
  CHECK(r.locks[1].until_ms == t0 + 60'000);
  CHECK(r.locks[1].reason == "limits.conf:7 61 messages per 1m");
  CHECK(e.check(request({counter("u:alice", 60, 0)}, t0 + 2000, false)).locks.size() == 1);
  CHECK(e.check(request({counter("ip:192.0.2.1", 60, 0)}, t0 + 2000, false)).locks.empty());

  const auto again = e.admin(sr::lock("u:alice", 999'000, "second", t0 + 3000));
  REQUIRE(again.ok);
  CHECK_FALSE(again.changed);
  CHECK(again.identities.at(0).lock->reason == "limits.conf:7 61 messages per 1m");

  CHECK(e.admin(sr::op(rg::admin_op::release, "u:alice", t0 + 4000)).changed);
  CHECK_FALSE(e.admin(sr::op(rg::admin_op::release, "u:alice", t0 + 4001)).changed);
  CHECK(e.server.command({"HEXISTS", "rg:{u:alice}", "lock"}) == "0");
  CHECK(e.check(request({counter("u:alice", 60, 0)}, t0 + 5000, false)).counts == std::vector<std::uint64_t>{1});

  CHECK(e.admin(sr::op(rg::admin_op::reset, "d:example.com", t0 + 6000)).changed);
  CHECK(e.server.command({"EXISTS", "rg:{d:example.com}"}) == "0");
  CHECK_FALSE(e.admin(sr::op(rg::admin_op::reset, "d:example.com", t0 + 6001)).changed);
  const auto bad = e.admin(sr::lock("u:x", 0, "no ttl", t0));
  CHECK_FALSE(bad.ok);
  CHECK(bad.error == "lock: ttl must be positive");
}

TEST_CASE("an ended lock is ignored by the check and by status and can be replaced", "[redis][admin]") {
  env e;
  REQUIRE(e.admin(sr::lock("u:bob", 10'000, "short", t0)).changed);
  CHECK(e.check(request({counter("u:bob", 60, 0)}, t0 + 9'999)).locks.size() == 1);
  const auto ended = e.check(request({counter("u:bob", 60, 0)}, t0 + 10'000));
  REQUIRE(ended.ok);
  CHECK(ended.charged);
  CHECK(ended.locks.empty());
  CHECK_FALSE(e.admin(sr::op(rg::admin_op::status, "u:bob", t0 + 10'000)).identities.at(0).lock);
  CHECK_FALSE(e.admin(sr::op(rg::admin_op::release, "u:bob", t0 + 10'001)).changed);  // removes it, says 0
  CHECK(e.server.command({"HEXISTS", "rg:{u:bob}", "lock"}) == "0");
  REQUIRE(e.admin(sr::lock("u:bob", 10'000, "first", t0 + 20'000)).changed);
  const auto replaced = e.admin(sr::lock("u:bob", 5'000, "replacement", t0 + 30'000));
  CHECK(replaced.changed);
  CHECK(replaced.identities.at(0).lock->since_ms == t0 + 30'000);
  // A malformed lock field (not ours) is ignored by the check rather than failing it.
  REQUIRE(e.server.command({"HSET", "rg:{u:carl}", "lock", "garbage"}) == "1");
  const auto odd = e.check(request({counter("u:carl", 60, 0)}, t0));
  CHECK(odd.ok);
  CHECK(odd.locks.empty());
}

TEST_CASE("a lock outlives the counters' TTL: the key lives until the lock ends and charges never shorten it",
          "[redis][admin]") {
  env e;
  // Real time here (now_ms 0): a 1 s window keeps its counters 1 s + 2 buckets (about 1.17 s).
  auto charge = [&] { return e.check(request({counter("u:dana", 1, 0)}, 0)); };
  REQUIRE(charge().charged);
  CHECK(std::stoll(e.server.command({"PTTL", "rg:{u:dana}"})) <= 1'170);
  REQUIRE(e.admin(sr::lock("u:dana", 2'500, "outlives", 0)).changed);
  CHECK(std::stoll(e.server.command({"PTTL", "rg:{u:dana}"})) > 2'000);
  REQUIRE(charge().charged);  // needs 1.17 s: must not lower the lock's TTL
  CHECK(std::stoll(e.server.command({"PTTL", "rg:{u:dana}"})) > 2'000);

  run_for(e.io, 1'600ms);  // the counters would have expired by now, the lock has not
  CHECK(e.server.command({"EXISTS", "rg:{u:dana}"}) == "1");
  const auto st = e.admin(sr::op(rg::admin_op::status, "u:dana", 0));
  REQUIRE(st.identities.at(0).lock);
  REQUIRE(st.identities[0].windows.size() == 1);
  CHECK(st.identities[0].windows[0].count == 0);
  CHECK(e.check(request({counter("u:dana", 1, 0)}, 0, false)).locks.size() == 1);

  REQUIRE(run_until(e.io, [&] { return e.server.command({"EXISTS", "rg:{u:dana}"}) == "0"; }, 2s));
  CHECK(e.check(request({counter("u:dana", 1, 0)}, 0, false)).locks.empty());
}

TEST_CASE("status lists every charged window sorted with the counts the check sees", "[redis][admin]") {
  env e;
  const auto unknown = e.admin(sr::op(rg::admin_op::status, "u:erin", t0));
  REQUIRE(unknown.ok);
  REQUIRE(unknown.identities.size() == 1);
  CHECK(unknown.identities[0].identity == "u:erin");
  CHECK(unknown.identities[0].windows.empty());
  CHECK_FALSE(unknown.identities[0].lock);
  for (int i = 0; i < 4; ++i) {
    REQUIRE(e.check(request({counter("u:erin", 3600, 0, 2, 'r'), counter("u:erin", 60, 0), counter("u:erin", 86400, 0)},
                            t0 + i * 20'000))
                .charged);
  }
  REQUIRE(e.admin(sr::lock("u:erin", 600'000, "watch", t0)).changed);
  const std::int64_t now = t0 + 65'000;
  const auto st = e.admin(sr::op(rg::admin_op::status, "u:erin", now));
  REQUIRE(st.ok);
  const auto& w = st.identities.at(0).windows;
  REQUIRE(w.size() == 3);
  CHECK((w[0].unit_tag == 'm' && w[0].window_s == 60));
  CHECK((w[1].unit_tag == 'm' && w[1].window_s == 86400));
  CHECK((w[2].unit_tag == 'r' && w[2].window_s == 3600));
  const auto seen = e.check(
      request({counter("u:erin", 60, 0), counter("u:erin", 86400, 0), counter("u:erin", 3600, 0, 1, 'r')}, now, false));
  CHECK(seen.counts == std::vector<std::uint64_t>{w[0].count, w[1].count, w[2].count});
  CHECK(w[0].count == 3);
  CHECK(w[1].count == 4);
  CHECK(w[2].count == 8);
  REQUIRE(st.identities[0].lock);
  CHECK(st.identities[0].lock->reason == "watch");
}

TEST_CASE("top orders by count then identity within prefix and limit across many SCAN steps", "[redis][admin]") {
  env e;
  // 2500 users with 1 message each (several SCAN steps and read batches), a few heavier ones, other kinds.
  std::string lua = "for i = 1, 2500 do redis.call('HSET', 'rg:{u:bulk' .. i .. '}', ARGV[1], 1) end";
  REQUIRE(e.server.command({"EVAL", lua, "0", field('m', 60, t0)}) == "(nil)");
  const std::vector<std::pair<std::string, int>> load = {
      {"u:a", 3}, {"u:b", 5}, {"u:c", 3}, {"ip:192.0.2.1", 9}, {"u:e", 0}, {"u:a*[x]", 4}};
  for (auto& [id, n] : load) {
    for (int i = 0; i < n; ++i) REQUIRE(e.check(request({counter(id, 60, 0)}, t0 + i)).charged);
    if (n == 0) REQUIRE(e.check(request({counter(id, 3600, 0)}, t0)).charged);
  }
  REQUIRE(e.check(request({counter("u:f", 60, 0)}, t0 - 200'000)).charged);  // out of the window by now
  REQUIRE(e.admin(sr::lock("u:c", 60'000, "held", t0)).changed);

  const auto r = e.admin(sr::top("u:", 'm', 60, 4, t0 + 100));
  REQUIRE(r.ok);
  CHECK_FALSE(r.truncated);
  REQUIRE(r.identities.size() == 4);
  CHECK(r.identities[0].identity == "u:b");
  CHECK(r.identities[1].identity == "u:a*[x]");  // glob characters in an identity are data
  CHECK(r.identities[2].identity == "u:a");
  CHECK(r.identities[3].identity == "u:c");
  CHECK(r.identities[0].windows == std::vector<rg::window_count>{{'m', 60, 5}});
  CHECK_FALSE(r.identities[0].lock);
  REQUIRE(r.identities[3].lock);
  CHECK(r.identities[3].lock->identity == "u:c");
  CHECK(r.identities[3].lock->reason == "held");

  const auto all = e.admin(sr::top("u:", 'm', 60, 100000, t0 + 100));
  CHECK(all.identities.size() == 2504);  // u:e has no 60 s counter, u:f's count is 0 by now
  CHECK(all.identities.back().identity == "u:bulk999");  // ties by identity
  CHECK(e.admin(sr::top("ip:", 'm', 60, 100, t0 + 100)).identities.size() == 1);
  CHECK(e.admin(sr::top("u:a*", 'm', 60, 100, t0 + 100)).identities.size() == 1);  // prefix taken literally
  CHECK(e.admin(sr::top("u:", 'r', 60, 100, t0 + 100)).identities.empty());
  CHECK(e.admin(sr::top("u:", 'm', 60, 0, t0 + 100)).identities.empty());
}

TEST_CASE("top stops after top_scan_max identities and says so", "[redis][admin]") {
  env e;
  const std::string lua = "for i = 1, tonumber(ARGV[2]) do redis.call('HSET', 'rg:{u:' .. i .. '}', ARGV[1], i % 7 + 1) end";
  REQUIRE(e.server.command({"EVAL", lua, "0", field('m', 60, t0), std::to_string(rg::top_scan_max + 500)}) == "(nil)");
  const auto started = clock_type::now();
  const auto r = e.admin(sr::top("u:", 'm', 60, 5, t0), 30s);
  INFO("top over " << rg::top_scan_max + 500 << " keys took "
                   << std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - started).count() << " ms");
  REQUIRE(r.ok);
  CHECK(r.truncated);
  REQUIRE(r.identities.size() == 5);
  for (const auto& i : r.identities) CHECK(i.windows.at(0).count == 7);
  // The same store answers checks meanwhile and afterwards.
  CHECK(e.check(request({counter("u:1", 60, 0)}, t0, false)).counts == std::vector<std::uint64_t>{2});
}

TEST_CASE("the hold journal keeps exactly its length cap and reads newest within since key and limit",
          "[redis][admin]") {
  auto o = relaxed();
  o.journal = {5, std::chrono::hours(1)};
  env e(o);
  for (int i = 0; i < 8; ++i) {
    const auto r = e.admin(sr::hold(i % 2 ? "sasl_username:odd" : "sasl_username:even", "Q" + std::to_string(i), t0 + i));
    REQUIRE(r.ok);
    REQUIRE(r.holds.size() == 1);
    CHECK(r.holds[0].id == std::to_string(t0 + i) + "-0");
    CHECK(r.holds[0].time_ms == t0 + i);
  }
  CHECK(e.server.command({"XLEN", "rg:holds"}) == "5");
  const auto all = e.admin(sr::holds(0, "", 100));
  REQUIRE(all.ok);
  CHECK(sr::queue_ids(all) == std::vector<std::string>{"Q3", "Q4", "Q5", "Q6", "Q7"});
  const auto& h = all.holds.back();
  CHECK(h.id == std::to_string(t0 + 7) + "-0");
  CHECK(h.time_ms == t0 + 7);
  CHECK(h.instance == "i.Q7");
  CHECK(h.key == "sasl_username:odd");
  CHECK(h.rule == "limits.conf:7");
  CHECK(h.reason == "rate");
  CHECK(h.client == "192.0.2.7");
  CHECK(h.sender == "a@example.com");
  CHECK(h.recipients == 3);
  CHECK(sr::queue_ids(e.admin(sr::holds(0, "", 2))) == std::vector<std::string>{"Q6", "Q7"});
  CHECK(sr::queue_ids(e.admin(sr::holds(0, "sasl_username:odd", 100))) == std::vector<std::string>{"Q3", "Q5", "Q7"});
  CHECK(sr::queue_ids(e.admin(sr::holds(t0 + 5, "", 100))) == std::vector<std::string>{"Q5", "Q6", "Q7"});
  CHECK(sr::queue_ids(e.admin(sr::holds(t0 + 5, "sasl_username:even", 1))) == std::vector<std::string>{"Q6"});
  CHECK(e.admin(sr::holds(0, "", 0)).holds.empty());
}

TEST_CASE("the hold journal drops entries older than its age cap and keeps ids increasing", "[redis][admin]") {
  auto o = relaxed();
  o.journal = {100, std::chrono::seconds(60)};
  env e(o);
  REQUIRE(e.admin(sr::hold("k:a", "A", t0)).ok);
  REQUIRE(e.admin(sr::hold("k:b", "B", t0 + 30'000)).ok);
  REQUIRE(e.admin(sr::hold("k:c", "C", t0 + 60'000)).ok);
  CHECK(sr::queue_ids(e.admin(sr::holds(0, "", 100))) == std::vector<std::string>{"A", "B", "C"});
  REQUIRE(e.admin(sr::hold("k:d", "D", t0 + 60'001)).ok);
  CHECK(sr::queue_ids(e.admin(sr::holds(0, "", 100))) == std::vector<std::string>{"B", "C", "D"});
  const auto same = e.admin(sr::hold("k:e", "E", t0 + 60'001));
  const auto back = e.admin(sr::hold("k:f", "F", t0 + 10));
  CHECK(same.holds.at(0).id == std::to_string(t0 + 60'001) + "-1");
  CHECK(back.holds.at(0).id == std::to_string(t0 + 60'001) + "-2");
  auto big = sr::hold("k:g", "G", t0 + 70'000);
  big.record.sender = std::string(10'000, 'x');
  CHECK(e.admin(big).holds.at(0).sender.size() == rg::journal_field_max);
  CHECK(e.server.command({"XLEN", "rg:holds"}) == "6");
  CHECK(e.admin(sr::holds(0, "k:g", 1)).holds.at(0).sender.size() == rg::journal_field_max);

  // Redis' own clock when now_ms is 0: the ID is the time of the hold.
  const auto wall = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch()).count();
  const auto real = e.admin(sr::hold("k:h", "H", 0));
  CHECK(std::abs(real.holds.at(0).time_ms - wall) < 5'000);
  // ...and an age cap relative to it dropped everything of 2023.
  CHECK(sr::queue_ids(e.admin(sr::holds(0, "", 100))) == std::vector<std::string>{"H"});
}

TEST_CASE("journal_read pages through more entries than one XREVRANGE with a key filter", "[redis][admin]") {
  auto o = relaxed();
  o.journal = {5000, std::chrono::hours(24)};
  env e(o);
  // 3000 entries through the store would take a while on a shared box: the script's own XADD layout, by Lua.
  const std::string lua = R"(for i = 1, 3000 do
    redis.call('XADD', KEYS[1], (ARGV[1] + i) .. '-0', 'queue_id', 'Q' .. i, 'instance', '', 'key', 'k:' .. (i % 3),
               'rule', '', 'reason', '', 'client', '', 'sender', '', 'recipients', '1')
  end)";
  REQUIRE(e.server.command({"EVAL", lua, "1", "rg:holds", std::to_string(t0)}) == "(nil)");
  const auto r = e.admin(sr::holds(0, "k:1", 1500));
  REQUIRE(r.ok);
  REQUIRE(r.holds.size() == 1000);  // every third of 3000
  CHECK(r.holds.front().queue_id == "Q1");
  CHECK(r.holds.back().queue_id == "Q2998");
  const auto some = e.admin(sr::holds(t0 + 1001, "k:2", 10));
  REQUIRE(some.holds.size() == 10);
  CHECK(some.holds.front().queue_id == "Q2972");
  CHECK(some.holds.back().queue_id == "Q2999");
  const auto plain = e.admin(sr::holds(0, "", 2500));
  REQUIRE(plain.holds.size() == 2500);
  CHECK(plain.holds.front().queue_id == "Q501");
}

TEST_CASE("operator scripts survive SCRIPT FLUSH: NOSCRIPT is answered with EVAL", "[redis][admin]") {
  env e;
  REQUIRE(e.admin(sr::lock("u:ian", 60'000, "x", t0)).changed);
  REQUIRE(e.server.command({"SCRIPT", "FLUSH"}) == "OK");
  REQUIRE(e.server.command({"CONFIG", "RESETSTAT"}) == "OK");
  const auto st = e.admin(sr::op(rg::admin_op::status, "u:ian", t0 + 1));
  REQUIRE(st.ok);
  CHECK(st.identities.at(0).lock);
  CHECK(e.admin(sr::op(rg::admin_op::release, "u:ian", t0 + 2)).changed);  // a second script, also reloaded
  CHECK(e.admin(sr::hold("k:x", "X", t0)).ok);
  const auto stats = e.server.command({"INFO", "commandstats"});
  CHECK(stats.find("cmdstat_eval:calls=3,") != std::string::npos);
  CHECK(stats.find("cmdstat_script|load:calls=3,") != std::string::npos);
  REQUIRE(e.admin(sr::lock("u:ian", 60'000, "y", t0 + 3)).changed);
  CHECK(e.admin(sr::op(rg::admin_op::status, "u:ian", t0 + 4)).identities.at(0).lock->reason == "y");
  CHECK(e.server.command({"INFO", "commandstats"}).find("cmdstat_eval:calls=4,") != std::string::npos);  // lock
}

TEST_CASE("operator commands have deadlines and leave the check FIFO in step", "[redis][admin]") {
  rg::redis_options o;
  o.timeout = 100ms;  // top and journal_read: max(5 s, 10 x timeout) = 5 s
  env e(o);
  e.server.pause();
  std::optional<rg::admin_result> st, tp;
  std::optional<store_result> ck;
  const auto issued = clock_type::now();
  std::optional<clock_type::time_point> st_done, tp_done;
  e.store.async_admin(sr::op(rg::admin_op::status, "u:jo", t0), [&](rg::admin_result r) {
    st = std::move(r);
    st_done = clock_type::now();
  });
  e.store.async_check(request({counter("u:jo", 60, 0)}, t0, false), [&](store_result r) { ck = std::move(r); });
  e.store.async_admin(sr::top("u:", 'm', 60, 5, t0), [&](rg::admin_result r) {
    tp = std::move(r);
    tp_done = clock_type::now();
  });
  REQUIRE(run_until(e.io, [&] { return st && ck; }, 1s));
  CHECK_FALSE(st->ok);
  CHECK(st->error == "redis timeout");
  CHECK(*st_done - issued <= 150ms);
  CHECK(*st_done - issued >= 100ms);
  // Past the stall limit (1 s) the connection is dropped: top fails then, before its own 5 s deadline.
  REQUIRE(run_until(e.io, [&] { return tp.has_value(); }, 2s));
  CHECK_FALSE(tp->ok);
  e.server.resume();
  REQUIRE(run_until(e.io, [&] { return e.store.connected(); }, 3s));
  REQUIRE(e.check(request({counter("u:jo", 60, 0)}, t0)).charged);
  const auto after = e.admin(sr::op(rg::admin_op::status, "u:jo", t0));
  REQUIRE(after.ok);
  CHECK(after.identities.at(0).windows == std::vector<rg::window_count>{{'m', 60, 1}});
}

TEST_CASE("operator commands fail fast when not connected and complete exactly once after stop", "[redis][admin]") {
  redis_server server;
  asio::io_context io;
  rg::redis_options o;
  o.address = server.socket_path();
  std::vector<std::string> errors;
  rg::redis_store store(io.get_executor(), o);
  store.async_admin(sr::op(rg::admin_op::status, "u:x", t0), [&](rg::admin_result r) { errors.push_back(r.error); });
  CHECK(errors.empty());
  REQUIRE(run_until(io, [&] { return errors.size() == 1; }, 100ms));
  CHECK(errors[0] == "redis not connected");
  store.start();
  REQUIRE(run_until(io, [&] { return store.connected(); }, 2s));
  server.pause();
  store.async_admin(sr::top("u:", 'm', 60, 5, t0), [&](rg::admin_result r) { errors.push_back(r.error); });
  run_for(io, 20ms);
  store.stop();
  REQUIRE(run_until(io, [&] { return errors.size() == 2; }, 100ms));
  CHECK(errors[1] == "redis store stopped");
  run_for(io, 200ms);
  CHECK(errors.size() == 2);
  server.resume();
}

// Not run by ctest (hidden): prints the Redis memory a lock and a journal entry take, for the README/report.
//   build/tests/integration_tests "[.measure]"
TEST_CASE("measure Redis memory per lock and per journal entry", "[.measure]") {
  env e;
  const auto used = [&] {
    const auto info = e.server.command({"INFO", "memory"});
    const auto at = info.find("used_memory:");
    REQUIRE(at != std::string::npos);
    return std::stoll(info.substr(at + 12));
  };
  constexpr int n = 10000;
  // Identities with the counters of a typical first RCPT (sasl_username: 1m 1h 1d messages, 1h recipients).
  for (int i = 0; i < n; ++i) {
    const std::string id = "u:user" + std::to_string(i) + "@example.com";
    REQUIRE(e.check(request({counter(id, 60, 0), counter(id, 3600, 0), counter(id, 86400, 0), counter(id, 3600, 0, 1, 'r')},
                            t0))
                .charged);
  }
  // A lock value over hash-max-listpack-value (64 bytes) turns the hash from a listpack into a hash table:
  // measured with a short reason (stays compact) and a long one.
  const auto one_key = e.server.command({"MEMORY", "USAGE", "rg:{u:user0@example.com}"});
  const auto lock_range = [&](int from, int to, const std::string& reason) {
    const auto before = used();
    for (int i = from; i < to; ++i)
      REQUIRE(e.admin(sr::lock("u:user" + std::to_string(i) + "@example.com", 86'400'000, reason, t0)).changed);
    return (used() - before) / (to - from);
  };
  const auto per_short_lock = lock_range(0, n / 2, "rateguardctl");
  const auto per_long_lock = lock_range(n / 2, n, "/etc/rateguard/limits.conf:7 rcpt 2001/1h");
  const auto one_key_short = e.server.command({"MEMORY", "USAGE", "rg:{u:user0@example.com}"});
  const auto one_key_long = e.server.command({"MEMORY", "USAGE", "rg:{u:user" + std::to_string(n - 1) + "@example.com}"});
  const auto before_journal = used();
  for (int i = 0; i < n; ++i) {
    auto h = sr::hold("sasl_username:user" + std::to_string(i) + "@example.com", "4F2A1B3C" + std::to_string(10000 + i), 0);
    h.record.instance = "4c99.6b03e10a.8cd6e." + std::to_string(i);
    h.record.rule = "/etc/rateguard/limits.conf:7";
    h.record.reason = "locked: /etc/rateguard/limits.conf:7 rcpt 2001/1h";
    h.record.client = "203.0.113.9";
    h.record.sender = "user" + std::to_string(i) + "@example.com";
    REQUIRE(e.admin(h).ok);
  }
  const auto after_journal = used();
  std::cout << "identity hash, 4 counters (MEMORY USAGE): " << one_key << " bytes; locked with a short reason: "
            << one_key_short << " bytes, with a long one: " << one_key_long << " bytes\n"
            << "per lock (used_memory delta / " << n / 2 << "): short reason " << per_short_lock << " bytes, long reason "
            << per_long_lock << " bytes\n"
            << "per journal entry (used_memory delta / " << n << "): " << (after_journal - before_journal) / n
            << " bytes; MEMORY USAGE rg:holds SAMPLES 0 / XLEN: "
            << std::stoll(e.server.command({"MEMORY", "USAGE", "rg:holds", "SAMPLES", "0"})) /
                   std::stoll(e.server.command({"XLEN", "rg:holds"}))
            << " bytes\n";
}
