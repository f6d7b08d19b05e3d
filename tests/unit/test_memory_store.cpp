// The memory store's locks, operator commands and hold journal, with an injected clock: a lock is seen by
// check() once per identity and ends by itself, status/top count exactly as check() does, and the journal
// keeps to its length and age caps. The Redis store runs the same sequences in test_store_equivalence.
#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <thread>
#include <cmath>
#include <optional>

#include "memory_store.hpp"
#include "store_requests.hpp"

using namespace rg;
using namespace rg::test;

namespace {
constexpr std::int64_t t0 = 1'700'000'000'000;  // a multiple of 60 s windows' 5 s buckets
}  // namespace

TEST_CASE("memory store: a lock is reported by check once per identity until it ends", "[memory_store]") {
  memory_store s;
  const auto set = s.admin(lock("u:alice", 60'000, "limits.conf:7 61 messages per 1m", t0));
  REQUIRE(set.ok);
  CHECK(set.changed);
  REQUIRE(set.identities.size() == 1);
  REQUIRE(set.identities[0].lock);
  CHECK(set.identities[0].lock->since_ms == t0);
  CHECK(set.identities[0].lock->until_ms == t0 + 60'000);

  // Two counters of alice and one of an unlocked identity: alice is reported once; charging goes on.
  const auto r = s.check(request({counter("u:alice", 60, 10), counter("u:alice", 3600, 0), counter("ip:192.0.2.1", 60)},
                                 t0 + 1000));
  REQUIRE(r.ok);
  CHECK(r.charged);
  REQUIRE(r.locks.size() == 1);
  CHECK(r.locks[0].identity == "u:alice");
  CHECK(r.locks[0].since_ms == t0);
  CHECK(r.locks[0].until_ms == t0 + 60'000);
  CHECK(r.locks[0].reason == "limits.conf:7 61 messages per 1m");

  // Seen by a read-only check too, and by a check of an identity that has no counters yet.
  CHECK(s.check(request({counter("u:alice", 86400)}, t0 + 2000, false)).locks.size() == 1);
  CHECK(s.check(request({counter("ip:192.0.2.1", 60)}, t0 + 2000, false)).locks.empty());

  CHECK(s.check(request({counter("u:alice", 60)}, t0 + 59'999, false)).locks.size() == 1);
  CHECK(s.check(request({counter("u:alice", 60)}, t0 + 60'000, false)).locks.empty());
}

TEST_CASE("memory store: lock keeps an existing lock and release and reset say whether they changed anything",
          "[memory_store]") {
  memory_store s;
  REQUIRE(s.admin(lock("u:bob", 10'000, "first", t0)).changed);
  const auto again = s.admin(lock("u:bob", 99'000, "second", t0 + 1));
  REQUIRE(again.ok);
  CHECK_FALSE(again.changed);
  REQUIRE(again.identities.at(0).lock);
  CHECK(again.identities[0].lock->reason == "first");
  CHECK(again.identities[0].lock->until_ms == t0 + 10'000);

  // An ended lock is replaced.
  const auto later = s.admin(lock("u:bob", 5'000, "third", t0 + 10'000));
  CHECK(later.changed);
  CHECK(later.identities.at(0).lock->until_ms == t0 + 15'000);

  CHECK(s.admin(op(admin_op::release, "u:bob", t0 + 10'001)).changed);
  CHECK_FALSE(s.admin(op(admin_op::release, "u:bob", t0 + 10'002)).changed);
  CHECK(s.check(request({counter("u:bob", 60)}, t0 + 10'003, false)).locks.empty());

  CHECK_FALSE(s.admin(lock("u:bob", 0, "no ttl", t0)).ok);
  CHECK_FALSE(s.admin(op(admin_op::reset, "u:nobody", t0)).changed);
  REQUIRE(s.check(request({counter("u:carol", 60)}, t0)).charged);
  REQUIRE(s.admin(lock("u:carol", 60'000, "x", t0)).changed);
  CHECK(s.admin(op(admin_op::reset, "u:carol", t0 + 1)).changed);
  const auto gone = s.check(request({counter("u:carol", 60)}, t0 + 2, false));
  CHECK(gone.counts == std::vector<std::uint64_t>{0});
  CHECK(gone.locks.empty());
  CHECK_FALSE(s.admin(op(admin_op::reset, "u:carol", t0 + 3)).changed);
}

TEST_CASE("memory store: a lock outlives the counters' expiry and a charge never shortens it", "[memory_store]") {
  memory_store s;
  REQUIRE(s.check(request({counter("u:dave", 60)}, t0)).charged);
  REQUIRE(s.admin(lock("u:dave", 3'600'000, "long", t0)).changed);
  REQUIRE(s.check(request({counter("u:dave", 60)}, t0 + 1000)).charged);  // raises the counters' expiry only
  // Long after the 60 s window (and a sweep): the counters are gone, the lock is not.
  const std::int64_t late = t0 + 1'800'000;
  const auto st = s.admin(op(admin_op::status, "u:dave", late));
  REQUIRE(st.identities.size() == 1);
  REQUIRE(st.identities[0].lock);
  CHECK(st.identities[0].lock->reason == "long");
  REQUIRE(st.identities[0].windows.size() == 1);
  CHECK(st.identities[0].windows[0].count == 0);
  CHECK(s.check(request({counter("u:dave", 60)}, late, false)).locks.size() == 1);
  // Past the lock's end the identity expires as a whole.
  const auto after = s.admin(op(admin_op::status, "u:dave", t0 + 3'600'000));
  CHECK(after.identities.at(0).windows.empty());
  CHECK_FALSE(after.identities[0].lock);
  CHECK(s.size() == 0);  // swept
}

TEST_CASE("memory store: status lists the charged windows sorted with the counts check() sees", "[memory_store]") {
  memory_store s;
  const auto unknown = s.admin(op(admin_op::status, "u:erin", t0));
  REQUIRE(unknown.ok);
  REQUIRE(unknown.identities.size() == 1);
  CHECK(unknown.identities[0].identity == "u:erin");
  CHECK(unknown.identities[0].windows.empty());
  CHECK_FALSE(unknown.identities[0].lock);

  for (int i = 0; i < 4; ++i)
    REQUIRE(s.check(request({counter("u:erin", 3600, 0, 'r', 2), counter("u:erin", 60, 0), counter("u:erin", 86400, 0)},
                            t0 + i * 20'000))
                .charged);
  // A refused request creates no window.
  REQUIRE_FALSE(s.check(request({counter("u:erin", 60, 4), counter("u:erin", 600, 1, 'm', 5)}, t0 + 61'000)).charged);

  const std::int64_t now = t0 + 65'000;
  const auto st = s.admin(op(admin_op::status, "u:erin", now));
  const auto& w = st.identities.at(0).windows;
  REQUIRE(w.size() == 3);
  CHECK((w[0].unit_tag == 'm' && w[0].window_s == 60));
  CHECK((w[1].unit_tag == 'm' && w[1].window_s == 86400));
  CHECK((w[2].unit_tag == 'r' && w[2].window_s == 3600));
  const auto seen =
      s.check(request({counter("u:erin", 60), counter("u:erin", 86400), counter("u:erin", 3600, 0, 'r')}, now, false));
  CHECK(seen.counts == std::vector<std::uint64_t>{w[0].count, w[1].count, w[2].count});
  CHECK(w[0].count == 3);  // the first event left the 60 s window one bucket after it ended
  CHECK(w[1].count == 4);
  CHECK(w[2].count == 8);
}

TEST_CASE("memory store: top orders by count then identity and keeps to prefix and limit", "[memory_store]") {
  memory_store s;
  const std::vector<std::pair<std::string, int>> load = {
      {"u:a", 3}, {"u:b", 5}, {"u:c", 3}, {"u:d", 1}, {"ip:192.0.2.1", 9}, {"u:e", 0}};
  for (auto& [id, n] : load) {
    for (int i = 0; i < n; ++i) REQUIRE(s.check(request({counter(id, 60)}, t0 + i)).charged);
    if (n == 0) REQUIRE(s.check(request({counter(id, 3600)}, t0)).charged);  // another window only
  }
  REQUIRE(s.check(request({counter("u:f", 60)}, t0 - 200'000)).charged);  // out of the window by now
  REQUIRE(s.admin(lock("u:c", 60'000, "held", t0)).changed);

  const auto r = s.admin(top("u:", 'm', 60, 3, t0 + 100));
  REQUIRE(r.ok);
  CHECK_FALSE(r.truncated);
  REQUIRE(r.identities.size() == 3);
  CHECK(r.identities[0].identity == "u:b");
  CHECK(r.identities[1].identity == "u:a");
  CHECK(r.identities[2].identity == "u:c");
  REQUIRE(r.identities[0].windows.size() == 1);
  CHECK(r.identities[0].windows[0].count == 5);
  CHECK(r.identities[2].windows[0].count == 3);
  CHECK_FALSE(r.identities[0].lock);
  REQUIRE(r.identities[2].lock);
  CHECK(r.identities[2].lock->reason == "held");

  const auto all = s.admin(top("u:", 'm', 60, 100, t0 + 100));
  CHECK(all.identities.size() == 4);  // u:e has no 60 s counter, u:f's count is 0 by now
  CHECK(s.admin(top("ip:", 'm', 60, 100, t0 + 100)).identities.size() == 1);
  CHECK(s.admin(top("u:", 'r', 60, 100, t0 + 100)).identities.empty());
}

TEST_CASE("memory store: the journal keeps the newest entries within its length cap", "[memory_store]") {
  memory_store s(1000, {}, journal_caps{5, std::chrono::hours(1)});
  for (int i = 0; i < 8; ++i) {
    const auto r = s.admin(hold(i % 2 ? "sasl_username:odd" : "sasl_username:even", "Q" + std::to_string(i), t0 + i));
    REQUIRE(r.ok);
    REQUIRE(r.holds.size() == 1);
    CHECK(r.holds[0].time_ms == t0 + i);
    CHECK(r.holds[0].id == std::to_string(t0 + i) + "-0");
    CHECK(r.holds[0].recipients == 3);
  }
  CHECK(queue_ids(s.admin(holds(0, "", 100))) == std::vector<std::string>{"Q3", "Q4", "Q5", "Q6", "Q7"});
  CHECK(queue_ids(s.admin(holds(0, "", 2))) == std::vector<std::string>{"Q6", "Q7"});
  CHECK(queue_ids(s.admin(holds(0, "sasl_username:odd", 100))) == std::vector<std::string>{"Q3", "Q5", "Q7"});
  CHECK(queue_ids(s.admin(holds(t0 + 5, "", 100))) == std::vector<std::string>{"Q5", "Q6", "Q7"});
  CHECK(queue_ids(s.admin(holds(t0 + 5, "sasl_username:even", 1))) == std::vector<std::string>{"Q6"});
}

TEST_CASE("memory store: the journal drops entries older than its age cap and ids never go back",
          "[memory_store]") {
  memory_store s(1000, {}, journal_caps{100, std::chrono::seconds(60)});
  REQUIRE(s.admin(hold("k:a", "A", t0)).ok);
  REQUIRE(s.admin(hold("k:b", "B", t0 + 30'000)).ok);
  REQUIRE(s.admin(hold("k:c", "C", t0 + 60'000)).ok);  // A is exactly 60 s old: kept
  CHECK(queue_ids(s.admin(holds(0, "", 100))) == std::vector<std::string>{"A", "B", "C"});
  REQUIRE(s.admin(hold("k:d", "D", t0 + 60'001)).ok);
  CHECK(queue_ids(s.admin(holds(0, "", 100))) == std::vector<std::string>{"B", "C", "D"});

  // A clock that steps back keeps the last millisecond and counts the sequence up, like XADD *.
  const auto same = s.admin(hold("k:e", "E", t0 + 60'001));
  const auto back = s.admin(hold("k:f", "F", t0 + 10));
  CHECK(same.holds.at(0).id == std::to_string(t0 + 60'001) + "-1");
  CHECK(back.holds.at(0).id == std::to_string(t0 + 60'001) + "-2");
  CHECK(back.holds[0].time_ms == t0 + 60'001);

  // Request values are cut, so a hostile sender cannot grow the journal.
  auto big = hold("k:g", "G", t0 + 70'000);
  big.record.sender = std::string(10'000, 'x');
  const auto cut = s.admin(big);
  CHECK(cut.holds.at(0).sender.size() == journal_field_max);
}

TEST_CASE("memory store: locks count against memory_max_keys, are never evicted, and top says when it stopped early",
          "[memory_store]") {
  memory_store s(1000);
  for (int i = 0; i < 1000; ++i) REQUIRE(s.check(request({counter("u:" + std::to_string(i), 60)}, t0)).charged);
  // Full: a new identity (here a lock) takes the place of the least recently used one, u:0.
  const auto fresh = s.admin(lock("u:new", 60'000, "x", t0 + 1));
  REQUIRE(fresh.ok);
  CHECK(fresh.changed);
  CHECK(s.size() == 1000);
  CHECK(s.evictions() == 1);
  CHECK(s.admin(op(admin_op::status, "u:0", t0 + 1)).identities.at(0).windows.empty());
  CHECK(s.admin(lock("u:7", 60'000, "x", t0 + 1)).changed);  // a known identity can still be locked
  // A flood of new identities evicts every unlocked one, never the two locked ones.
  for (int i = 0; i < 3000; ++i) REQUIRE(s.check(request({counter("s:flood" + std::to_string(i), 60)}, t0 + 2)).charged);
  CHECK(s.size() == 1000);
  CHECK(s.check(request({counter("u:7", 60)}, t0 + 3, false)).locks.size() == 1);
  CHECK(s.check(request({counter("u:7", 60)}, t0 + 3, false)).counts == std::vector<std::uint64_t>{1});
  CHECK(s.check(request({counter("u:new", 60)}, t0 + 3, false)).locks.size() == 1);
  const auto t = s.admin(top("s:", 'm', 60, 10, t0 + 4));
  CHECK_FALSE(t.truncated);  // 998 is below top_scan_max
  CHECK(t.identities.size() == 10);
}

TEST_CASE("memory store: past memory_max_keys a new key is counted and the least recently used identity goes",
          "[memory_store]") {
  memory_store s(1000);
  for (int i = 0; i < 1000; ++i) REQUIRE(s.check(request({counter("u:" + std::to_string(i), 3600)}, t0 + i)).charged);
  // A well-behaved client with a limit of 5 per hour uses its key every 500 new keys while 20 000 arrive.
  int accepted = 0;
  for (int i = 0; i < 20'000; ++i) {
    const auto r = s.check(request({counter("s:new" + std::to_string(i), 3600, 5)}, t0 + 2000 + i));
    REQUIRE(r.ok);
    CHECK(r.charged);
    CHECK(r.counts == std::vector<std::uint64_t>{0});
    if (i % 500 == 0) {
      const auto mine = s.check(request({counter("u:steady", 3600, 5)}, t0 + 2000 + i));
      REQUIRE(mine.ok);
      CHECK(mine.counts == std::vector<std::uint64_t>{static_cast<std::uint64_t>(std::min(accepted, 5))});
      CHECK(mine.charged == (accepted < 5));
      accepted += mine.charged;
    }
  }
  CHECK(accepted == 5);  // exactly the limit, then refused, while everything else was evicted 20 times over
  CHECK(s.size() == 1000);
  CHECK(s.evictions() == 20'001);  // 21 001 identities made, 1000 kept
  // A new key counts from its first request: charged twice, it reads 2.
  REQUIRE(s.check(request({counter("s:late", 3600)}, t0 + 30'000)).charged);
  REQUIRE(s.check(request({counter("s:late", 3600)}, t0 + 30'001)).charged);
  CHECK(s.check(request({counter("s:late", 3600)}, t0 + 30'002, false)).counts == std::vector<std::uint64_t>{2});
}

TEST_CASE("memory store: when every identity is locked a new key gets the store-full error", "[memory_store]") {
  memory_store s(1000);
  for (int i = 0; i < 1000; ++i) REQUIRE(s.admin(lock("u:" + std::to_string(i), 60'000, "x", t0)).changed);
  const auto r = s.check(request({counter("u:new", 60)}, t0 + 1));
  CHECK_FALSE(r.ok);
  CHECK(r.error == "memory store full (memory_max_keys)");
  const auto l = s.admin(lock("u:new", 1000, "x", t0 + 1));
  CHECK_FALSE(l.ok);
  CHECK(l.error == "memory store full (memory_max_keys)");
  CHECK(s.evictions() == 0);
  // The locks end; the sweep frees them as it passes (two identities per call).
  for (int i = 0; i < 500; ++i) s.check(request({counter("u:0", 60)}, t0 + 60'000 + i, false));
  CHECK(s.size() == 0);
  CHECK(s.check(request({counter("u:new", 60)}, t0 + 61'000)).charged);
}

TEST_CASE("memory store: expired identities are swept a few per call", "[memory_store]") {
  memory_store s;
  for (int i = 0; i < 1000; ++i) REQUIRE(s.check(request({counter("u:" + std::to_string(i), 60)}, t0)).charged);
  CHECK(s.size() == 1000);
  // 70 s later every identity has expired; each call frees at most two.
  s.check(request({counter("u:x", 60)}, t0 + 70'000, false));
  CHECK(s.size() >= 998);
  for (int i = 0; i < 500; ++i) s.check(request({counter("u:x", 60)}, t0 + 70'000, false));
  CHECK(s.size() == 0);
}

TEST_CASE("memory store: counts past 65535 in one bucket stay exact", "[memory_store]") {
  memory_store s;
  for (int i = 0; i < 3; ++i) REQUIRE(s.check(request({counter("ip:192.0.2.1", 60, 0, 'r', 40'000)}, t0 + i)).charged);
  REQUIRE(s.check(request({counter("ip:192.0.2.1", 60, 0, 'r', 7)}, t0 + 5'000)).charged);
  CHECK(s.check(request({counter("ip:192.0.2.1", 60, 0, 'r')}, t0 + 5'001, false)).counts ==
        std::vector<std::uint64_t>{120'007});
  // The ring still moves on: 65 s later only the second bucket's 7 are left.
  CHECK(s.check(request({counter("ip:192.0.2.1", 60, 0, 'r')}, t0 + 65'000, false)).counts ==
        std::vector<std::uint64_t>{7});
  REQUIRE(s.check(request({counter("ip:192.0.2.1", 60, 0, 'r', 1)}, t0 + 65'000)).charged);
  CHECK(s.check(request({counter("ip:192.0.2.1", 60, 0, 'r')}, t0 + 65'001, false)).counts ==
        std::vector<std::uint64_t>{8});
}

TEST_CASE("memory store: a signal bucket keeps at most signal_memory_cap distinct values", "[memory_store][signal]") {
  memory_store s;
  const std::int64_t b = t0 / 15'000 * 15'000;
  std::uint64_t last = 0;
  for (std::size_t i = 0; i < signal_memory_cap + 50; ++i) {
    auto req = request({}, b + 1);
    req.signals.push_back(signal_of("u:many", 'd', 60, "d" + std::to_string(i) + ".example"));
    last = s.check(req).distinct.at(0);
  }
  CHECK(last == signal_memory_cap);
  // The next quarter has room again; the first quarter's values still count.
  auto req = request({}, b + 15'000);
  req.signals.push_back(signal_of("u:many", 'd', 60, "new.example"));
  CHECK(s.check(req).distinct.at(0) == signal_memory_cap + 1);
}

// store.hpp's completion contract, which both stores keep (the Redis store: test_redis_store.cpp): the handler
// runs exactly once, on the thread running the store's io_context, and only after async_check / async_admin
// has returned.
TEST_CASE("memory store: async completions run once, on the io_context's thread, after the call returned",
          "[memory_store][contract]") {
  boost::asio::io_context io;
  memory_store s(1000, [] { return t0; }, {}, io.get_executor());
  store& base = s;
  int checks = 0, admins = 0;
  bool returned = false, check_after_return = false, admin_after_return = false;
  std::thread::id check_thread, admin_thread;
  std::optional<store_result> checked;
  std::optional<admin_result> locked;
  boost::asio::post(io, [&] {
    base.async_check(request({counter("u:zed", 60, 1)}, 0), [&](store_result r) {
      ++checks;
      check_after_return = returned;
      check_thread = std::this_thread::get_id();
      checked = std::move(r);
    });
    base.async_admin(lock("u:zed", 5000, "via interface", 0), [&](admin_result r) {
      ++admins;
      admin_after_return = returned;
      admin_thread = std::this_thread::get_id();
      locked = std::move(r);
    });
    returned = true;
  });
  std::thread::id io_thread;
  std::thread runner([&] {
    io_thread = std::this_thread::get_id();
    io.run();
  });
  runner.join();
  CHECK(checks == 1);
  CHECK(admins == 1);
  CHECK(check_after_return);
  CHECK(admin_after_return);
  CHECK(check_thread == io_thread);
  CHECK(admin_thread == io_thread);
  REQUIRE(checked);
  CHECK(checked->charged);
  REQUIRE(locked);
  CHECK(locked->changed);
  CHECK(locked->identities.at(0).lock->since_ms == t0);  // the store's own clock when now_ms is 0
}

TEST_CASE("memory store: async_admin completes through the store interface", "[memory_store]") {
  boost::asio::io_context io;
  memory_store s(1000, [] { return t0; }, {}, io.get_executor());
  store& base = s;
  std::optional<admin_result> got;
  base.async_admin(lock("u:zed", 5000, "via interface", 0), [&](admin_result r) { got = std::move(r); });
  io.run();
  REQUIRE(got);
  CHECK(got->changed);
  CHECK(got->identities.at(0).lock->since_ms == t0);  // the store's own clock when now_ms is 0
}

// --- adaptive baselines and distinct-value signals (store.hpp) -----------------------------------------------

namespace {
// The baseline the straightforward way: every period from the first to the one before `period` folded one by
// one (zeros included), each count capped at the trip point of the average before it.
double reference_average(const std::vector<std::pair<std::int64_t, double>>& per_period, std::int64_t period,
                         double factor, double floor, double alpha) {
  if (per_period.empty()) return 0;
  const std::int64_t first = per_period.front().first;
  double avg = 0;
  for (std::int64_t p = first; p < period; ++p) {
    double x = 0;
    for (const auto& [q, n] : per_period)
      if (q == p) x += n;
    x = std::min(x, std::max(factor * avg, floor));
    avg += (x - avg) * std::max(alpha, 1.0 / static_cast<double>(p - first + 1));
  }
  return avg;
}

}  // namespace

TEST_CASE("memory store: the baseline folds every period like a period-by-period average", "[memory_store][baseline]") {
  // 60 s windows (5 s buckets, 60 s periods), a half-life of 10 periods: alpha = 1 - 2^(-1/10), 1/alpha = 14.9, so
  // the plain mean lasts 14 periods. A seeded mix of busy periods, quiet ones, gaps and one flood (capped).
  const std::int64_t half_life = 600'000, period_ms = 60'000;
  const double alpha = 1.0 - std::exp2(-0.1);
  memory_store s(1000000, {}, {});
  std::vector<std::pair<std::int64_t, double>> charged;  // (period, messages)
  const std::int64_t base = t0 / period_ms;
  std::uint64_t seed = 7;
  auto next = [&seed] { return (seed = seed * 6364136223846793005ull + 1442695040888963407ull) >> 33; };
  for (std::int64_t p = 0; p < 60; ++p) {
    std::uint64_t n = next() % 6;
    if (p % 9 == 4) n = 0;          // gaps of one period
    if (p >= 30 && p < 37) n = 0;   // and a long one
    if (p == 45) n = 400;           // a flood: capped at max(3 x avg, 10)
    for (std::uint64_t k = 0; k < n; ++k) {
      const std::int64_t now = (base + p) * period_ms + static_cast<std::int64_t>(k % 12) * 5000;
      auto req = request({burst("u:alice", 60, 3, 10)}, now);
      req.half_life_ms = half_life;
      const auto r = s.check(req);
      REQUIRE(r.ok);
      REQUIRE(r.charged);
      REQUIRE(r.baselines.size() == 1);
      const bool existed = !charged.empty();
      CHECK(r.baselines[0].present == existed);
      if (existed) {
        INFO("period " << p << " message " << k);
        CHECK(r.baselines[0].average == Approx(reference_average(charged, base + p, 3, 10, alpha)).epsilon(1e-9));
        CHECK(r.baselines[0].history_ms == (base + p - charged.front().first) * period_ms);
      }
      charged.emplace_back(base + p, 1.0);
    }
  }
  // A read (no charge) folds as of now without writing; status shows the stored value (folded up to `last`).
  auto read = request({burst("u:alice", 60, 3, 10)}, (base + 70) * period_ms, false);
  read.half_life_ms = half_life;
  const auto r = s.check(read);
  REQUIRE(r.baselines[0].present);
  CHECK(r.baselines[0].average == Approx(reference_average(charged, base + 70, 3, 10, alpha)).epsilon(1e-9));
  admin_request st = op(admin_op::status, "u:alice", (base + 70) * period_ms);
  const auto status = s.admin(st);
  REQUIRE(status.identities.size() == 1);
  REQUIRE(status.identities[0].baselines.size() == 1);
  CHECK(status.identities[0].baselines[0].value.average ==
        Approx(reference_average(charged, base + 59, 3, 10, alpha)).epsilon(1e-9));
  CHECK(status.identities[0].baselines[0].value.history_ms == 70 * period_ms);
}

TEST_CASE("memory store: a baseline outlives its windows for 4 half-lives", "[memory_store][baseline]") {
  memory_store s;
  auto req = request({burst("u:bob", 60, 5, 10)}, t0);
  req.half_life_ms = 3'600'000;
  REQUIRE(s.check(req).charged);
  // The window's own data would be gone after 70 s; the baseline keeps the identity 4 h.
  const auto before = s.admin(op(admin_op::status, "u:bob", t0 + 4 * 3'600'000 - 1000));
  REQUIRE(before.identities.size() == 1);
  CHECK(before.identities[0].baselines.size() == 1);
  const auto after = s.admin(op(admin_op::status, "u:bob", t0 + 4 * 3'600'000 + 1000));
  CHECK(after.identities[0].baselines.empty());
}

TEST_CASE("memory store: signals count distinct values over the window plus one bucket", "[memory_store][signal]") {
  memory_store s;
  // 60 s window: 15 s buckets; the count covers the current bucket and the 4 before it.
  const std::int64_t b = t0 / 15'000 * 15'000;  // the start of a bucket
  auto ask = [&](const std::string& ip, std::int64_t at, bool charge = true) {
    auto req = request({}, b + at, charge);
    req.signals.push_back(signal_of("u:carol", 'i', 60, ip));
    const auto r = s.check(req);
    REQUIRE(r.ok);
    REQUIRE(r.distinct.size() == 1);
    return r.distinct[0];
  };
  CHECK(ask("192.0.2.1", 0) == 1);
  CHECK(ask("192.0.2.1", 1000) == 1);  // the same value again
  CHECK(ask("192.0.2.2", 16'000) == 2);
  CHECK(ask("192.0.2.3", 59'000, false) == 2);  // a read adds nothing
  CHECK(ask("192.0.2.3", 74'999) == 3);  // the first bucket still counts (4 buckets back)
  CHECK(ask("192.0.2.1", 75'000) == 3);  // the first bucket gone; .1 added again in the new bucket
  CHECK(ask("192.0.2.4", 200'000) == 1);  // everything older gone
  const auto st = s.admin(op(admin_op::status, "u:carol", b + 200'000));
  REQUIRE(st.identities[0].signals.size() == 1);
  CHECK(st.identities[0].signals[0].tag == 'i');
  CHECK(st.identities[0].signals[0].distinct == 1);
}

TEST_CASE("memory store: a signal over a refusing limit blocks charging but is still observed", "[memory_store][signal]") {
  memory_store s;
  for (int i = 0; i < 3; ++i) {
    auto req = request({counter("u:dave", 3600)}, t0 + i);
    req.signals.push_back(signal_of("u:dave", 'd', 3600, "d" + std::to_string(i) + ".example", 2));
    const auto r = s.check(req);
    REQUIRE(r.ok);
    CHECK(r.distinct[0] == static_cast<std::uint64_t>(i + 1));
    CHECK(r.charged == (i < 2));
  }
  const auto st = s.admin(op(admin_op::status, "u:dave", t0 + 10));
  REQUIRE(st.identities[0].windows.size() == 1);
  CHECK(st.identities[0].windows[0].count == 2);        // the third was refused: not charged
  CHECK(st.identities[0].signals[0].distinct == 3);     // but its domain was seen
  // A lock on an identity that only has signals is reported.
  REQUIRE(s.admin(lock("u:erin", 60'000, "test", t0)).changed);
  auto req = request({}, t0 + 1);
  req.signals.push_back(signal_of("u:erin", 'i', 3600, "192.0.2.9"));
  const auto r = s.check(req);
  REQUIRE(r.locks.size() == 1);
  CHECK(r.locks[0].identity == "u:erin");
}
