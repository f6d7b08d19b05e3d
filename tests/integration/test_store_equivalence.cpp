// The memory store and the Redis script implement one algorithm: the same request sequence (with the
// same injected clock) must get the same decisions and the same counts from both.
#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>
#include <optional>
#include <random>

#include "engine.hpp"
#include "memory_store.hpp"
#include "redis_fixture.hpp"
#include "redis_store.hpp"

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
