// Integration tests of redis_store's locks, hold journal and operator commands against a real, private
// redis-server: locks seen by the check script, lock expiry and TTLs, status (with baselines and signals),
// reset, top over many SCAN steps, the journal's caps and paging, NOSCRIPT, deadlines and shutdown. The bench
// is redis_store_env.hpp.
#include "redis_store_env.hpp"
#include "timing.hpp"

#include <catch2/catch.hpp>
#include <iostream>

namespace {
using namespace rg::test;  // the bench and the request builders (store_requests.hpp)
namespace sr = rg::test;
using rg::store_result;
}  // namespace

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
  // Real time here (now_ms 0): a 1 s window keeps its counters 1 s + 2 buckets (about 1.17 s), and a raise adds a
  // twelfth (1 166 + 97 ms).
  auto charge = [&] { return e.check(request({counter("u:dana", 1, 0)}, 0)); };
  REQUIRE(charge().charged);
  CHECK(std::stoll(e.server.command({"PTTL", "rg:{u:dana}"})) <= 1'263);
  // 4 s: the lock must still be there 1.6 s later, however slow this machine runs the steps between.
  REQUIRE(e.admin(sr::lock("u:dana", 4'000, "outlives", 0)).changed);
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

  REQUIRE(run_until(e.io, [&] { return e.server.command({"EXISTS", "rg:{u:dana}"}) == "0"; }, 10s));
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
    REQUIRE(e.check(request({counter("u:erin", 3600, 0, 'r', 2), counter("u:erin", 60, 0), counter("u:erin", 86400, 0)},
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
      request({counter("u:erin", 60, 0), counter("u:erin", 86400, 0), counter("u:erin", 3600, 0, 'r')}, now, false));
  CHECK(seen.counts == std::vector<std::uint64_t>{w[0].count, w[1].count, w[2].count});
  CHECK(w[0].count == 3);
  CHECK(w[1].count == 4);
  CHECK(w[2].count == 8);
  REQUIRE(st.identities[0].lock);
  CHECK(st.identities[0].lock->reason == "watch");
}

TEST_CASE("status shows baselines as stored and signals as counted now and reset removes both", "[redis][admin]") {
  env e;
  constexpr std::int64_t minute = 60'000, hour = 3'600'000;
  const std::int64_t start = (t0 / hour + 1) * hour;  // the first ms of a 1 h period (and of a 1 min one)
  const auto req = [&](std::string ip, std::int64_t now) {
    return request_with({burst("u:fay", 60, 2, 5), burst("u:fay", 3600, 2, 5, 0, 'r')},
                        {signal_of("u:fay", 'i', 3600, std::move(ip)), signal_of("u:fay", 'd', 60, "example.com")}, now);
  };
  for (int i = 0; i < 3; ++i) REQUIRE(e.check(req("192.0.2." + std::to_string(i), start + i)).charged);
  // The next minute folds the 60 s baseline (3 charged, under the floor of 5): stored "3:<P>:<first>".
  REQUIRE(e.check(req("192.0.2.1", start + minute)).charged);
  const std::int64_t now = start + 10 * minute;
  const auto st = e.admin(sr::op(rg::admin_op::status, "u:fay", now));
  REQUIRE(st.ok);
  const auto& id = st.identities.at(0);
  REQUIRE(id.baselines.size() == 2);
  CHECK((id.baselines[0].unit_tag == 'm' && id.baselines[0].window_s == 60));
  CHECK(id.baselines[0].value.present);
  CHECK(id.baselines[0].value.average == 3);  // as stored: the minute since then folds at the next charge
  CHECK(id.baselines[0].value.history_ms == 10 * minute);
  CHECK((id.baselines[1].unit_tag == 'r' && id.baselines[1].window_s == 3600));
  CHECK(id.baselines[1].value.average == 0);  // never folded: still in its first period
  CHECK(id.baselines[1].value.history_ms == 0);
  // Sorted by (tag, window); the 60 s domain signal is over by now, so only the address signal is listed.
  REQUIRE(id.signals.size() == 1);
  CHECK(id.signals[0] == rg::signal_count{'i', 3600, 3});
  const auto early = e.admin(sr::op(rg::admin_op::status, "u:fay", start + minute));
  CHECK(early.identities.at(0).signals ==
        std::vector<rg::signal_count>{rg::signal_count{'d', 60, 1}, rg::signal_count{'i', 3600, 3}});

  // top reads identity hashes only, never a signal's HyperLogLog (another type: the script would fail).
  const auto t = e.admin(sr::top("u:", 'm', 60, 10, start + minute));
  REQUIRE(t.ok);
  REQUIRE(t.identities.size() == 1);
  CHECK(t.identities[0].windows == std::vector<rg::window_count>{{'m', 60, 4}});

  REQUIRE(std::stoll(e.server.command({"DBSIZE"})) > 1);
  CHECK(e.admin(sr::op(rg::admin_op::reset, "u:fay", now)).changed);
  CHECK(e.server.command({"DBSIZE"}) == "0");  // the hash and every HyperLogLog, also the 60 s one's old quarters
  const auto gone = e.admin(sr::op(rg::admin_op::status, "u:fay", now));
  CHECK(gone.identities.at(0).baselines.empty());
  CHECK(gone.identities.at(0).signals.empty());
  const auto fresh = e.check(req("192.0.2.9", now + 1));
  CHECK(fresh.distinct == std::vector<std::uint64_t>{1, 1});
  CHECK_FALSE(fresh.baselines[0].present);
}

TEST_CASE("a lock on an identity that only has signals in the request is reported in key order", "[redis][admin]") {
  env e;
  REQUIRE(e.admin(sr::lock("ip:192.0.2.8", 60'000, "roaming", t0)).changed);
  REQUIRE(e.admin(sr::lock("u:gus", 60'000, "rate", t0)).changed);
  const auto r = e.check(request_with({counter("u:gus", 60, 10), counter("s:g@example.com", 60, 0)},
                                      {signal_of("ip:192.0.2.8", 'd', 3600, "example.com"), signal_of("u:gus", 'i', 3600, "192.0.2.8")},
                                      t0 + 1));
  REQUIRE(r.ok);
  CHECK(r.charged);
  CHECK(r.distinct == std::vector<std::uint64_t>{1, 1});
  REQUIRE(r.locks.size() == 2);
  CHECK(r.locks[0].identity == "u:gus");
  CHECK(r.locks[1].identity == "ip:192.0.2.8");
  CHECK(r.locks[1].reason == "roaming");
  // Explain sees it too, with nothing but the signal.
  const auto only = e.check(request_with({}, {signal_of("ip:192.0.2.8", 'd', 3600, "example.org")}, t0 + 2, false));
  REQUIRE(only.locks.size() == 1);
  CHECK(only.locks[0].identity == "ip:192.0.2.8");
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
  REQUIRE(run_until(e.io, [&] { return st && ck; }, 5s));
  CHECK_FALSE(st->ok);
  CHECK(st->error == "redis timeout");
  CHECK(*st_done - issued >= 100ms);  // not before its deadline
  RG_CHECK_TIMING(*st_done - issued <= 150ms);
  // Past the stall limit (1 s) the connection is dropped: top fails then, before its own 5 s deadline (which
  // would say "redis timeout").
  REQUIRE(run_until(e.io, [&] { return tp.has_value(); }, 10s));
  CHECK_FALSE(tp->ok);
  CHECK(tp->error == "redis connection lost");
  RG_CHECK_TIMING(*tp_done - issued <= 2s);
  e.server.resume();
  REQUIRE(run_until(e.io, [&] { return e.store.connected(); }, 10s));
  REQUIRE(e.check(request({counter("u:jo", 60, 0)}, t0)).charged);
  const auto after = e.admin(sr::op(rg::admin_op::status, "u:jo", t0));
  REQUIRE(after.ok);
  CHECK(after.identities.at(0).windows == std::vector<rg::window_count>{{'m', 60, 1}});
}

TEST_CASE("operator commands fail fast when not connected and complete exactly once after stop", "[redis][admin]") {
  redis_server server;
  asio::io_context io;
  rg::redis_options o = for_server(server);
  std::vector<std::string> errors;
  rg::redis_store store(io.get_executor(), o);
  store.async_admin(sr::op(rg::admin_op::status, "u:x", t0), [&](rg::admin_result r) { errors.push_back(r.error); });
  CHECK(errors.empty());
  REQUIRE(run_until(io, [&] { return errors.size() == 1; }, 2s));
  CHECK(errors[0] == "redis not connected");  // at once: not "redis timeout"
  store.start();
  REQUIRE(run_until(io, [&] { return store.connected(); }, 2s));
  server.pause();
  store.async_admin(sr::top("u:", 'm', 60, 5, t0), [&](rg::admin_result r) { errors.push_back(r.error); });
  run_for(io, 20ms);
  store.stop();
  REQUIRE(run_until(io, [&] { return errors.size() == 2; }, 2s));
  CHECK(errors[1] == "redis store stopped");  // not "redis timeout" (top's deadline is 5 s)
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
    REQUIRE(e.check(request({counter(id, 60, 0), counter(id, 3600, 0), counter(id, 86400, 0), counter(id, 3600, 0, 'r')},
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
