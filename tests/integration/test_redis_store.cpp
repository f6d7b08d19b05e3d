// Integration tests of redis_store against a real, private redis-server (fixture): counting semantics with
// injected time, key layout, TTLs, concurrency, deadlines, reconnects, FUNCTION FLUSH and shutdown. Locks, the
// hold journal and the operator commands: test_redis_admin.cpp.
// Each test runs its own io_context with a bounded run loop; none relies on a shared Redis.
#include "redis_store_env.hpp"
#include "timing.hpp"

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <optional>
#include <iostream>
#include <sstream>
#include <thread>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace {

using namespace rg::test;  // the bench (redis_store_env.hpp) and the request builders (store_requests.hpp)
using rg::counter_spec;
using rg::store_request;
using rg::store_result;

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
  // Besides its buckets the hash keeps t, the expiry last given to the key (window + 2 buckets + a twelfth).
  CHECK(e.server.command({"HGETALL", "rg:{u:alice}"}) ==
        "[" + field('m', 60, t0) + ", 5, t, " + std::to_string(t0 + 75'833) + "]");
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
    CHECK(fields.size() == 3);  // and t
    CHECK(std::count(fields.begin(), fields.end(), "t") == 1);
    CHECK(std::count(fields.begin(), fields.end(), field('m', 60, t0 + window_ms + w)) == 1);
    CHECK(std::count(fields.begin(), fields.end(), field('m', 3600, t0)) == 1);
    CHECK(std::count(fields.begin(), fields.end(), field('m', 60, t0)) == 0);
  }
}

TEST_CASE("several counters in one request: all charged or none", "[redis]") {
  env e;
  const auto both = [](std::int64_t now) {
    return request({counter("u:bob", 60, 10), counter("ip:192.0.2.1", 3600, 1), counter("d:example.com", 60, 0, 'm', 3)},
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
  const auto unlimited = e.check(request({counter("d:example.com", 60, 0, 'm', 3)}, t0 + 3));
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

TEST_CASE("charge once - a repeat of a charged request only reads and is answered as the first", "[redis]") {
  env e;
  auto req = [](const std::string& token) {
    auto r = request({counter("u:olga", 60, 2), counter("u:olga", 3600, 0, 'r')}, t0);
    r.once = token;
    return r;
  };
  for (const std::string token : {"t1", "t2"}) {
    const auto first = e.check(req(token));
    REQUIRE(first.ok);
    CHECK(first.charged);
    for (int i = 0; i < 2; ++i) {
      const auto repeat = e.check(req(token));  // Postfix resent it: read only, reported as the first was
      REQUIRE(repeat.ok);
      CHECK(repeat.charged);
      CHECK(repeat.counts == first.counts);
    }
  }
  CHECK(e.server.command({"HGET", "rg:{u:olga}", field('m', 60, t0)}) == "2");  // 2 charges for 6 requests
  const auto ttl = std::stoll(e.server.command({"PTTL", "rg:{u:olga}:once:t1"}));
  CHECK(ttl > 0);
  CHECK(ttl <= std::chrono::duration_cast<std::chrono::milliseconds>(rg::charge_once_ttl).count());
  // Refused the first time (at the limit): nothing recorded, and the repeat is a new check, refused again.
  CHECK_FALSE(e.check(req("t3")).charged);
  CHECK_FALSE(e.check(req("t3")).charged);
  CHECK(e.server.command({"EXISTS", "rg:{u:olga}:once:t3"}) == "0");
  CHECK(e.server.command_list({"KEYS", "*once*"}).size() == 2);
}

TEST_CASE("keys get a TTL of window + two buckets that a shorter window never shortens", "[redis]") {
  env e;
  // A raise gives window + 2 buckets and a twelfth more, so a busy key's TTL moves about once a bucket.
  REQUIRE(e.check(request({counter("u:dave", 60, 0)}, t0)).charged);
  auto pttl = std::stoll(e.server.command({"PTTL", "rg:{u:dave}"}));
  CHECK(pttl > 70'000);
  CHECK(pttl <= 75'833);

  REQUIRE(e.check(request({counter("u:dave", 60, 0), counter("u:dave", 3600, 0, 'r')}, t0 + 1)).charged);
  pttl = std::stoll(e.server.command({"PTTL", "rg:{u:dave}"}));
  CHECK(pttl > 4'200'000);
  CHECK(pttl <= 4'550'000);

  REQUIRE(e.check(request({counter("u:dave", 60, 0)}, t0 + 2)).charged);
  CHECK(std::stoll(e.server.command({"PTTL", "rg:{u:dave}"})) > 4'200'000);

  // Within the twelfth no command moves the TTL; past it, the next charge raises it again.
  REQUIRE(e.server.command({"CONFIG", "RESETSTAT"}) == "OK");
  REQUIRE(e.check(request({counter("u:dave", 3600, 0, 'r')}, t0 + 300'000)).charged);
  CHECK(e.server.command({"INFO", "commandstats"}).find("cmdstat_pexpire") == std::string::npos);
  REQUIRE(e.check(request({counter("u:dave", 3600, 0, 'r')}, t0 + 400'000)).charged);
  CHECK(e.server.command({"INFO", "commandstats"}).find("cmdstat_pexpire:calls=1,") != std::string::npos);
  CHECK(e.server.command({"HGET", "rg:{u:dave}", "t"}) == std::to_string(t0 + 400'000 + 4'550'000));
}

TEST_CASE("a key written before t existed is asked for its TTL once, which is kept when long enough", "[redis]") {
  env e;
  REQUIRE(e.server.command({"HSET", "rg:{u:old}", field('m', 60, t0), "2"}) == "1");
  REQUIRE(e.server.command({"PEXPIRE", "rg:{u:old}", "600000"}) == "1");
  const auto r = e.check(request({counter("u:old", 60, 0)}, t0 + 1));
  CHECK(r.counts == std::vector<std::uint64_t>{2});
  CHECK(std::stoll(e.server.command({"PTTL", "rg:{u:old}"})) > 500'000);  // not lowered to 75 833
  CHECK(e.server.command({"HGET", "rg:{u:old}", "t"}) != "(nil)");
  REQUIRE(e.server.command({"PEXPIRE", "rg:{u:short}", "1"}) == "0");  // no such key: nothing set
  REQUIRE(e.server.command({"HSET", "rg:{u:short}", field('m', 60, t0), "1"}) == "1");
  REQUIRE(e.server.command({"PEXPIRE", "rg:{u:short}", "10000"}) == "1");
  REQUIRE(e.check(request({counter("u:short", 60, 0)}, t0 + 1)).charged);
  CHECK(std::stoll(e.server.command({"PTTL", "rg:{u:short}"})) > 70'000);  // raised
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

TEST_CASE("Redis paused: every request fails at its deadline (not before) and then works again", "[redis]") {
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
      5s);
  e.server.resume();
  REQUIRE(all_done);
  auto slowest = 0ms;
  for (const auto& x : outcomes) {
    CHECK_FALSE(x.r.ok);
    CHECK(x.r.error == "redis timeout");
    CHECK(*x.done - x.issued >= 100ms);  // never before the deadline
    slowest = std::max(slowest, std::chrono::duration_cast<std::chrono::milliseconds>(*x.done - x.issued));
  }
  INFO("slowest timeout answered after " << slowest.count() << " ms (deadline 100 ms)");
  RG_CHECK_TIMING(slowest <= 150ms);
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
  rg::redis_options o = for_server(server);
  o.timeout = 100ms;  // stall limit max(1 s, 5 x timeout) = 1 s
  rg::redis_store store(io.get_executor(), o);
  store.start();
  REQUIRE(run_until(io, [&] { return store.connected(); }, 2s));

  server.pause();
  const auto paused_at = clock_type::now();
  std::optional<clock_type::time_point> dropped_at;
  int completed = 0, answered = 0, late = 0, issued = 0;
  while (clock_type::now() - paused_at < 1500ms) {
    const auto issued_at = clock_type::now();
    ++issued;
    store.async_check(request({counter("u:gina", 60, 0)}, t0, false), [&, issued_at](store_result r) {
      ++completed;
      if (r.ok) ++answered;  // a paused Redis answers nothing
      if (clock_type::now() - issued_at > 150ms) ++late;
    });
    run_for(io, 50ms);
    if (!store.connected() && !dropped_at) dropped_at = clock_type::now();
  }
  server.resume();
  const auto resumed_at = clock_type::now();
  REQUIRE(run_until(io, [&] { return completed == issued; }, 5s));
  CHECK(answered == 0);
  INFO(late << " of " << issued << " failed later than 150 ms (deadline 100 ms)");
  RG_CHECK_TIMING(late == 0);
  REQUIRE(dropped_at.has_value());
  CHECK(*dropped_at - paused_at >= 1s);  // not before the stall limit
  INFO("dropped " << std::chrono::duration_cast<std::chrono::milliseconds>(*dropped_at - paused_at).count()
                  << " ms after the pause (stall limit 1 s)");
  RG_CHECK_TIMING(*dropped_at - paused_at <= 1300ms);
  REQUIRE(run_until(io, [&] { return store.connected(); }, 10s));
  RG_CHECK_TIMING(clock_type::now() - resumed_at <= 1s);
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
  CHECK(r.error == "redis not connected");  // failed at once, not at the deadline ("redis timeout")
  RG_CHECK_TIMING(clock_type::now() - before < 50ms);

  run_for(e.io, 1200ms);  // several reconnect attempts fail meanwhile: they must not log each
  e.server.start();
  const auto restarted = clock_type::now();
  REQUIRE(run_until(e.io, [&] { return e.store.connected(); }, 10s));
  RG_CHECK_TIMING(clock_type::now() - restarted <= 1s);
  const auto after = e.check(request({counter("u:hank", 60, 0)}, t0));
  REQUIRE(after.ok);
  CHECK(after.charged);
  CHECK(after.counts == std::vector<std::uint64_t>{0});  // no persistence: counting starts afresh
  CHECK(logs.count("warning:") == 1);
  CHECK(logs.count("connection lost: closed by server") == 1);
  CHECK(logs.count("info: redis " + e.server.address() + ": connection restored") == 1);
}

TEST_CASE("FUNCTION FLUSH: the next request is resent behind a FUNCTION LOAD and succeeds", "[redis]") {
  env e;
  REQUIRE(e.check(request({counter("u:ian", 60, 10)}, t0)).charged);
  REQUIRE(e.server.command({"FUNCTION", "FLUSH"}) == "OK");
  REQUIRE(e.server.command({"CONFIG", "RESETSTAT"}) == "OK");
  const auto r = e.check(request({counter("u:ian", 60, 10)}, t0 + 1));
  REQUIRE(r.ok);
  CHECK(r.charged);
  CHECK(r.counts == std::vector<std::uint64_t>{1});  // charged once: the refused FCALL did not run
  const auto stats = e.server.command({"INFO", "commandstats"});
  CHECK(stats.find("cmdstat_fcall:calls=2,") != std::string::npos);
  CHECK(stats.find("cmdstat_function|load:calls=1,") != std::string::npos);
  const auto next = e.check(request({counter("u:ian", 60, 10)}, t0 + 2));
  CHECK(next.counts == std::vector<std::uint64_t>{2});
  CHECK(e.server.command({"INFO", "commandstats"}).find("cmdstat_function|load:calls=1,") != std::string::npos);
}

TEST_CASE("a second node's FUNCTION LOAD of the same library is no error", "[redis]") {
  env e;
  REQUIRE(e.check(request({counter("u:jo", 60, 10)}, t0)).charged);
  rg::redis_store second(e.io.get_executor(), for_server(e.server, relaxed()));
  second.start();
  REQUIRE(run_until(e.io, [&] { return second.connected(); }, 2s));
  std::optional<rg::store_result> out;
  second.async_check(request({counter("u:jo", 60, 10)}, t0 + 1), [&](rg::store_result r) { out = std::move(r); });
  REQUIRE(run_until(e.io, [&] { return out.has_value(); }, 3s));
  CHECK(out->charged);
  CHECK(out->counts == std::vector<std::uint64_t>{1});
  CHECK(e.server.command({"FUNCTION", "LIST"}).find(std::string(rg::redis_store::lua_function())) != std::string::npos);
  second.stop();
}

TEST_CASE("identities with ':' '{' '}' and binary bytes stay in their own keys", "[redis]") {
  env e;
  const std::vector<std::string> ids = {"a",    "a:b", "a{b", "a}b", "{a}", "a}{b", "}", "",
                                        std::string("bin\0\x01\xff\r\n", 8)};
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const auto r = e.check(request({counter(ids[i], 60, 0, 'm', static_cast<std::uint32_t>(i + 1))}, t0));
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
  // Redis's own clock, read before and after the check: the script's time must lie between them. A script
  // that took 0 (or any constant) as its time would name bucket 0, far outside [before, after].
  auto redis_ms = [&] {
    const auto t = e.server.command_list({"TIME"});
    REQUIRE(t.size() == 2);
    return std::stoll(t[0]) * 1000 + std::stoll(t[1]) / 1000;
  };
  constexpr std::int64_t bucket_ms = 60'000 / 12, quarter_ms = 60'000 / 4;
  const std::int64_t before = redis_ms();
  const auto first = request_with({counter("u:jack", 60, 0)}, {signal_of("u:jack", 'i', 60, "192.0.2.1")}, 0);
  REQUIRE(e.check(first).charged);
  const std::int64_t after = redis_ms();

  // The counter's bucket field ("m60:<index>") has an index in [before, after] / bucket width.
  const auto fields = e.server.command_list({"HKEYS", "rg:{u:jack}"});
  std::optional<std::int64_t> bucket;
  for (const auto& f : fields)
    if (f.rfind("m60:", 0) == 0) bucket = std::stoll(f.substr(4));
  REQUIRE(bucket);
  CHECK(*bucket >= before / bucket_ms);
  CHECK(*bucket <= after / bucket_ms);
  // The signal's HyperLogLog ("rg:{u:jack}:i60:<quarter>") likewise, in quarters of the window.
  const auto hlls = e.server.command_list({"KEYS", "rg:{u:jack}:i60:*"});
  REQUIRE(hlls.size() == 1);
  const std::int64_t quarter = std::stoll(hlls[0].substr(std::string("rg:{u:jack}:i60:").size()));
  CHECK(quarter >= before / quarter_ms);
  CHECK(quarter <= after / quarter_ms);

  CHECK(e.check(request({counter("u:jack", 60, 0)}, 0, false)).counts == std::vector<std::uint64_t>{1});
  // Injected times around Redis's now agree: the event is in the window now and gone two windows later.
  CHECK(e.check(request({counter("u:jack", 60, 0)}, after, false)).counts == std::vector<std::uint64_t>{1});
  CHECK(e.check(request({counter("u:jack", 60, 0)}, after + 120'000, false)).counts ==
        std::vector<std::uint64_t>{0});
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
    rg::redis_options o = for_server(server);
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
  rg::redis_options o = for_server(server);
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
    REQUIRE(run_until(io, [&] { return errors.size() == 1; }, 2s));
    CHECK(errors[0] == "redis not connected");  // not "redis timeout": it did not wait for the deadline
  }
  SECTION("overloaded beyond max_pending") {
    rg::redis_store store(io.get_executor(), o);
    store.start();
    REQUIRE(run_until(io, [&] { return store.connected(); }, 2s));
    server.pause();
    for (int i = 0; i < 10; ++i) issue(store);
    // The 6 beyond max_pending fail at once: before any of the 4 in flight reaches its deadline.
    REQUIRE(run_until(io, [&] { return errors.size() == 10; }, 5s));
    CHECK(std::count(errors.begin(), errors.begin() + 6, "redis overloaded") == 6);
    CHECK(std::count(errors.begin() + 6, errors.end(), "redis timeout") == 4);
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
    REQUIRE(run_until(io, [&] { return errors.size() == 4; }, 2s));
    CHECK(std::count(errors.begin(), errors.end(), "redis store stopped") == 4);  // none waited for a timeout
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

// store.hpp's completion contract, which the memory store keeps too (test_memory_store.cpp): each handler runs
// exactly once, on the thread running the store's io_context, and only after async_check / async_admin has
// returned -- a check answered from the read loop, an operator command, and a request failed at initiation.
TEST_CASE("completion contract: once, on the io_context's thread, after the initiating call returned",
          "[redis][contract]") {
  env e;
  int checks = 0, admins = 0, failures = 0;
  bool returned = false, all_after_return = true, all_on_io_thread = true, charged = false, failed_ok = true;
  std::thread::id io_thread;
  const auto note = [&](int& n) {
    ++n;
    all_after_return = all_after_return && returned;
    all_on_io_thread = all_on_io_thread && std::this_thread::get_id() == io_thread;
  };
  const auto run_on_thread = [&](auto done) {
    std::thread runner([&] {
      io_thread = std::this_thread::get_id();
      run_until(e.io, done, 5s);
    });
    runner.join();
  };
  asio::post(e.io, [&] {
    e.store.async_check(request({counter("u:contract", 60, 5)}, t0), [&](store_result r) {
      note(checks);
      charged = r.charged;
    });
    e.store.async_admin(op(rg::admin_op::status, "u:contract", t0), [&](rg::admin_result) { note(admins); });
    returned = true;
  });
  run_on_thread([&] { return checks + admins >= 2; });
  e.store.stop();
  returned = false;
  asio::post(e.io, [&] {
    e.store.async_check(request({counter("u:contract", 60, 5)}, t0), [&](store_result r) {
      note(failures);
      failed_ok = r.ok;
    });
    returned = true;
  });
  run_on_thread([&] { return failures >= 1; });
  run_for(e.io, 50ms);  // nothing completes twice
  CHECK(checks == 1);
  CHECK(admins == 1);
  CHECK(failures == 1);
  CHECK(charged);
  CHECK_FALSE(failed_ok);
  CHECK(all_after_return);
  CHECK(all_on_io_thread);
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
  // Connections are accepted (and kept open, silent) as they come, so each attempt's time is known.
  std::vector<int> accepted;
  std::vector<clock_type::time_point> attempt_at;
  const auto started = clock_type::now();
  {
    asio::io_context io;
    rg::redis_options o;
    o.address = path;
    o.timeout = 100ms;  // connect deadline max(1 s, 5 x timeout) = 1 s
    rg::redis_store store(io.get_executor(), o);
    store.start();
    const auto take = [&] {
      for (int c; (c = accept(fd, nullptr, nullptr)) >= 0;) {
        accepted.push_back(c);
        attempt_at.push_back(clock_type::now());
      }
      return attempt_at.size() >= 3;
    };
    // Bounded by the slowest machine, not by the expected 2 s: the assertions below are about spacing.
    REQUIRE(run_until(io, take, 20s));
    CHECK_FALSE(store.connected());
  }
  for (int c : accepted) ::close(c);
  ::close(fd);
  std::filesystem::remove_all(dir);
  // Each attempt waits for its 1 s deadline before the next (never a busy retry): the 3rd comes 2 s after
  // the start at least (0 s, then after 1 s + back-off, then again).
  const auto third_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(attempt_at[2] - started).count();
  INFO("third attempt after " << third_ms << " ms");
  CHECK(third_ms >= 2000);
  RG_CHECK_TIMING(third_ms <= 3300);
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
