// The memory store and the Redis script implement one algorithm: the same request sequence (with the
// same injected clock) must get the same decisions, counts, baselines and distinct counts from both;
// likewise the same mix of checks and operator commands (locks, status, top, hold journal) the same results.
#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>
#include <optional>
#include <random>
#include <set>

#include "engine.hpp"
#include "memory_store.hpp"
#include "redis_fixture.hpp"
#include "redis_store.hpp"
#include "redis_store_env.hpp"
#include "policy_requests.hpp"
#include "store_requests.hpp"

using namespace rg;

namespace {

// A Redis store on a private server, driven synchronously (bounded waits).
struct redis_env {
  explicit redis_env(journal_caps caps) {
    redis_options ro = test::for_server(server);
    ro.timeout = std::chrono::seconds(2);
    ro.journal = caps;
    store.emplace(io.get_executor(), ro);
    store->start();
    for (int i = 0; i < 200 && !store->connected(); ++i) io.run_one_for(std::chrono::milliseconds(10));
    REQUIRE(store->connected());
  }
  ~redis_env() { store->stop(); }
  template <typename Result, typename Start>
  Result run(Start start) {
    std::optional<Result> out;
    start([&](Result r) { out = std::move(r); });
    for (int i = 0; i < 1000 && !out; ++i) io.run_one_for(std::chrono::milliseconds(10));
    REQUIRE(out);
    return std::move(*out);
  }
  store_result check(const store_request& q) {
    return run<store_result>([&](auto h) { store->async_check(q, std::move(h)); });
  }
  admin_result admin(const admin_request& q) {
    return run<admin_result>([&](auto h) { store->async_admin(q, std::move(h)); });
  }
  test::redis_server server;
  boost::asio::io_context io;
  std::optional<redis_store> store;
};

// Averages are computed by C++ in one store and by Lua in the other (pow vs exp2 may differ in the last bit).
void same(const baseline_value& m, const baseline_value& r) {
  CHECK(m.present == r.present);
  CHECK(m.average == Approx(r.average).epsilon(1e-9).margin(1e-12));
  CHECK(m.history_ms == r.history_ms);
}

}  // namespace
namespace Catch {
template <>
struct StringMaker<rg::novelty_value> {
  static std::string convert(const rg::novelty_value& v) {
    return v.present ? "{" + std::to_string(v.history_ms) + " ms, +" + std::to_string(v.added) + "}"
                     : "{none, +" + std::to_string(v.added) + "}";
  }
};
}  // namespace Catch
namespace {

void same(const store_result& m, const store_result& r) {
  CHECK(m.ok == r.ok);
  CHECK(m.charged == r.charged);
  CHECK(m.counts == r.counts);
  CHECK(m.locks == r.locks);
  // Distinct counts are exact in Redis too at these cardinalities (a HyperLogLog is exact when small).
  CHECK(m.distinct == r.distinct);
  REQUIRE(m.baselines.size() == r.baselines.size());
  for (std::size_t i = 0; i < m.baselines.size(); ++i) same(m.baselines[i], r.baselines[i]);
  CHECK(m.novelty == r.novelty);
}

void same(const identity_state& m, const identity_state& r) {
  CHECK(m.identity == r.identity);
  CHECK(m.windows == r.windows);
  CHECK(m.lock == r.lock);
  CHECK(m.signals == r.signals);
  REQUIRE(m.baselines.size() == r.baselines.size());
  for (std::size_t i = 0; i < m.baselines.size(); ++i) {
    CHECK(m.baselines[i].unit_tag == r.baselines[i].unit_tag);
    CHECK(m.baselines[i].window_s == r.baselines[i].window_s);
    same(m.baselines[i].value, r.baselines[i].value);
  }
}

void same(const admin_result& m, const admin_result& r) {
  CHECK(m.ok == r.ok);
  CHECK(m.error == r.error);
  CHECK(m.changed == r.changed);
  CHECK(m.truncated == r.truncated);
  REQUIRE(m.identities.size() == r.identities.size());
  for (std::size_t i = 0; i < m.identities.size(); ++i) same(m.identities[i], r.identities[i]);
  CHECK(m.holds == r.holds);
}

}  // namespace

TEST_CASE("memory and Redis stores give identical decisions for the same request sequence", "[redis][engine]") {
  auto parsed = parse_limits(
      "sasl_username * 5/10s 12/1m defer\n"
      "sasl_username * rcpt:20/1m hold\n"
      "sasl_username * burst:2x:3/10s client_ips:2/1m hold\n"
      "sasl_username heavy 40/1m defer\n"
      "client_address 127.0.0.0/8 30/1m hold\n"
      "client_address 127.0.0.0/8 burst:2x:4/10s defer\n"
      "sender_domain example.com 25/30s reject\n"
      "sender_domain * rcpt_domains:3/30s defer\n"
      "sender * 3/5s warn\n",
      "limits.conf");
  REQUIRE(parsed.rules);
  engine_settings settings;
  // Short enough for the sequence: 10 s periods, 1/alpha = 4.8 (the plain-mean phase ends inside it).
  settings.baseline_half_life = std::chrono::seconds(30);
  settings.baseline_warmup = std::chrono::seconds(20);
  const policy_snapshot snap = make_snapshot(std::move(*parsed.rules), settings);

  redis_env redis({});
  memory_store memory;

  message_tracker mem_tracker, redis_tracker;
  std::mt19937 rng(12345);
  const char* users[] = {"alice", "bob", "heavy", "", "carol"};
  const char* senders[] = {"a@example.com", "b@example.com", "c@other.test", "d@example.com"};
  const char* clients[] = {"127.0.0.1", "192.0.2.7", "2001:db8::5", "127.0.0.2"};
  const char* recipients[] = {"x@example.net", "y@example.org", "z@example.net", "w@example.info", "v@example.edu"};
  std::int64_t now = 1'700'000'000'000;
  int decisions_differing = 0, non_dunno = 0, requests = 0, bursts = 0, signals = 0;
  for (int m = 0; m < 600; ++m) {
    now += std::uniform_int_distribution<int>(0, 400)(rng);
    if (m % 150 == 149) now += 45'000;  // a few quiet periods: the baselines fold empty ones
    policy_request r;
    r.set(attr::request, "smtpd_access_policy");
    r.set(attr::protocol_state, "RCPT");
    r.set(attr::instance, "i" + std::to_string(m));
    r.set(attr::sasl_username, users[rng() % 5]);
    r.set(attr::sender, senders[rng() % 4]);
    r.set(attr::client_address, clients[rng() % 4]);
    const int rcpts = 1 + static_cast<int>(rng() % 3);
    for (int k = 0; k < rcpts; ++k, ++requests) {
      r.set(attr::recipient, recipients[rng() % 5]);
      auto pm = mem_tracker.prepare(snap, r, now);
      auto pr = redis_tracker.prepare(snap, r, now);
      REQUIRE(pm.needs_store == pr.needs_store);
      verdict vm, vr;
      if (!pm.needs_store) {
        vm = pm.immediate;
        vr = pr.immediate;
      } else {
        const auto mres = memory.check(pm.req);
        const auto rres = redis.check(pr.req);
        INFO("message " << m << " rcpt " << k);
        same(mres, rres);
        vm = mem_tracker.finish(snap, r, pm, mres);
        vr = redis_tracker.finish(snap, r, pr, rres);
      }
      if (vm.reply != vr.reply || vm.act != vr.act) ++decisions_differing;
      if (vm.act != action::none) ++non_dunno;
      if (vm.hit && vm.hit->limit.how == measure::burst) ++bursts;
      if (vm.hit && vm.hit->limit.how != measure::burst && vm.hit->limit.how != measure::count) ++signals;
    }
  }
  CHECK(decisions_differing == 0);
  // The sequence must actually exercise the limits, or the comparison proves nothing.
  CHECK(non_dunno > 100);
  CHECK(bursts > 5);
  CHECK(signals > 20);
  CHECK(requests > 1000);
}

// The milter front's whole messages: several recipients charged at once (cost N), and several recipient domains
// observed by one request (one signal spec each, on the same identity and window).
TEST_CASE("memory and Redis stores give identical decisions for whole messages", "[redis][engine][milter]") {
  auto parsed = parse_limits(
      "local_user * 6/10s rcpt:15/1m defer\n"
      "local_user * rcpt_domains:4/30s hold\n"
      "sender_domain * rcpt:25/1m reject\n",
      "limits.conf");
  REQUIRE(parsed.rules);
  const policy_snapshot snap = make_snapshot(std::move(*parsed.rules), engine_settings{});
  redis_env redis({});
  memory_store memory;
  message_tracker mem_tracker, redis_tracker;
  std::mt19937 rng(4242);
  const char* users[] = {"www-data", "alice", "1001"};
  const char* domains[] = {"example.net", "example.org", "example.info", "example.edu", "example.com", "example.biz"};
  std::int64_t now = 1'700'000'000'000;
  int differing = 0, refused = 0, held = 0, signals = 0;
  for (int m = 0; m < 400; ++m) {
    now += std::uniform_int_distribution<int>(0, 600)(rng);
    std::vector<std::string> to;
    const int rcpts = 1 + static_cast<int>(rng() % 5);
    for (int k = 0; k < rcpts; ++k) to.push_back("r" + std::to_string(k) + "@" + domains[rng() % 6]);
    policy_request r = test::whole_message(users[rng() % 3], "m" + std::to_string(m), to, "",
                                           rng() % 2 ? "site@example.com" : "shop@example.com");
    auto pm = mem_tracker.prepare(snap, r, now);
    auto pr = redis_tracker.prepare(snap, r, now);
    REQUIRE(pm.needs_store);
    REQUIRE(pr.needs_store);
    const auto mres = memory.check(pm.req);
    const auto rres = redis.check(pr.req);
    INFO("message " << m);
    same(mres, rres);
    const verdict vm = mem_tracker.finish(snap, r, pm, mres);
    const verdict vr = redis_tracker.finish(snap, r, pr, rres);
    if (vm.reply != vr.reply || vm.act != vr.act) ++differing;
    if (vm.act == action::defer || vm.act == action::reject) ++refused;
    if (vm.act == action::hold) ++held;
    if (vm.hit && vm.hit->limit.how == measure::rcpt_domains) ++signals;
  }
  CHECK(differing == 0);
  CHECK(refused > 20);  // the sequence exercises the limits
  CHECK(held > 5);
  CHECK(signals > 5);
}

// Novelty rules: familiarity filters in two epochs (30 s here, so values are forgotten within the sequence), values
// new and familiar, refusals that learn nothing, the warm-up, IPv4 and IPv6 networks; then the status of each key.
// Every key is charged again within 2 epochs (the 35 s jumps included), so no data expires in the memory store while the Redis
// keys, whose TTLs run in real time, still live: both stores hold the same data throughout.
TEST_CASE("memory and Redis stores give identical decisions for novelty rules", "[redis][engine][novelty]") {
  auto parsed = parse_limits(
      "sasl_username * new_domains:3/30s defer\n"
      "sasl_username * new_networks:2/1m new_domains:6/1m hold\n"
      "sender * new_domains:4/1m hold\n"
      "client_address 127.0.0.0/8 new_domains:5/30s defer\n",
      "limits.conf");
  REQUIRE(parsed.rules);
  engine_settings settings;
  settings.familiar_time = std::chrono::seconds(30);
  settings.baseline_warmup = std::chrono::seconds(5);
  settings.lock_time = std::chrono::seconds(0);  // locks are the next test's; here every message is judged
  settings.network_ipv4_prefix = 24;
  const policy_snapshot snap = make_snapshot(std::move(*parsed.rules), settings);
  redis_env redis({});
  memory_store memory;
  message_tracker mem_tracker, redis_tracker;
  std::mt19937 rng(777);
  const char* users[] = {"alice", "bob", "carol", ""};
  const char* senders[] = {"a@example.com", "b@example.com", "c@other.test"};
  const char* clients[] = {"192.0.2.7", "192.0.2.99", "198.51.100.1", "203.0.113.5", "2001:db8::5",
                           "2001:db8:1::5", "2a00:1450::1", "127.0.0.1"};
  std::int64_t now = 1'700'000'000'000;
  int differing = 0, deferred = 0, held = 0, learning = 0, requests = 0;
  std::set<std::string> identities;
  for (int m = 0; m < 500; ++m) {
    now += std::uniform_int_distribution<int>(0, 300)(rng);
    if (m % 120 == 119) now += 35'000;  // past an epoch: a familiar value moves to the epoch before, or is forgotten
    policy_request r;
    r.set(attr::request, "smtpd_access_policy");
    r.set(attr::protocol_state, "RCPT");
    r.set(attr::instance, "i" + std::to_string(m));
    r.set(attr::sasl_username, users[rng() % 4]);
    r.set(attr::sender, senders[rng() % 3]);
    r.set(attr::client_address, clients[rng() % 8]);
    const int rcpts = 1 + static_cast<int>(rng() % 3);
    for (int k = 0; k < rcpts; ++k, ++requests) {
      // Mostly a handful of familiar domains, now and then a new one.
      const std::string domain = rng() % 5 == 0 ? "new" + std::to_string(m) + "-" + std::to_string(k) + ".test"
                                                : "d" + std::to_string(rng() % 6) + ".example";
      r.set(attr::recipient, "x@" + domain);
      auto pm = mem_tracker.prepare(snap, r, now);
      auto pr = redis_tracker.prepare(snap, r, now);
      REQUIRE(pm.needs_store == pr.needs_store);
      if (!pm.needs_store) continue;
      for (const auto& c : pm.req.counters) identities.insert(c.identity);
      const auto mres = memory.check(pm.req);
      const auto rres = redis.check(pr.req);
      INFO("message " << m << " rcpt " << k);
      same(mres, rres);
      const verdict vm = mem_tracker.finish(snap, r, pm, mres);
      const verdict vr = redis_tracker.finish(snap, r, pr, rres);
      if (vm.reply != vr.reply || vm.act != vr.act) ++differing;
      if (vm.act == action::defer) ++deferred;
      if (vm.act == action::hold) ++held;
      for (const auto& c : pm.candidates)
        if (!message_tracker::evaluate(snap, c, mres).applies) ++learning;
    }
  }
  CHECK(differing == 0);
  // The sequence exercises every path: refusals, holds and the warm-up.
  CHECK(deferred > 20);
  CHECK(held > 20);
  CHECK(learning > 5);
  CHECK(requests > 800);
  for (const std::string& id : identities) {
    INFO(id);
    same(memory.admin(test::op(admin_op::status, id, now)), redis.admin(test::op(admin_op::status, id, now)));
  }
}

TEST_CASE("memory and Redis stores give identical results for locks status top and the hold journal",
          "[redis][admin]") {
  // Injected time spans at most 800 x 2 s; locks last 27-28 min, so none ends by itself before the final
  // jump, and every identity carries a 1 h counter, so no data expires in the memory store while the
  // Redis keys (whose TTLs run in real time) still live: both stores hold the same data throughout.
  const journal_caps caps{15, std::chrono::minutes(10)};
  redis_env redis(caps);
  memory_store memory(1000000, {}, caps);
  std::mt19937 rng(4242);
  auto pick = [&](auto const& v) { return v[rng() % v.size()]; };
  const std::vector<std::string> ids = {"u:a", "u:b", "u:c", "u:d", "ip:192.0.2.1", "ip:192.0.2.2", "d:example.com"};
  const std::vector<std::string> keys = {"sasl_username:a", "sasl_username:b", "client_address:192.0.2.1"};
  std::int64_t now = 1'700'000'000'000;
  int checks_locked = 0, top_hits = 0, holds_read = 0, changed_locks = 0, journal_adds = 0, refused = 0;
  for (int step = 0; step < 800; ++step) {
    now += std::uniform_int_distribution<int>(0, 2000)(rng);
    INFO("step " << step);

    const int dice = static_cast<int>(rng() % 100);
    if (dice < 55) {
      std::vector<counter_spec> cs;
      const int n = 1 + static_cast<int>(rng() % 3);
      for (int k = 0; k < n; ++k) {
        const auto id = pick(ids);
        cs.push_back(test::counter(id, 60, std::vector<std::uint64_t>{0, 5, 8}[rng() % 3]));
        cs.push_back(test::counter(id, 3600, 0, 'r', 1 + static_cast<std::uint32_t>(rng() % 3)));
      }
      const auto q = test::request(cs, now, rng() % 10 != 0);
      const auto m = memory.check(q);
      same(m, redis.check(q));
      checks_locked += m.locks.empty() ? 0 : 1;
      refused += q.charge && !m.charged ? 1 : 0;
      continue;
    }
    admin_request q;
    if (dice < 63) {
      q = test::lock(pick(ids), std::uniform_int_distribution<std::int64_t>(27 * 60'000, 28 * 60'000)(rng),
                     "reason " + std::to_string(step), now);
    } else if (dice < 68) {
      q = test::op(admin_op::release, pick(ids), now);
    } else if (dice < 71) {
      q = test::op(admin_op::reset, pick(ids), now);
    } else if (dice < 79) {
      q = test::op(admin_op::status, pick(ids), now);
    } else if (dice < 85) {
      q = test::top(pick(std::vector<std::string>{"u:", "ip:", ""}), rng() % 2 ? 'm' : 'r', rng() % 2 ? 60 : 3600,
                    1 + rng() % 5, now);
    } else if (dice < 93) {
      q = test::hold(pick(keys), "Q" + std::to_string(step), now);
      ++journal_adds;
    } else {
      q = test::holds(now - std::uniform_int_distribution<std::int64_t>(0, 600'000)(rng),
                      rng() % 2 ? pick(keys) : std::string(), 1 + rng() % 20);
      q.now_ms = now;  // the memory store would otherwise sweep with its real clock, far past the injected one
    }
    const auto m = memory.admin(q);
    same(m, redis.admin(q));
    if (q.op == admin_op::lock && m.changed) ++changed_locks;
    if (q.op == admin_op::top) top_hits += static_cast<int>(m.identities.size());
    if (q.op == admin_op::journal_read) holds_read += static_cast<int>(m.holds.size());
  }
  // Past every lock's end: no lock is in force for either store any more, and the counts still agree.
  now += 29 * 60'000;
  for (const auto& id : ids) {
    const auto q = test::request({test::counter(id, 60), test::counter(id, 3600, 0, 'r')}, now, false);
    const auto m = memory.check(q);
    same(m, redis.check(q));
    CHECK(m.locks.empty());
    const auto st = test::op(admin_op::status, id, now);
    same(memory.admin(st), redis.admin(st));
  }
  auto all = test::holds(0, "", 1000);
  all.now_ms = now;
  const auto full = memory.admin(all);
  same(full, redis.admin(all));
  CHECK(full.holds.size() == caps.max_entries);  // trimmed by length
  // Two holds 29 minutes later: everything older than 10 minutes before them goes.
  for (const auto* qid : {"late1", "late2"}) {
    const auto q = test::hold("sasl_username:a", qid, now);
    same(memory.admin(q), redis.admin(q));
  }
  const auto journal = memory.admin(all);
  same(journal, redis.admin(all));
  CHECK(test::queue_ids(journal) == std::vector<std::string>{"late1", "late2"});
  // The sequence must exercise what it compares, or the comparison proves nothing.
  CHECK(checks_locked > 50);
  CHECK(changed_locks > 10);
  CHECK(refused > 20);
  CHECK(top_hits > 30);
  CHECK(holds_read > 50);
  CHECK(journal_adds > static_cast<int>(caps.max_entries));
}

TEST_CASE("memory and Redis stores give the same baselines and distinct counts for a random detection sequence",
          "[redis][detect]") {
  // Every identity carries a 1 h counter and the injected time spans well under an hour, so no data expires
  // in the memory store while the Redis keys (whose TTLs run in real time) still live.
  redis_env redis({});
  memory_store memory;
  std::mt19937 rng(777);
  auto pick = [&](auto const& v) { return v[rng() % v.size()]; };
  const std::vector<std::string> ids = {"u:a", "u:b", "u:c", "ip:192.0.2.1", "s:x@example.com"};
  const std::vector<std::string> ips = {"192.0.2.1", "192.0.2.2", "198.51.100.0/24", "2001:db8::/64"};
  const std::vector<std::string> domains = {"example.net", "example.org", "example.info", "example.edu", "example.com"};
  // 10 s windows: 1/alpha = 6.3 (a plain mean for 6 periods, then decay); 60 s windows: 1/alpha = 1.5.
  constexpr std::int64_t half_life = 40'000;
  const std::int64_t start = 1'700'000'000'000;
  std::int64_t now = start;
  int present = 0, learned = 0, gaps = 0, refused_by_signal = 0, wide = 0, statuses_with_data = 0, resets = 0;
  for (int step = 0; step < 1500; ++step) {
    now += std::uniform_int_distribution<int>(0, 1500)(rng);
    if (rng() % 100 == 0) {
      now += std::uniform_int_distribution<int>(20'000, 120'000)(rng);  // quiet periods for the folds to skip
      ++gaps;
    }
    INFO("step " << step);
    const int dice = static_cast<int>(rng() % 100);
    if (dice < 85) {
      std::vector<counter_spec> cs;
      std::vector<signal_spec> sigs;
      const int n = 1 + static_cast<int>(rng() % 2);
      for (int k = 0; k < n; ++k) {
        const auto id = pick(ids);
        cs.push_back(test::counter(id, 3600));
        auto b = test::burst(id, 10, rng() % 2 ? 1.5 : 3, rng() % 2 ? 2 : 4, rng() % 4 == 0 ? 8 : 0);
        b.cost = 1 + static_cast<std::uint32_t>(rng() % 3);
        cs.push_back(b);
        if (rng() % 3 == 0) cs.push_back(test::burst(id, 60, 2, 5, 0, 'r'));
        if (rng() % 3 == 0) cs.push_back(test::counter(id, 10, 6));
        sigs.push_back(test::signal_of(id, 'i', 60, pick(ips), std::vector<std::uint64_t>{0, 2, 3}[rng() % 3]));
        if (rng() % 2) sigs.push_back(test::signal_of(id, 'd', 10, pick(domains), rng() % 2 ? 0 : 4));
      }
      const auto q = test::request_with(cs, sigs, now, rng() % 8 != 0, half_life);
      const auto m = memory.check(q);
      same(m, redis.check(q));
      for (std::size_t i = 0; i < m.baselines.size(); ++i) {
        present += m.baselines[i].present ? 1 : 0;
        learned += m.baselines[i].present && m.baselines[i].average > 0 && m.baselines[i].history_ms > 60'000 ? 1 : 0;
      }
      const bool counters_allow = std::all_of(cs.begin(), cs.end(), [&, i = std::size_t{0}](const counter_spec& c) mutable {
        const auto count = m.counts[i++];
        return c.refuse_limit == 0 || count + c.cost <= c.refuse_limit;
      });
      refused_by_signal += q.charge && counters_allow && !m.charged ? 1 : 0;
      wide += std::any_of(m.distinct.begin(), m.distinct.end(), [](std::uint64_t d) { return d >= 3; }) ? 1 : 0;
      continue;
    }
    admin_request q = test::op(dice < 97 ? admin_op::status : admin_op::reset, pick(ids), now);
    const auto m = memory.admin(q);
    same(m, redis.admin(q));
    if (q.op == admin_op::reset) ++resets;
    if (q.op == admin_op::status && !m.identities.empty() && !m.identities[0].baselines.empty() &&
        !m.identities[0].signals.empty())
      ++statuses_with_data;
  }
  CHECK(now - start < 50 * 60'000);
  // The sequence must exercise what it compares, or the comparison proves nothing.
  CHECK(present > 1000);
  CHECK(learned > 200);
  CHECK(gaps > 8);
  CHECK(refused_by_signal > 50);
  CHECK(wide > 100);
  CHECK(statuses_with_data > 50);
  CHECK(resets > 10);
}
