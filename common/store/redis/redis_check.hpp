// The check-and-charge: a Redis function (the algorithm of store.hpp, run atomically inside Redis), its library's
// name, and the RESP bytes of one call. No I/O here: redis_store sends them, the benchmark feeds the function to
// redis-benchmark.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "store.hpp"

namespace rg {

// The check: a Redis function (FUNCTION LOAD, FCALL; Redis 7.0 or later) whose library keeps each distinct
// layout parsed between calls, so a call carries only what changes from request to request. The function's call
// and reply, stated once: the library (redis_check.cpp) reads and writes them, append_check_call writes the call,
// parse_check_reply (redis_reply.cpp) reads the reply.
//   keys  the distinct identities of the counters, then of the signals, in order of first appearance, as
//         <prefix>{<identity>}; counters and signals name theirs by index (1-based, as Lua indexes tables).
//   args  check_call_args: now_ms (0: Redis TIME), charge (1/0), the layout, the charge-once token
//         (store_request::once, '' for none); then the novelty bits of each novelty counter ("12,345"), then
//         each signal's value.
//   layout  space-separated: check_layout_head: half_life_ms, familiar_ms, warmup_ms, number of counters; per
//         counter check_layout_counter: key index, unit tag, window_s, cost, refuse_limit, burst_factor (decimal,
//         0: none), burst_floor, refuse_factor (decimal, 0: none), refuse_floor, n (a novelty counter) or -; per
//         signal check_layout_signal: key index, tag, window_s, refuse_limit.
//   reply {charged (1/0; 2: a repeat of a charged request, read and not charged), count per counter...; per counter with burst_factor > 0, check_baseline_fields:
//         average ('' when no baseline yet), history_ms; per novelty counter, check_novelty_fields: history_ms
//         (-1: never charged), values new; distinct per signal...; then per key with a lock in force,
//         check_lock_fields: key index, lock value}.
inline constexpr std::size_t check_call_args = 4;
inline constexpr std::size_t check_layout_head = 4;
inline constexpr std::size_t check_layout_counter = 10;
inline constexpr std::size_t check_layout_signal = 4;
inline constexpr std::size_t check_baseline_fields = 2;
inline constexpr std::size_t check_novelty_fields = 2;
inline constexpr std::size_t check_lock_fields = 2;

// The library's text for FUNCTION LOAD ("#!lua name=rateguard_<hash>") and the check's function name
// ("rateguard_check_<hash>"): both carry a hash of the code, so nodes of two versions sharing a Redis each call
// their own.
std::string_view check_library();
std::string_view check_function();

// The complete "FCALL function numkeys keys... args..." of one check (layout above), written straight into `out`:
// this runs once per policy request, so no intermediate strings.
void append_check_call(std::string& out, std::string_view function, const store_request& req,
                       std::string_view key_prefix);

}  // namespace rg
