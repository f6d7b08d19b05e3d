// The limits file (/etc/rateguard/limits.conf): rule types, the parser (errors carry file:line) and the
// lookup "which rules apply to this value". Immutable once built; the daemon swaps whole rule sets.
// Nothing here counts or talks to a store.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "net_addr.hpp"

namespace rg {

enum class key_kind : std::uint8_t { sasl_username, client_address, sender, sender_domain };
inline constexpr std::size_t key_kind_count = 4;
std::string_view to_string(key_kind k);
std::optional<key_kind> key_kind_from_string(std::string_view s);  // case-insensitive

enum class unit : std::uint8_t { messages, recipients };
std::string_view to_string(unit u);  // "messages" / "recipients"
std::optional<unit> unit_from_string(std::string_view s);  // case-insensitive; also "msg" / "rcpt"

// Ordered by severity: when several limits are exceeded the most severe action wins.
enum class action : std::uint8_t { none, warn, hold, defer, reject };
std::string_view to_string(action a);  // "none" "warn" "hold" "defer" "reject"
std::optional<action> action_from_string(std::string_view s);  // case-insensitive
inline bool refuses(action a) { return a == action::defer || a == action::reject; }

struct window_limit {
  unit what = unit::messages;
  std::uint64_t count = 0;     // at most this many accepted in any interval of `seconds`
  std::uint32_t seconds = 0;   // window length, 1 s .. 30 d
};

struct rule {
  key_kind kind = key_kind::sasl_username;
  std::string selector;               // as written, lower-cased: "*", "alice", "@example.com", "10.0.0.0/8"
  std::vector<window_limit> limits;   // empty exactly when act == action::none (an exemption)
  action act = action::none;
  std::string text;                   // optional reply text written after the action; empty: generated
  std::string file;
  unsigned line = 0;
  std::string where() const { return file + ":" + std::to_string(line); }
};

struct limits_error {
  std::string file;
  unsigned line = 0;  // 0 when the whole file is at fault (cannot open)
  std::string message;
  std::string to_string() const;  // "file:line: message", or "file: message" when line is 0
};

// All rules of one limits file. Lookup per key kind: the most specific selector that matches wins, and
// every line written with that selector applies (so one user can have a defer line and a hold line).
// Specificity: exact value > domain ("@example.com" for sasl_username and sender; ".example.com" for
// sender_domain, longest suffix first) > "*". client_address: longest matching CIDR prefix > "*".
class rule_set {
 public:
  rule_set() = default;

  const std::vector<rule>& rules() const;
  bool empty() const { return rules().empty(); }
  bool has_kind(key_kind k) const;

  // `value` must be normalized by the caller (lower case; not empty). Returns the lines of the winning
  // selector, or nullptr when no selector matches. client_address goes through match_address.
  const std::vector<const rule*>* match(key_kind k, std::string_view value) const;
  const std::vector<const rule*>* match_address(const ip_address& a) const;

 private:
  friend struct limits_parser;
  // The rules and the index pointing into them live together behind one shared_ptr, so a copy is cheap
  // and can never leave the index pointing into another copy's rules. Null for an empty set.
  struct data;
  std::shared_ptr<const data> data_;
};

struct limits_parse_result {
  std::optional<rule_set> rules;          // set when there are no errors
  std::vector<limits_error> errors;       // every error found, not just the first
  std::vector<limits_error> warnings;     // accepted but suspicious (host bits set, duplicate line, ...)
};

limits_parse_result parse_limits(std::string_view text, const std::string& file_name);
limits_parse_result parse_limits_file(const std::string& path);

}  // namespace rg
