// The check-and-charge: a Redis function (the algorithm of store.hpp, run atomically inside Redis), its library's
// name, and the RESP bytes of one call. No I/O here: redis_store sends them, the benchmark feeds the function to
// redis-benchmark.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

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

// The layouts written lately, each with the numbers it was made from. A layout depends on the rules a request
// meets, not on its identities, so a daemon sends a handful of them over and over: comparing ~70 numbers with
// those of the last ones is cheaper than writing them as decimals again.
class check_layouts {
 public:
  // The layout of `req` (key_of: the 1-based key index of each counter, then of each signal).
  std::string_view get(const store_request& req, const std::size_t* key_of);

 private:
  struct entry {
    std::vector<std::uint64_t> numbers;
    std::string text;
  };
  static constexpr std::size_t kept = 8;
  std::array<entry, kept> entries_;
  std::size_t used_ = 0;  // entries filled so far
  std::size_t last_ = 0;  // the entry returned last, compared first
  std::size_t next_ = 0;  // the entry a new layout replaces (round robin)
  std::vector<std::uint64_t> scratch_;
};

// The complete "FCALL function numkeys keys... args..." of one check (layout above), written straight into `out`:
// this runs once per policy request, so no intermediate strings. With `layouts`, the layout is taken from there.
void append_check_call(std::string& out, std::string_view function, const store_request& req,
                       std::string_view key_prefix, check_layouts* layouts = nullptr);

}  // namespace rg
