// The hand-written RESP encoder of the per-request script call must produce exactly the bytes hiredis'
// own formatter produces for the same arguments (hiredis is the reference, not the hot path).
#include <catch2/catch.hpp>
#include <hiredis/hiredis.h>

#include <algorithm>
#include <limits>
#include <string>
#include <vector>

#include "id_queue.hpp"
#include "redis_check.hpp"
#include "redis_script.hpp"
#include "store_requests.hpp"

using namespace rg;

namespace {
std::string hiredis_format(const std::vector<std::string>& argv) {
  std::vector<const char*> p;
  std::vector<std::size_t> l;
  for (auto& a : argv) {
    p.push_back(a.data());
    l.push_back(a.size());
  }
  char* raw = nullptr;
  int n = redisFormatCommandArgv(&raw, static_cast<int>(argv.size()), p.data(), l.data());
  std::string out(raw, static_cast<std::size_t>(n));
  redisFreeCommand(raw);
  return out;
}
}  // namespace

TEST_CASE("append_check_call matches hiredis byte for byte with shared and binary identities", "[redis_script]") {
  const std::string weird("s:we\0ird{}:\r\n", 13);
  auto req = test::request_with(
      {test::counter("u:alice", 60, 30), test::burst("u:alice", 3600, 2.5, 40),
       test::counter(weird, 86400, 2000, 'r'), test::counter("ip:127.0.0.1", 60, 18446744073709551615ull),
       test::novelty("u:alice", 'D', 3600, {7, 300, 511}, 20)},
      {test::signal_of("u:alice", 'i', 86400, "192.0.2.7", 20), test::signal_of("d:example.com", 'd', 3600, weird)},
      1'700'000'000'123, true, 3'600'000);
  req.counters[1].burst_factor = 0.1;  // not a short decimal in binary: must still be written so it reads back
  req.counters[1].refuse_factor = 2.5;
  req.counters[1].refuse_floor = 40;
  req.once = "tok";
  std::string ours;
  append_check_call(ours, "rateguard_check_abc", req, "rg:");
  const std::string layout =
      "3600000 1209600000 0 5 "
      "1 m 60 1 30 0 0 0 0 - "
      "1 m 3600 1 0 0.1 40 2.5 40 - "
      "2 r 86400 1 2000 0 0 0 0 - "
      "3 m 60 1 18446744073709551615 0 0 0 0 - "
      "1 D 3600 0 20 0 0 0 0 n "
      "1 i 86400 20 "
      "4 d 3600 0";
  const std::vector<std::string> argv = {"FCALL", "rateguard_check_abc", "4", "rg:{u:alice}", "rg:{" + weird + "}",
                                         "rg:{ip:127.0.0.1}", "rg:{d:example.com}", "1700000000123", "1", layout,
                                         "tok", "7,300,511", "192.0.2.7", weird};
  CHECK(ours == hiredis_format(argv));
  // A second call reuses the layout's buffer: nothing of the first may remain.
  std::string again;
  append_check_call(again, "rateguard_check_abc", req, "rg:");
  CHECK(again == ours);

  // Through the layouts kept: the same bytes, whether the layout is new, kept, or kept among others; a request that
  // differs in any one number of its layout gets its own.
  check_layouts kept;
  auto other = req;
  other.counters[2].cost = 7;
  auto third = req;
  third.signals[0].refuse_limit = 21;
  auto fourth = req;
  fourth.counters[1].burst_factor = 0.25;
  for (int round = 0; round < 3; ++round)
    for (const store_request* r : {&req, &other, &req, &third, &fourth, &third}) {
      std::string plain, cached;
      append_check_call(plain, "f", *r, "rg:");
      append_check_call(cached, "f", *r, "rg:", &kept);
      CHECK(cached == plain);
    }
  std::string a, b;
  append_check_call(a, "f", req, "rg:", &kept);
  append_check_call(b, "f", other, "rg:", &kept);
  CHECK(a != b);

  std::string cmd;
  append_command(cmd, {"FUNCTION", "LOAD", check_library()});
  CHECK(cmd == hiredis_format({"FUNCTION", "LOAD", std::string(check_library())}));
  CHECK(check_library().starts_with("#!lua name=rateguard_"));
  CHECK(check_function().starts_with("rateguard_check_"));
  CHECK(check_library().find("redis.register_function('" + std::string(check_function()) + "', check)") !=
        std::string_view::npos);
}

TEST_CASE("append_check_call writes the longest numbers of 70 counters and signals exactly", "[redis_script]") {
  // Every number at its widest (the layout is written into room reserved for its longest form) and more counters
  // than the call's small key index holds.
  store_request req;
  req.now_ms = std::numeric_limits<std::int64_t>::max();
  req.half_life_ms = std::numeric_limits<std::int64_t>::max();
  req.familiar_ms = std::numeric_limits<std::int64_t>::max();
  req.warmup_ms = std::numeric_limits<std::int64_t>::max();
  req.charge = false;
  constexpr std::uint64_t u64 = std::numeric_limits<std::uint64_t>::max();
  constexpr std::uint32_t u32 = std::numeric_limits<std::uint32_t>::max();
  std::string layout = std::to_string(req.half_life_ms) + " " + std::to_string(req.familiar_ms) + " " +
                       std::to_string(req.warmup_ms) + " 70";
  for (int i = 0; i < 70; ++i) {
    counter_spec c;
    c.identity = "u:" + std::to_string(i);
    c.unit_tag = 'r';
    c.window_s = u32;
    c.cost = u32;
    c.refuse_limit = u64;
    c.burst_factor = 2.2250738585072014e-308;
    c.burst_floor = u64;
    c.refuse_factor = 1.7976931348623157e308;
    c.refuse_floor = u64;
    req.counters.push_back(c);
    layout += " " + std::to_string(i + 1) + " r 4294967295 4294967295 18446744073709551615 2.2250738585072014e-308 " +
              "18446744073709551615 1.7976931348623157e+308 18446744073709551615 -";
  }
  std::vector<std::string> argv = {"FCALL", "f", "72"};
  for (int i = 0; i < 70; ++i) argv.push_back("rg:{u:" + std::to_string(i) + "}");
  argv.push_back("rg:{d:x}");
  argv.push_back("rg:{d:y}");
  for (const char* id : {"d:x", "d:y"}) {
    signal_spec g;
    g.identity = id;
    g.tag = 'd';
    g.window_s = u32;
    g.value = "v";
    g.refuse_limit = u64;
    req.signals.push_back(g);
  }
  layout += " 71 d 4294967295 18446744073709551615 72 d 4294967295 18446744073709551615";
  for (std::string a : {std::to_string(req.now_ms), std::string("0"), layout, std::string(), std::string("v"),
                        std::string("v")}) {
    argv.push_back(a);
  }
  std::string ours = "prefix bytes already queued";
  append_check_call(ours, "f", req, "rg:");
  const std::string expected = "prefix bytes already queued" + hiredis_format(argv);
  const auto diff = std::mismatch(ours.begin(), ours.end(), expected.begin(), expected.end());
  INFO("first difference at byte " << (diff.first - ours.begin()) << ": ours "
       << ours.substr(static_cast<std::size_t>(diff.first - ours.begin()), 80) << " expected "
       << expected.substr(static_cast<std::size_t>(diff.second - expected.begin()), 80));
  CHECK(ours == expected);
}

TEST_CASE("the lock field decodes until since and a reason that may hold colons", "[redis_script]") {
  const auto l = parse_lock_value("u:alice", "1700000060000:1700000000000:limits.conf:7 61 messages per 1m");
  REQUIRE(l);
  CHECK(l->identity == "u:alice");
  CHECK(l->until_ms == 1'700'000'060'000);
  CHECK(l->since_ms == 1'700'000'000'000);
  CHECK(l->reason == "limits.conf:7 61 messages per 1m");
  CHECK(parse_lock_value("u:a", "5:4:")->reason.empty());
  for (const char* bad : {"", "garbage", "5", "5:", "5:4", "x:4:r", "5:y:r", "-:4:r"}) {
    INFO(bad);
    CHECK_FALSE(parse_lock_value("u:a", bad));
  }
}

TEST_CASE("id_queue finds, erases and lists values by growing id, skipped ids left empty", "[redis_store]") {
  id_queue<std::string> q;
  CHECK(q.empty());
  q.add(5, "five");
  q.add(6, "six");
  q.add(9, "nine");  // 7 and 8 went to operator commands
  REQUIRE(q.find(6) != nullptr);
  std::string* const nine = q.find(9);
  REQUIRE(nine != nullptr);
  CHECK(*nine == "nine");
  CHECK(q.find(4) == nullptr);
  CHECK(q.find(7) == nullptr);
  CHECK(q.find(10) == nullptr);
  q.erase(6);  // out of order: the oldest stays
  CHECK_FALSE(q.contains(6));
  CHECK(q.contains(5));
  for (std::uint64_t id = 10; id < 200; ++id) q.add(id, std::to_string(id));
  CHECK(nine == q.find(9));  // adds do not move a value
  std::vector<std::string> order;
  q.for_each([&](std::string& v) { order.push_back(v); });
  REQUIRE(order.size() == 192);  // five, nine, 10..199
  CHECK(order[0] == "five");
  CHECK(order[1] == "nine");
  CHECK(order[2] == "10");
  q.erase(5);
  q.erase(9);
  for (std::uint64_t id = 10; id < 200; ++id) q.erase(id);
  CHECK(q.empty());
  q.add(300, "again");
  CHECK(*q.find(300) == "again");
  CHECK(q.find(200) == nullptr);
}
