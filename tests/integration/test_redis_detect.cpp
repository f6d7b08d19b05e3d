// Integration tests of the Redis store's detection data against a real redis-server, with injected time:
// adaptive baselines (the fold of store.hpp, checked against a plain loop over periods) and distinct-value
// signals (HyperLogLogs per quarter window, the cached union count). Status, reset, top and locks with this
// data: test_redis_admin.cpp.
#include "redis_store_env.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

namespace {

using namespace rg::test;

constexpr std::int64_t minute = 60'000;
// The first ms of a 60 s period (12 buckets of 5 s) at or after t0.
constexpr std::int64_t p0_ms = (t0 / minute + 1) * minute;
constexpr std::int64_t p0 = p0_ms / minute;

// The baseline as store.hpp defines it, computed the slow way: every period folded one at a time.
struct baseline_model {
  double factor = 0;
  std::uint64_t floor = 0;
  double alpha = 0;
  bool exists = false;
  double avg = 0;
  std::int64_t first = 0, last = 0;
  std::map<std::int64_t, std::uint64_t> charged;  // per period

  // The average folded up to the period before `p`, without changing the model.
  double folded(std::int64_t p) const {
    double a = avg;
    for (std::int64_t q = last; q < p; ++q) {
      const auto it = charged.find(q);
      const double x = std::min(it == charged.end() ? 0.0 : static_cast<double>(it->second),
                                std::max(factor * a, static_cast<double>(floor)));
      const double n = static_cast<double>(q - first + 1);
      a += (x - a) * std::max(alpha, 1 / n);
    }
    return a;
  }
  void charge(std::int64_t p, std::uint64_t cost) {
    if (!exists) {
      exists = true;
      first = last = p;
    } else if (p > last) {
      avg = folded(p);
      last = p;
    }
    charged[p] += cost;
  }
};

}  // namespace

TEST_CASE("the baseline folds like a loop over periods: mean phase gaps cap history and not-charged reads",
          "[redis][detect]") {
  env e;
  constexpr std::int64_t half_life = 4 * minute;  // 1/alpha = 6.29: the mean phase ends inside the sequence
  baseline_model m;
  m.factor = 2;
  m.floor = 3;
  m.alpha = 1 - std::exp2(-static_cast<double>(minute) / half_life);
  REQUIRE(std::floor(1 / m.alpha) == 6);

  struct step {
    std::int64_t period;  // after p0
    std::int64_t at_ms;   // within the period
    std::uint64_t cost;
    bool charge;
    std::uint64_t limit;  // refuse_limit of the burst counter
  };
  const std::vector<step> steps = {
      {0, 0, 2, true, 0},        // first charge ever: nothing to report yet, the field starts at 0
      {0, 59'999, 1, true, 0},   // same period: no fold, no write
      {1, 10, 10, true, 0},      // fold 3 (10 capped at the floor while avg = 0)
      {1, 20, 1, false, 0},      // a read reports the same and writes nothing
      {2, 0, 1, true, 0},        // fold 11 capped at max(2 x 3, 3)
      {5, 0, 2, true, 0},        // fold 1, then 2 empty periods of the mean phase
      {9, 30'000, 1, false, 0},  // read: fold 2, then 3 empty periods that cross the end of the mean phase
      {9, 30'001, 3, true, 0},
      {10, 1, 1, true, 0},  {10, 2, 4, true, 0},   {11, 5, 5, true, 0}, {12, 0, 1, true, 0},
      {13, 7, 2, true, 0},  {14, 59'000, 9, true, 0},
      {40, 100, 1, true, 0},   // a long gap: the exponential decay over 25 periods at once
      {40, 200, 5, true, 3},   // refused: writes nothing
      {41, 0, 1, true, 1},     // refused in a later period: reports the fold, stores nothing
      {41, 1, 1, false, 0},
      {42, 0, 1, true, 0},
  };
  std::string stored_before;
  for (std::size_t i = 0; i < steps.size(); ++i) {
    const auto& s = steps[i];
    INFO("step " << i);
    const std::int64_t now = p0_ms + s.period * minute + s.at_ms;
    const std::int64_t p = p0 + s.period;
    auto c = burst("u:base", 60, m.factor, m.floor, s.limit);
    c.cost = static_cast<std::uint32_t>(s.cost);
    const auto r = e.check(request_with({c}, {}, now, s.charge, half_life));
    REQUIRE(r.ok);
    REQUIRE(r.baselines.size() == 1);
    const auto& b = r.baselines[0];
    CHECK(b.present == m.exists);
    if (m.exists) {
      CHECK(b.average == Approx(m.folded(p)).epsilon(1e-9));
      CHECK(b.history_ms == (p - m.first) * minute);
    } else {
      CHECK(b.average == 0);
      CHECK(b.history_ms == 0);
    }
    const bool charged = s.charge && (s.limit == 0 || r.counts[0] + s.cost <= s.limit);
    CHECK(r.charged == charged);
    const bool writes = charged && (!m.exists || p > m.last);
    if (charged) m.charge(p, s.cost);
    const std::string stored = e.server.command({"HGET", "rg:{u:base}", "bm60"});
    if (writes) {
      // "average:last:first", the average as %.17g, so it reads back exactly.
      const auto parts = stored.find(':');
      CHECK(std::stod(stored.substr(0, parts)) == Approx(m.avg).epsilon(1e-9));
      CHECK(stored.substr(parts) == ":" + std::to_string(p) + ":" + std::to_string(m.first));
    } else {
      CHECK(stored == stored_before);
    }
    stored_before = stored;
  }
  // The baseline keeps the identity 4 half-lives after its last fold (the 60 s window alone: 70 s), and a raise
  // adds a twelfth.
  const auto pttl = std::stoll(e.server.command({"PTTL", "rg:{u:base}"}));
  CHECK(pttl > 4 * half_life - 5'000);
  CHECK(pttl <= 4 * half_life * 13 / 12);
}

TEST_CASE("a baseline is reported per burst counter and none for plain counters", "[redis][detect]") {
  env e;
  const auto req = [&](std::int64_t now) {
    return request_with({counter("u:mix", 60), burst("u:mix", 3600, 3, 10), counter("ip:192.0.2.3", 60), burst("u:mix", 60, 2, 5)},
                   {}, now);
  };
  REQUIRE(e.check(req(p0_ms)).charged);
  const auto r = e.check(req(p0_ms + 61 * minute));
  REQUIRE(r.ok);
  REQUIRE(r.baselines.size() == 4);
  CHECK_FALSE(r.baselines[0].present);
  CHECK_FALSE(r.baselines[2].present);
  // 3600 s window: one period later, the first period (1 charged) folded in whole (n = 1).
  CHECK(r.baselines[1].present);
  CHECK(r.baselines[1].average == 1);
  CHECK(r.baselines[1].history_ms == 3'600'000);
  // The 60 s window shares the burst counter's identity and window with the plain one: one count (both charged
  // it: 2) and one baseline, 2 then 60 empty periods, all in the plain mean (a week's half-life).
  CHECK(r.baselines[3].present);
  CHECK(r.baselines[3].history_ms == 61 * minute);
  CHECK(r.baselines[3].average == Approx(2.0 / 61).epsilon(1e-9));
}

TEST_CASE("two burst counters on one window report with their own factor and the first one writes", "[redis][detect]") {
  env e;
  const auto req = [&](std::int64_t now) {
    return request_with({burst("u:two", 60, 1, 2), burst("u:two", 60, 4, 2)}, {}, now);
  };
  // Each request charges the window twice. Period 0: 4; period 1: 6.
  for (std::int64_t t : {0, 1}) REQUIRE(e.check(req(p0_ms + t)).charged);
  for (std::int64_t t : {0, 1, 2}) REQUIRE(e.check(req(p0_ms + minute + t)).charged);
  // At period 1 both folded period 0 capped at the floor (average 0): 2. At period 2, period 1's 6 is capped
  // at max(1 x 2, 2) = 2 for the first and max(4 x 2, 2) = 8 for the second: 2 + (2 - 2) / 2 and 2 + (6 - 2) / 2.
  const auto r = e.check(req(p0_ms + 2 * minute));
  REQUIRE(r.baselines.size() == 2);
  CHECK(r.baselines[0].average == 2);
  CHECK(r.baselines[1].average == 4);
  CHECK(e.server.command({"HGET", "rg:{u:two}", "bm60"}) == "2:" + std::to_string(p0 + 2) + ":" + std::to_string(p0));
}

TEST_CASE("signals count distinct values over 5 quarter windows with the union cached per quarter", "[redis][detect]") {
  env e;
  constexpr std::int64_t q = 15'000;  // a quarter of 60 s
  const std::int64_t b0 = t0 / q + 1;
  const auto add = [&](std::string value, std::int64_t now, bool charge = true) {
    const auto r = e.check(request_with({}, {signal_of("u:sig", 'i', 60, std::move(value))}, now, charge));
    REQUIRE(r.ok);
    REQUIRE(r.distinct.size() == 1);
    return r.distinct[0];
  };
  const std::string hll = "rg:{u:sig}:i60:";
  const std::int64_t s0 = b0 * q;
  CHECK(add("192.0.2.1", s0) == 1);
  CHECK(e.server.command({"HGET", "rg:{u:sig}", "xi60"}) == std::to_string(b0) + ":1");
  CHECK(add("192.0.2.1", s0 + 1) == 1);
  CHECK(add("192.0.2.2", s0 + 2) == 2);  // a new value in the same quarter recounts
  CHECK(e.server.command({"HGET", "rg:{u:sig}", "xi60"}) == std::to_string(b0) + ":2");
  // explain: the value is not added, and not counted
  CHECK(add("192.0.2.3", s0 + 3, false) == 2);
  CHECK(add("192.0.2.1", s0 + 4) == 2);
  // The quarter's HLL lives the window and two quarters; the hash at least as long.
  const auto pttl = std::stoll(e.server.command({"PTTL", hll + std::to_string(b0)}));
  CHECK(pttl > 85'000);
  CHECK(pttl <= 90'000);
  CHECK(std::stoll(e.server.command({"PTTL", "rg:{u:sig}"})) > 85'000);

  // The next quarter: a known value goes into a new HLL (PFADD answers 1) and the union is recounted.
  CHECK(add("192.0.2.2", s0 + q) == 2);
  CHECK(e.server.command({"HGET", "rg:{u:sig}", "xi60"}) == std::to_string(b0 + 1) + ":2");
  CHECK(add("192.0.2.4", s0 + q + 1) == 3);
  // A lost cache (here deleted by hand) is recounted even though PFADD changes nothing.
  e.server.command({"HDEL", "rg:{u:sig}", "xi60"});
  CHECK(add("192.0.2.4", s0 + q + 2) == 3);
  CHECK(e.server.command({"HGET", "rg:{u:sig}", "xi60"}) == std::to_string(b0 + 1) + ":3");

  // Values of quarter b0 count through quarter b0 + 4 and drop at b0 + 5; those of b0 + 1 a quarter longer.
  const std::string other = "198.51.100.1";
  CHECK(add(other, s0 + 5 * q - 1, false) == 3);
  CHECK(add(other, s0 + 5 * q, false) == 2);  // 192.0.2.2 and .4 were added in b0 + 1
  CHECK(add(other, s0 + 6 * q, false) == 0);
  CHECK(add(other, s0 + 6 * q) == 1);
  // explain created nothing: only the quarters actually charged exist.
  CHECK(e.server.command({"EXISTS", hll + std::to_string(b0 + 5)}) == "0");
  CHECK(e.server.command({"EXISTS", hll + std::to_string(b0 + 6)}) == "1");
}

TEST_CASE("explain on a fresh identity creates no key and a signal's refuse limit blocks charging", "[redis][detect]") {
  env e;
  const auto req = [&](std::string value, std::int64_t now, bool charge = true) {
    return request_with({counter("u:roam", 60, 100)}, {signal_of("u:roam", 'i', 3600, std::move(value), 2)}, now, charge);
  };
  auto r = e.check(req("192.0.2.1", t0, false));
  REQUIRE(r.ok);
  CHECK(r.distinct == std::vector<std::uint64_t>{0});
  CHECK(e.server.command({"DBSIZE"}) == "0");

  CHECK(e.check(req("192.0.2.1", t0)).charged);
  CHECK(e.check(req("192.0.2.2", t0 + 1)).charged);
  r = e.check(req("192.0.2.3", t0 + 2));  // a third address: 3 > 2, not charged, but it was seen
  REQUIRE(r.ok);
  CHECK_FALSE(r.charged);
  CHECK(r.distinct == std::vector<std::uint64_t>{3});
  CHECK(r.counts == std::vector<std::uint64_t>{2});
  r = e.check(req("192.0.2.1", t0 + 3));  // a known address is refused too while 3 are there
  CHECK_FALSE(r.charged);
  CHECK(r.distinct == std::vector<std::uint64_t>{3});
  r = e.check(req("192.0.2.1", t0 + 4, false));
  CHECK(r.counts == std::vector<std::uint64_t>{2});

  // A signal with no limit never refuses; counters with none either.
  r = e.check(request_with({counter("u:many", 60)}, {signal_of("u:many", 'd', 60, "example.com")}, t0));
  CHECK(r.charged);
  CHECK(r.distinct == std::vector<std::uint64_t>{1});
}

TEST_CASE("distinct counts stay within HyperLogLog error for a thousand values and signals share a request",
          "[redis][detect]") {
  env e;
  for (int i = 0; i < 1000; ++i) {
    const auto r = e.check(request_with({counter("u:wide", 3600)},
                                   {signal_of("u:wide", 'd', 3600, "d" + std::to_string(i) + ".example"),
                                    signal_of("u:wide", 'i', 3600, "192.0.2." + std::to_string(i % 7))},
                                   t0 + i));
    REQUIRE(r.ok);
    REQUIRE(r.charged);
    REQUIRE(r.distinct.size() == 2);
    REQUIRE(r.distinct[1] == static_cast<std::uint64_t>(std::min(i + 1, 7)));
    if (i == 999) {
      CHECK(r.distinct[0] > 970);
      CHECK(r.distinct[0] < 1030);
    }
  }
}
