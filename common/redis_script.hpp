// The Redis check-and-charge Lua script (the algorithm of store.hpp, run atomically inside Redis) and the
// RESP bytes of one call. No I/O here: redis_store sends it, the benchmark feeds it to redis-benchmark.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "store.hpp"

namespace rg {

std::string_view check_script();
// RESP writing: an array header, then its elements as bulk strings (binary-safe: lengths, not C strings).
void append_array_header(std::string& out, std::size_t elements);
void append_bulk(std::string& out, std::string_view s);
void append_bulk(std::string& out, std::uint64_t n);
// One whole command.
void append_command(std::string& out, std::initializer_list<std::string_view> argv);

// The complete "EVALSHA sha numkeys KEYS... ARGV..." (or "EVAL script ...") of one check, written
// straight into `out`: this runs once per policy request, so no intermediate strings.
void append_check_call(std::string& out, std::string_view verb, std::string_view script_or_sha,
                       const store_request& req, std::string_view key_prefix);

}  // namespace rg
