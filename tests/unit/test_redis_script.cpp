// The hand-written RESP encoder of the per-request script call must produce exactly the bytes hiredis'
// own formatter produces for the same arguments (hiredis is the reference, not the hot path).
#include <catch2/catch.hpp>
#include <hiredis/hiredis.h>

#include "redis_script.hpp"

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
  store_request req;
  req.now_ms = 1'700'000'000'123;
  req.counters = {{"u:alice", 'm', 60, 1, 30},
                  {"u:alice", 'm', 3600, 1, 0},
                  {std::string("s:we\0ird{}:\r\n", 13), 'r', 86400, 1, 2000},
                  {"ip:127.0.0.1", 'm', 60, 1, 18446744073709551615ull}};
  std::string ours;
  append_check_call(ours, "EVALSHA", "abc123", req, "rg:");
  const std::vector<std::string> argv = {"EVALSHA", "abc123", "3", "rg:{u:alice}",
                                         "rg:{" + std::string("s:we\0ird{}:\r\n", 13) + "}", "rg:{ip:127.0.0.1}",
                                         "1700000000123", "1",
                                         "1", "m", "60", "1", "30",
                                         "1", "m", "3600", "1", "0",
                                         "2", "r", "86400", "1", "2000",
                                         "3", "m", "60", "1", "18446744073709551615"};
  CHECK(ours == hiredis_format(argv));

  std::string cmd;
  append_command(cmd, {"SCRIPT", "LOAD", check_script()});
  CHECK(cmd == hiredis_format({"SCRIPT", "LOAD", std::string(check_script())}));
}
