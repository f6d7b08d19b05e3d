// The one place that formats decision lines: Postfix style text (queue ID or NOQUEUE first, so a grep for
// the queue ID finds Postfix's lines and ours together) or one JSON object per line. Every value from a
// request is escaped here; nothing else writes request data to the log.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "engine.hpp"
#include "protocol.hpp"

namespace rg {

enum class log_format { text, json };

// "4F2A1B3C: defer: key=sasl_username:alice rule=limits.conf:3 window=1h count=101 limit=100 unit=messages
//  client=127.0.0.1 sasl_username=alice sender=<a@b> recipient=<c@d> instance=..."
std::string format_decision(const verdict& v, const policy_request& r, log_format f);

// The line logged once when a key is newly locked:
// "NOQUEUE: lock: key=sasl_username:alice rule=limits.conf:7 until=2026-11-24T13:00:00Z reason=\"...\"
//  client=... sasl_username=... sender=<...> instance=..." (the request that tripped it).
std::string format_lock(const std::string& key, const std::string& rule, std::int64_t until_ms,
                        const std::string& reason, const policy_request& r, log_format f);

// "2026-11-24T13:00:00Z" (UTC, seconds).
std::string iso_time(std::int64_t ms_since_epoch);

// Control characters, DEL, '\\' and '"' become \xNN; values longer than `max` bytes are cut and end in "...".
std::string escape_log_value(std::string_view s, std::size_t max = 512);

// `s` as a JSON string literal, quotes included, in ASCII: '"' and '\\' escaped, control characters, DEL
// and bytes >= 0x80 as \u00NN. Each byte stands for its Latin-1 character, so any byte string gives valid
// JSON and ASCII stays as it is. Values longer than `max` bytes are cut and end in "..." (inside the quotes).
// The one JSON string writer: the JSON decision log, and the control replies (decoded into Boost.JSON).
std::string json_quote(std::string_view s, std::size_t max = 512);

}  // namespace rg
