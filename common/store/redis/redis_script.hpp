// The Redis Lua scripts (check-and-charge: the algorithm of store.hpp, run atomically inside Redis; the
// operator scripts), the lock field's encoding and the RESP bytes of one call. No I/O here: redis_store
// sends them, the benchmark feeds the check script to redis-benchmark.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "store.hpp"

namespace rg {

std::string_view check_script();
// The operator scripts (layouts in redis_script.cpp): read (status, top; read-only), lock, release, reset,
// journal_add.
std::string_view read_script();
std::string_view lock_script();
std::string_view release_script();
std::string_view reset_script();
std::string_view journal_add_script();

// The scripts the store loads at every (re)connect, by index: the check first (the hot path).
enum script_index : std::size_t { check_s, read_s, lock_s, release_s, reset_s, journal_add_s, script_count };
std::string_view script_text(std::size_t i);

// A lock is the hash field "lock" of its identity's key: "until_ms:since_ms:reason" (the scripts need only
// the leading number to tell whether it is in force).
std::optional<lock_info> parse_lock_value(std::string_view identity, std::string_view value);
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
