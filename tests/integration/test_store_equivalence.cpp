// The memory store and the Redis script implement one algorithm: the same request sequence (with the
// same injected clock) must get the same decisions and the same counts from both; likewise the same
// mix of checks and operator commands (locks, status, top, hold journal) the same results.
#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>
#include <optional>
#include <random>

#include "engine.hpp"
#include "memory_store.hpp"
#include "redis_fixture.hpp"
#include "redis_store.hpp"
#include "store_requests.hpp"

using namespace rg;

TEST_CASE("memory and Redis stores give identical decisions for the same request sequence", "[redis][engine]") {
  auto parsed = parse_limits(
      "sasl_username * 5/10s 12/1m defer\n"
      "sasl_username * rcpt:20/1m hold\n"
      "sasl_username heavy 40/1m defer\n"
      "client_address 127.0.0.0/8 30/1m hold\n"
      "sender_domain example.com 25/30s reject\n"
      "sender * 3/5s warn\n",
      "limits.conf");
  REQUIRE(parsed.rules);
  policy_snapshot snap;
  snap.rules = std::move(*parsed.rules);

  test::redis_server server;
  boost::asio::io_context io;
  redis_options ro;
  ro.address = server.socket_path();
  ro.timeout = std::chrono::seconds(2);
  redis_store redis(io.get_executor(), ro);
  redis.start();
  for (int i = 0; i < 200 && !redis.connected(); ++i) io.run_one_for(std::chrono::milliseconds(10));
  REQUIRE(redis.connected());
  memory_store memory;

  message_tracker mem_tracker, redis_tracker;
  std::mt19937 rng(12345);
  const char* users[] = {"alice", "bob", "heavy", "", "carol"};
  const char* senders[] = {"a@example.com", "b@example.com", "c@other.test", "d@example.com"};
  const char* clients[] = {"127.0.0.1", "192.0.2.7", "2001:db8::5", "127.0.0.2"};
  std::int64_t now = 1'700'000'000'000;
  int decisions_differing = 0, non_dunno = 0, requests = 0;
  for (int m = 0; m < 600; ++m) {
    now += std::uniform_int_distribution<int>(0, 400)(rng);
    policy_request r;
    r.set(attr::request) = "smtpd_access_policy";
    r.set(attr::protocol_state) = "RCPT";
    r.set(attr::instance) = "i" + std::to_string(m);
    r.set(attr::sasl_username) = users[rng() % 5];
    r.set(attr::sender) = senders[rng() % 4];
    r.set(attr::client_address) = clients[rng() % 4];
    const int rcpts = 1 + static_cast<int>(rng() % 3);
    for (int k = 0; k < rcpts; ++k, ++requests) {
      auto pm = mem_tracker.prepare(snap, r, now);
      auto pr = redis_tracker.prepare(snap, r, now);
      verdict vm = pm.needs_store ? mem_tracker.finish(snap, r, pm, memory.check(pm.req)) : pm.immediate;
      verdict vr;
      if (!pr.needs_store) {
        vr = pr.immediate;
      } else {
        std::optional<store_result> res;
        redis.async_check(pr.req, [&](store_result x) { res = std::move(x); });
        for (int i = 0; i < 300 && !res; ++i) io.run_one_for(std::chrono::milliseconds(10));
        REQUIRE(res);
        REQUIRE(res->ok);
        vr = redis_tracker.finish(snap, r, pr, *res);
      }
      if (vm.reply != vr.reply || vm.act != vr.act) ++decisions_differing;
      if (vm.act != action::none) ++non_dunno;
    }
  }
  CHECK(decisions_differing == 0);
  // The sequence must actually exercise the limits, or the comparison proves nothing.
  CHECK(non_dunno > 100);
  CHECK(requests > 1000);
  redis.stop();
}

namespace {

// A Redis store on a private server, driven synchronously (bounded waits).
struct redis_env {
  explicit redis_env(journal_caps caps) {
    redis_options ro;
    ro.address = server.socket_path();
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

void same(const store_result& m, const store_result& r) {
  CHECK(m.ok == r.ok);
  CHECK(m.charged == r.charged);
  CHECK(m.counts == r.counts);
  CHECK(m.locks == r.locks);
}

void same(const admin_result& m, const admin_result& r) {
  CHECK(m.ok == r.ok);
  CHECK(m.error == r.error);
  CHECK(m.changed == r.changed);
  CHECK(m.truncated == r.truncated);
  CHECK(m.identities == r.identities);
  CHECK(m.holds == r.holds);
}

}  // namespace

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
