// The Redis check-and-charge Lua script (the algorithm of store.hpp, run atomically inside Redis) and the
// KEYS/ARGV of one call. No I/O here: redis_store sends it, the benchmark feeds it to redis-benchmark.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "store.hpp"

namespace rg {

std::string_view check_script();
// numkeys, KEYS and ARGV of one check (what follows the script or its SHA in EVAL / EVALSHA).
std::vector<std::string> script_call_args(const store_request& req, std::string_view key_prefix);

}  // namespace rg
