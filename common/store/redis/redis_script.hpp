// The Redis Lua scripts (check-and-charge: the algorithm of store.hpp, run atomically inside Redis; the
// operator scripts), the lock field's encoding and the RESP bytes of one call. No I/O here: redis_store
// sends them, the benchmark feeds the check script to redis-benchmark.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "store.hpp"

namespace rg {

// The check script's call and reply, stated once: the script (redis_script.cpp) reads and writes them,
// append_check_call writes the call, parse_check_reply (redis_reply.cpp) reads the reply.
//   KEYS  the distinct identities of the counters, then of the signals, in order of first appearance, as
//         <prefix>{<identity>}; counters and signals name theirs by index (1-based, as Lua indexes KEYS).
//   ARGV  check_head_args: now_ms (0: Redis TIME), charge (1/0), half_life_ms, familiar_ms, warmup_ms, number of
//         counters; then per counter check_counter_args: key index, unit tag, window_s, cost, refuse_limit,
//         burst_factor (decimal, 0: none), burst_floor, refuse_factor (decimal, 0: none), refuse_floor, novelty
//         bits ("12,345"; '' for an ordinary counter); then per signal check_signal_args: key index, tag,
//         window_s, value, refuse_limit; last, the charge-once token (store_request::once, '' for none).
//   reply {charged (1/0; 2: a repeat of a charged request, read and not charged), count per counter...; per counter with burst_factor > 0, check_baseline_fields:
//         average ('' when no baseline yet), history_ms; per novelty counter, check_novelty_fields: history_ms
//         (-1: never charged), values new; distinct per signal...; then per key with a lock in force,
//         check_lock_fields: key index, lock value}.
inline constexpr std::size_t check_head_args = 6;
inline constexpr std::size_t check_counter_args = 10;
inline constexpr std::size_t check_signal_args = 5;
inline constexpr std::size_t check_baseline_fields = 2;
inline constexpr std::size_t check_novelty_fields = 2;
inline constexpr std::size_t check_lock_fields = 2;

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

// The complete "EVALSHA sha numkeys KEYS... ARGV..." (or "EVAL script ...") of one check (layout above),
// written straight into `out`: this runs once per policy request, so no intermediate strings.
void append_check_call(std::string& out, std::string_view verb, std::string_view script_or_sha,
                       const store_request& req, std::string_view key_prefix);

}  // namespace rg
