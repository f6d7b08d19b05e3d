// Operator commands (rateguardctl): parses one command request (name=value lines, like the policy protocol),
// runs it against the store and the live rules snapshot, and answers with one JSON document. No sockets: the
// daemon's control listener hands the request in and writes the reply out, so tests drive it directly.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "engine.hpp"
#include "store.hpp"

namespace rg {

// A command request is at most this big (explain carries a whole policy request: 29 attributes, so 64 kB
// is the policy parser's bound too) and has at most this many lines; the socket is root-only, but a stuck
// or broken tool must not make the daemon buffer without end.
inline constexpr std::size_t control_max_request = 64 * 1024;
inline constexpr std::size_t control_max_lines = 256;
// The most rows one top or holds command returns.
inline constexpr std::size_t control_max_rows = 10000;

// The daemon's figures for `stats` (and the stats line), since `since_ms`: the last stats line, or the start.
struct stats_figures {
  std::int64_t since_ms = 0;
  std::int64_t uptime_s = 0;
  std::uint64_t requests = 0;
  std::map<std::string, std::uint64_t> decisions;  // by action: none, warn, hold, defer, reject, store_error
  std::size_t connections = 0, peak_connections = 0;
  double store_p99_s = 0;  // the upper bound of the latency bucket holding the 99th percentile; 0: no round trip
  std::uint64_t locks_set = 0, holds_journaled = 0;
};

// What a command runs against.
struct control_env {
  store& st;
  std::shared_ptr<const policy_snapshot> snap;  // the rules at the time the command arrived
  std::chrono::milliseconds lock_time;          // default --ttl of `lock` (1d when locks are off)
  std::function<stats_figures()> stats = {};    // `stats`; empty: the command is refused
  // Told of each lock the commands change: set by hand (until_ms > 0) or removed by release or reset (0).
  std::function<void(const std::string& identity, std::int64_t until_ms)> lock_changed = {};
};

// How many keys `stats` lists (sasl_username, messages in the last hour, highest first).
inline constexpr std::size_t stats_top_keys = 5;

// `request` is the text up to and including the empty line: "command=status\nkey=sasl_username:alice\n\n"
// (explain: every other line is a policy attribute). The reply is {"ok":true,"command":"status",...}, or
// {"ok":false,"code":"usage"|"store","error":"..."} (rateguardctl exits 64 or 75). Completes within the
// store's deadline.
boost::asio::awaitable<std::string> run_control(control_env env, std::string request);

}  // namespace rg
