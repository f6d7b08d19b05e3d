// rateguardctl's tables: the daemon's JSON answer to one successful command, rendered as the operator reads
// it. No socket, no config, no exit on error: rateguardctl.cpp does the exchange, and the golden-file test
// (tests/unit/test_ctl_format.cpp) renders recorded answers through the same code.
#pragma once

#include <boost/json/fwd.hpp>
#include <ostream>
#include <string>
#include <string_view>

namespace rg {

// Prints the answer `o` (its "ok" is true) to `command` (status, top, holds, lock, release, reset, stats, explain)
// as tables. Returns 0, or 1 when the answer says nothing was found or changed (rateguardctl's exit codes).
// A field of the wrong type (a daemon of another version) throws a std::exception.
int print_answer(std::string_view command, const boost::json::object& o, std::ostream& out);

// A field of an answer as text: a string as it is, null as "", anything else as JSON.
std::string str(const boost::json::value& v);
// The daemon's stats line (logged every stats_interval) from its answer to `stats`, anvil style:
// "statistics: since ... requests=N none=N hold=N ... peak_connections=N store_p99=5ms top=alice:12,bob:3".
std::string stats_line(const boost::json::object& o);

// The field `k` of `o`, or null when absent.
const boost::json::value& get(const boost::json::object& o, const char* k);

}  // namespace rg
