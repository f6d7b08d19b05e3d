// Detection rules through the engine and the in-process store, with an injected clock: a burst rule trips at
// max(K x the key's own baseline, floor) and only after baseline_warmup, client_ips and rcpt_domains trip on
// distinct values, a tripped hold asks for a lock, and the decision line names the baseline.
#include <catch2/catch.hpp>

#include "decision_log.hpp"
#include "engine.hpp"
#include "memory_store.hpp"

using namespace rg;

namespace {

constexpr std::int64_t hour = 3'600'000;

struct detector {
  explicit detector(const std::string& limits) {
    auto parsed = parse_limits(limits, "limits.conf");
    REQUIRE(parsed.rules);
    snap.rules = std::move(*parsed.rules);
    snap.settings.lock_time = std::chrono::hours(24);
    snap.settings.baseline_half_life = std::chrono::hours(24 * 7);
    snap.settings.baseline_warmup = std::chrono::hours(24);
  }
  policy_snapshot snap;
  memory_store store{1000000, [] { return std::int64_t{0}; }};
  std::int64_t now = 1'699'999'200'000;  // a whole hour
  int serial = 0;

  policy_request rcpt(const std::string& user, const std::string& client, const std::string& recipient) {
    policy_request r;
    r.set(attr::request, "smtpd_access_policy");
    r.set(attr::protocol_state, "RCPT");
    r.set(attr::sasl_username, user);
    r.set(attr::instance, "i" + std::to_string(++serial));
    r.set(attr::client_address, client);
    r.set(attr::sender, user + "@example.com");
    r.set(attr::recipient, recipient);
    return r;
  }
  verdict ask(const policy_request& r) {
    message_tracker t;
    auto p = t.prepare(snap, r, now);
    REQUIRE(p.needs_store);
    auto res = store.check(p.req);
    return t.finish(snap, r, p, res);
  }
  // `n` single-recipient messages spread over the current hour; returns the first that is not DUNNO.
  std::optional<verdict> send(const std::string& user, int n) {
    const std::int64_t start = now;
    for (int i = 0; i < n; ++i) {
      now = start + i * (hour / n);
      verdict v = ask(rcpt(user, "192.0.2.1", "r@d.example"));
      if (v.act != action::none) return v;
    }
    now = start + hour;
    return std::nullopt;
  }
};

// A hold tripped by a limit of measure `m` at `count`, locking its key for a day with `reason`.
void check_held(const verdict& v, measure m, std::uint64_t count, const std::string& reason) {
  CHECK(v.act == action::hold);
  REQUIRE(v.hit);
  CHECK(v.hit->limit.how == m);
  CHECK(v.hit->count == count);
  CHECK(v.set_lock_ms == 24 * hour);
  CHECK(lock_reason(*v.hit) == reason);
}

}  // namespace

TEST_CASE("a burst rule waits for the warm-up and then trips at K times the key's own baseline", "[detection]") {
  detector d("sasl_username * burst:5x:10/1h hold\n");
  // First day: 30 an hour, far over the floor, but the baseline is learning: nothing trips.
  for (int h = 0; h < 24; ++h) REQUIRE_FALSE(d.send("alice", 30));
  // Now the baseline is the mean of 24 hours, each capped at the trip point of the average before it: the first
  // hour at the floor (10), the others whole (30): (10 + 23 x 30) / 24 = 29.17, so the trip point is 145.8. The
  // sliding hour (13 buckets of 5 minutes) still holds the last hour's 30 at first: message 116 is the 146th.
  const std::int64_t start = d.now;
  std::optional<verdict> v;
  for (int i = 0; i < 200 && !v; ++i) {
    d.now = start + i * 1000;
    verdict x = d.ask(d.rcpt("alice", "192.0.2.1", "r@d.example"));
    if (x.act != action::none) v = x;
  }
  REQUIRE(v);
  CHECK(v->act == action::hold);
  REQUIRE(v->hit);
  CHECK(v->hit->limit.how == measure::burst);
  CHECK(v->hit->baseline == Approx((10.0 + 23 * 30.0) / 24).epsilon(1e-12));
  CHECK(v->hit->threshold == 145);
  CHECK(v->hit->count == 146);
  CHECK(d.now - start == 115 * 1000);
  CHECK(v->set_lock_ms == 24 * hour);
  CHECK(lock_reason(*v->hit).find("(5x baseline ") != std::string::npos);
  const std::string line = format_decision(*v, d.rcpt("alice", "192.0.2.1", "r@d.example"), log_format::text);
  CHECK(line.find(" count=146 limit=145 ") != std::string::npos);
  CHECK(line.find(" baseline=29.17 ") != std::string::npos);
  CHECK(line.find(" burst=burst:5x:10/1h") != std::string::npos);
}

TEST_CASE("a quiet key trips at the floor - a new key has only its static limits", "[detection]") {
  detector d("sasl_username * burst:5x:10/1h hold\nsasl_username * 100/1h defer\n");
  for (int h = 0; h < 48; ++h) REQUIRE_FALSE(d.send("bob", h % 8 == 0 ? 1 : 0));
  // bob's baseline is about 1/8 an hour: the floor of 10 decides.
  auto v = d.send("bob", 40);
  REQUIRE(v);
  CHECK(v->act == action::hold);
  CHECK(v->hit->threshold == 10);
  CHECK(v->hit->count == 11);
  // carol is new: the burst rule does not apply, the static 100/1h does.
  detector e("sasl_username * burst:5x:10/1h hold\nsasl_username * 100/1h defer\n");
  auto w = e.send("carol", 101);
  REQUIRE(w);
  CHECK(w->act == action::defer);
  CHECK(w->hit->count == 101);
}

TEST_CASE("client_ips trips past N distinct addresses of one login and locks it", "[detection]") {
  detector d("sasl_username * client_ips:3/1h hold\n");
  for (int i = 1; i <= 3; ++i)
    for (int k = 0; k < 3; ++k) CHECK(d.ask(d.rcpt("dave", "192.0.2." + std::to_string(i), "r@d.example")).act == action::none);
  check_held(d.ask(d.rcpt("dave", "198.51.100.7", "r@d.example")), measure::client_ips, 4,
             "limits.conf:1 4 client addresses in 1h, limit 3");
  // IPv6 clients are counted per network (ipv6_prefix 64): two addresses of one /64 are one.
  detector e("sasl_username * client_ips:1/1h hold\n");
  CHECK(e.ask(e.rcpt("erin", "2001:db8:1:2::1", "r@d.example")).act == action::none);
  CHECK(e.ask(e.rcpt("erin", "2001:db8:1:2::99", "r@d.example")).act == action::none);
  CHECK(e.ask(e.rcpt("erin", "2001:db8:1:3::1", "r@d.example")).act == action::hold);
}

TEST_CASE("rcpt_domains counts per RCPT - a deferral is per recipient and lasts while the window is over", "[detection]") {
  detector d("sender * rcpt_domains:2/1h defer\n");
  policy_snapshot& snap = d.snap;
  message_tracker t;
  auto step = [&](const std::string& rcpt_to) {
    policy_request r = d.rcpt("frank", "192.0.2.1", rcpt_to);
    r.set(attr::instance, "one-message");
    auto p = t.prepare(snap, r, d.now);
    return p.needs_store ? t.finish(snap, r, p, d.store.check(p.req)) : p.immediate;
  };
  CHECK(step("a@one.example").act == action::none);
  CHECK(step("b@ONE.example").act == action::none);  // the same domain, any case
  CHECK(step("c@two.example").act == action::none);
  verdict v = step("d@three.example");
  CHECK(v.act == action::defer);
  CHECK(v.reply.rfind("450 4.7.1 ", 0) == 0);
  CHECK(v.hit->count == 3);
  // A signal observes every value, refused or not (an HLL cannot forget one): three.example counts, so the window
  // stays over the limit until it slides. Each later RCPT is still asked of the store, not deferred as part of a
  // whole-message decision (that is for per-message limits).
  verdict w = step("e@two.example");
  CHECK(w.act == action::defer);
  CHECK_FALSE(w.repeated);
  CHECK(w.hit->count == 3);
  d.now += 2 * hour;
  CHECK(step("f@four.example").act == action::none);
}

TEST_CASE("new_domains counts recipient domains new to the key - familiar ones are free - after the warm-up",
          "[detection][novelty]") {
  detector d("sasl_username * new_domains:3/1h hold\n");
  // Day 1: the login learns its correspondents' domains; nothing applies before baseline_warmup (24 h), even ten
  // new domains in one hour.
  for (int i = 0; i < 10; ++i)
    CHECK(d.ask(d.rcpt("gina", "192.0.2.1", "x@known" + std::to_string(i) + ".example")).act == action::none);
  d.now += 25 * hour;
  // Familiar domains cost nothing, however many messages go to them.
  for (int k = 0; k < 30; ++k)
    CHECK(d.ask(d.rcpt("gina", "192.0.2.1", "y@known" + std::to_string(k % 10) + ".example")).act == action::none);
  // Three new domains pass (each counted once, repeats free); the fourth in the hour holds and locks.
  for (const char* dom : {"a.test", "b.test", "a.test", "c.test", "B.TEST"})
    CHECK(d.ask(d.rcpt("gina", "192.0.2.1", std::string("z@") + dom)).act == action::none);
  const verdict v = d.ask(d.rcpt("gina", "192.0.2.1", "z@d.test"));
  check_held(v, measure::new_domains, 4, "limits.conf:1 4 new recipient domains in 1h, limit 3");
  CHECK(format_decision(v, d.rcpt("gina", "192.0.2.1", "z@d.test"), log_format::text).find("unit=new_domains") !=
        std::string::npos);
}

TEST_CASE("a familiar value stays familiar for familiar_time at least and is forgotten after twice that",
          "[detection][novelty]") {
  detector d("sasl_username * new_domains:1/1h defer\n");
  d.snap.settings.familiar_time = std::chrono::hours(24 * 7);
  d.snap.settings.baseline_warmup = std::chrono::hours(0);
  CHECK(d.ask(d.rcpt("hal", "192.0.2.1", "a@old.example")).act == action::none);
  CHECK(d.ask(d.rcpt("hal", "192.0.2.1", "a@other.example")).act == action::defer);  // 2 new in the hour
  // A deferral charges nothing: other.example is still new a week later...
  d.now += 7 * 24 * hour;
  CHECK(d.ask(d.rcpt("hal", "192.0.2.1", "a@old.example")).act == action::none);  // familiar, and used again
  CHECK(d.ask(d.rcpt("hal", "192.0.2.1", "a@other.example")).act == action::none);  // new, the first this hour
  CHECK(d.ask(d.rcpt("hal", "192.0.2.1", "a@third.example")).act == action::defer);
  // ... and a domain unused for two whole epochs is new again.
  d.now += 15 * 24 * hour;
  CHECK(d.ask(d.rcpt("hal", "192.0.2.1", "a@old.example")).act == action::none);
  CHECK(d.ask(d.rcpt("hal", "192.0.2.1", "a@other.example")).act == action::defer);
}

TEST_CASE("new_networks groups clients by network - a carrier pool is one network, IPv6 per provider prefix",
          "[detection][novelty]") {
  detector d("sasl_username * new_networks:1/1h hold\n");
  d.snap.settings.baseline_warmup = std::chrono::hours(0);
  // A phone hopping through its carrier's 100.64.0.0/16 (network_ipv4_prefix 16) is one network.
  for (int i = 1; i <= 20; ++i)
    CHECK(d.ask(d.rcpt("ivy", "100.64." + std::to_string(i * 7) + "." + std::to_string(i), "r@d.example")).act ==
          action::none);
  // Another network in the same hour is the second new one.
  verdict v = d.ask(d.rcpt("ivy", "203.0.113.9", "r@d.example"));
  CHECK(v.act == action::hold);
  REQUIRE(v.hit);
  CHECK(v.hit->limit.how == measure::new_networks);
  CHECK(v.hit->count == 2);
  // IPv6 per /32 (network_ipv6_prefix): new /64s of one provider are one network.
  detector e("sasl_username * new_networks:1/1h hold\n");
  e.snap.settings.baseline_warmup = std::chrono::hours(0);
  CHECK(e.ask(e.rcpt("jo", "2001:db8:a000:1::5", "r@d.example")).act == action::none);
  CHECK(e.ask(e.rcpt("jo", "2001:db8:b777:2::9", "r@d.example")).act == action::none);
  CHECK(e.ask(e.rcpt("jo", "2a00:1450::1", "r@d.example")).act == action::hold);
  // A finer grouping is a setting away.
  detector f("sasl_username * new_networks:1/1h hold\n");
  f.snap.settings.baseline_warmup = std::chrono::hours(0);
  f.snap.settings.network_ipv4_prefix = 24;
  CHECK(f.ask(f.rcpt("kay", "100.64.1.1", "r@d.example")).act == action::none);
  CHECK(f.ask(f.rcpt("kay", "100.64.1.200", "r@d.example")).act == action::none);
  CHECK(f.ask(f.rcpt("kay", "100.64.2.1", "r@d.example")).act == action::hold);
}

TEST_CASE("new_domains refuses per recipient - new_networks counts a message once", "[detection][novelty]") {
  detector d("sender * new_domains:1/1h defer\nsasl_username * new_networks:1/1h defer\n");
  d.snap.settings.baseline_warmup = std::chrono::hours(0);
  message_tracker t;
  auto step = [&](const std::string& client, const std::string& rcpt_to) {
    policy_request r = d.rcpt("lee", client, rcpt_to);
    r.set(attr::instance, "one-message");
    auto p = t.prepare(d.snap, r, d.now);
    return p.needs_store ? t.finish(d.snap, r, p, d.store.check(p.req)) : p.immediate;
  };
  CHECK(step("192.0.2.1", "a@one.example").act == action::none);
  verdict v = step("192.0.2.1", "b@two.example");  // the second new domain of the hour: this recipient only
  CHECK(v.act == action::defer);
  CHECK_FALSE(v.repeated);
  CHECK(step("192.0.2.1", "c@one.example").act == action::none);  // a familiar domain still passes
}

TEST_CASE("a deferring burst rule charges nothing past its trip point - a loop does not teach its own baseline",
          "[detection]") {
  detector d("client_address 127.0.0.1 burst:5x:10/1h defer\n");
  const auto local = [&] { return d.ask(d.rcpt("", "127.0.0.1", "r@d.example")); };
  // Two days of a web application's one message every four hours.
  for (int h = 0; h < 48; ++h, d.now += hour)
    if (h % 4 == 0) REQUIRE(local().act == action::none);
  // A loop of 100 messages in an hour: the 11th and every later one are deferred and not counted.
  int deferred = 0;
  const std::int64_t start = d.now;
  for (int i = 0; i < 100; ++i) {
    d.now = start + i * (hour / 100);
    const verdict v = local();
    if (v.act == action::defer) ++deferred;
    if (i == 10) {
      REQUIRE(v.hit);
      CHECK(v.hit->count == 11);
    }
  }
  CHECK(deferred == 90);
  store_request probe;
  probe.now_ms = d.now;
  probe.charge = false;
  counter_spec c;
  c.identity = counter_identity(key_kind::client_address, "127.0.0.1");
  c.window_s = 3600;
  c.burst_factor = 5;
  c.burst_floor = 10;
  probe.counters.push_back(c);
  const auto res = d.store.check(probe);
  REQUIRE(res.ok);
  CHECK(res.counts[0] == 10);  // only what passed
  // Two hours later the baseline has folded in the 10 that passed, not 100: the trip point stays at the floor, and
  // the 11th message of the hour is deferred again.
  d.now = start + 2 * hour;
  for (int i = 0; i < 10; ++i) REQUIRE(local().act == action::none);
  const verdict v = local();
  CHECK(v.act == action::defer);
  REQUIRE(v.hit);
  CHECK(v.hit->threshold == 10);
  CHECK(v.hit->baseline < 2);
}

TEST_CASE("a burst rule waits for three windows - a first day begun in its evening teaches no baseline",
          "[detection]") {
  detector d("sasl_username * burst:10x:20/1d hold\n");
  d.snap.settings.baseline_warmup = std::chrono::hours(12);
  // The key's first messages come in the last two hours of a day (periods begin at midnight UTC): 5 messages.
  d.now = (d.now / (24 * hour) + 1) * 24 * hour + 22 * hour;
  for (int i = 0; i < 5; ++i) REQUIRE(d.ask(d.rcpt("mia", "192.0.2.1", "r@d.example")).act == action::none);
  // Its first two whole days, 60 messages each: over 10x that partial day (and the second day's 60 is folded in
  // capped at 10x 5), but the baseline is not a judge yet.
  for (int day = 1; day <= 2; ++day) {
    d.now = (d.now / (24 * hour) + 1) * 24 * hour;
    for (int i = 0; i < 60; ++i, d.now += 60'000)
      REQUIRE(d.ask(d.rcpt("mia", "192.0.2.1", "r@d.example")).act == action::none);
  }
  // The next day the rule applies: the mean of 5, 50 (60 capped at 10x 5) and 60, 38.3: 383 is the trip point.
  d.now = (d.now / (24 * hour) + 1) * 24 * hour + 2 * hour;
  std::optional<verdict> v;
  for (int i = 0; i < 500 && !v; ++i, d.now += 60'000)
    if (verdict x = d.ask(d.rcpt("mia", "192.0.2.1", "r@d.example")); x.act != action::none) v = x;
  REQUIRE(v);
  CHECK(v->hit->threshold == 383);
}

TEST_CASE("a novelty limit that does not apply yet refuses nothing - the key's static limits still count",
          "[detection][novelty]") {
  detector d("client_address 127.0.0.1 25/1h defer\nclient_address 127.0.0.1 new_domains:20/1h defer\n");
  // A new key (24 h of warm-up to go): 25 messages to 25 new domains pass, the 26th meets the static limit.
  for (int i = 1; i <= 25; ++i)
    REQUIRE(d.ask(d.rcpt("", "127.0.0.1", "x@d" + std::to_string(i) + ".example")).act == action::none);
  const verdict v = d.ask(d.rcpt("", "127.0.0.1", "x@d26.example"));
  CHECK(v.act == action::defer);
  REQUIRE(v.hit);
  CHECK(v.hit->limit.how == measure::count);
}
