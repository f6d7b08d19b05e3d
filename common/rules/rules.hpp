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

// local_user: the local account that submitted the message with sendmail (the milter front, by login name).
enum class key_kind : std::uint8_t { sasl_username, client_address, sender, sender_domain, local_user };
inline constexpr std::size_t key_kind_count = 5;
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

// What a limit compares with its count.
enum class measure : std::uint8_t {
  count,         // N/W: the messages (recipients) in any interval of W, at most N
  burst,         // burst:Kx:F/W: the count in W, at most max(K x the key's baseline per W, F), once it has
                 // learned for baseline_warmup and three windows (before that, only the key's other limits apply)
  client_ips,    // client_ips:N/W: distinct client addresses (IPv6 by ipv6_prefix) of the key in W, at most N
  rcpt_domains,  // rcpt_domains:N/W: distinct recipient domains of the key in W, at most N
  // Novelty: values the key had not used within familiar_time (engine_settings), each counted once, when first
  // used; applies once the key's history is baseline_warmup old (a new login knows nothing yet).
  new_networks,  // new_networks:N/W: client networks (IPv4 /network_ipv4_prefix, IPv6 /network_ipv6_prefix)
  new_domains,   // new_domains:N/W: recipient domains
};
std::string_view to_string(measure m);  // "count" "burst" "client_ips" "rcpt_domains" "new_networks" "new_domains"
// Counts values (distinct or new ones), not messages or recipients: takes no msg:/rcpt: unit.
inline bool counts_values(measure m) { return m != measure::count && m != measure::burst; }
inline bool is_novelty(measure m) { return m == measure::new_networks || m == measure::new_domains; }

struct window_limit {
  unit what = unit::messages;
  std::uint64_t count = 0;     // at most this many in any interval of `seconds` (burst: the floor F)
  std::uint32_t seconds = 0;   // window length, 1 s .. 30 d
  measure how = measure::count;
  std::uint32_t factor_x100 = 0;  // burst: K x 100 (1.00 .. 1000.00)
  double factor() const { return factor_x100 / 100.0; }
};
// The limit as written in a limits file, canonical: "100/1h", "rcpt:2000/1d", "burst:5x:50/1h", "client_ips:10/1h",
// "new_domains:20/1h".
std::string to_string(const window_limit& l);
// A burst factor as the limits file writes it: "5x", "2.5x", "1.25x".
std::string factor_text(std::uint32_t factor_x100);
// A window as the limits file writes it: "1h", "90s".
std::string window_text(std::uint32_t seconds);

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
