// The limits file parser (every error reported with file:line, warnings for suspicious but valid lines)
// and the per-key-kind lookup index behind rule_set::match. Nothing here counts, talks to a store or
// decides what an action does to a request.
//
// Limits file format (also in the README):
//
//   # '#' starts a comment only at the start of a line (after optional whitespace); elsewhere it is text.
//   # Blank lines are ignored. A line starting with whitespace continues the previous line (Postfix style).
//   KIND  SELECTOR  LIMIT...  ACTION  [TEXT...]
//   KIND  SELECTOR  none
//
//   Fields are separated by spaces or tabs.
//   KIND      sasl_username | client_address | sender | sender_domain | local_user   (any case)
//   SELECTOR  (any case; compared in lower case)
//     sasl_username   *  |  @domain (the part after the last '@' is domain)  |  exact username
//     sender          *  |  @domain  |  user@domain
//     sender_domain   *  |  .example.com (any subdomain, not example.com itself)  |  example.com
//     client_address  *  (any IPv4 or IPv6)  |  address  |  address/prefix
//     local_user      *  |  login name (or numeric uid, for a uid without a passwd entry)
//   LIMIT     [msg:|rcpt:]COUNT/WINDOW: COUNT messages (the default) or recipients per WINDOW.
//             COUNT is 0..1000000000000 (0 allows nothing). WINDOW is [N]U with U one of s m h d:
//             30s, 10m, 1h, h (= 1h), 1d; from 1s to 30d. A line may not give one unit+window twice.
//             [msg:|rcpt:]burst:Kx:FLOOR/WINDOW: more than max(K x the key's own baseline, FLOOR) in WINDOW
//             (K 1x..1000x, two decimals at most; FLOOR >= 1); applies once the baseline has learned.
//             client_ips:N/WINDOW, rcpt_domains:N/WINDOW: more than N distinct client addresses (not on a
//             client_address key) or recipient domains in WINDOW (N >= 1).
//             new_networks:N/WINDOW, new_domains:N/WINDOW: more than N client networks (not on a
//             client_address key) or recipient domains in WINDOW that the key had not used before (N >= 1).
//   ACTION    defer | hold | reject | warn   (any case)
//   TEXT      optional reply text: printable ASCII, at most 200 characters; runs of blanks become one space.
//   none      in place of the limits and action: values matching SELECTOR are not limited by this KIND.
//
//   Per KIND, the most specific matching selector wins and all of its lines apply:
//   exact > @domain (sender_domain: the longest matching .suffix) > *; client_address: longest prefix > *.
//
//   Any error rejects the whole file. Warnings (the line still applies): a network with host bits set,
//   a repeated line, one selector with two lines of the same unit+window and action, a selector that is
//   both exempted and limited.
//
//   sasl_username   *             100/1h rcpt:1000/1d  defer  Sending limit reached, try again later
//   sasl_username   @example.org  500/1h               defer
//   sasl_username   newsletter    none
//   client_address  2001:db8::/32 50/10m               hold
#include "rules.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>

namespace rg {
namespace {

constexpr std::uint64_t max_count = 1'000'000'000'000;
constexpr std::uint32_t max_window = 30 * 86400;
constexpr std::size_t max_text = 200;

char to_lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

std::string lowered(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), to_lower);
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](char x, char y) { return to_lower(x) == to_lower(y); });
}

bool is_blank(char c) { return c == ' ' || c == '\t'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

std::string quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

std::vector<std::string_view> split_fields(std::string_view line) {
  std::vector<std::string_view> fields;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && is_blank(line[i])) ++i;
    const std::size_t start = i;
    while (i < line.size() && !is_blank(line[i])) ++i;
    if (i > start) fields.push_back(line.substr(start, i - start));
  }
  return fields;
}

// "5x", "2.5x", "1.25x" -> factor x 100; 0 when malformed or out of 1 .. 1000.
std::uint32_t parse_factor(std::string_view f) {
  if (f.size() < 2 || f.back() != 'x') return 0;
  f.remove_suffix(1);
  const auto dot = f.find('.');
  const auto whole = f.substr(0, dot);
  const auto frac = dot == std::string_view::npos ? std::string_view() : f.substr(dot + 1);
  if (whole.empty() || whole.size() > 4 || (dot != std::string_view::npos && (frac.empty() || frac.size() > 2)))
    return 0;
  if (!std::all_of(whole.begin(), whole.end(), is_digit) || !std::all_of(frac.begin(), frac.end(), is_digit)) return 0;
  std::uint32_t v = 0;
  for (char c : whole) v = v * 10 + static_cast<std::uint32_t>(c - '0');
  v *= 100;
  if (!frac.empty()) v += static_cast<std::uint32_t>(frac[0] - '0') * 10 + (frac.size() > 1 ? static_cast<std::uint32_t>(frac[1] - '0') : 0);
  return v >= 100 && v <= 100000 ? v : 0;
}

// The measures written NAME:N/WINDOW.
std::optional<measure> value_measure(std::string_view prefix) {
  for (measure m : {measure::client_ips, measure::rcpt_domains, measure::new_networks, measure::new_domains})
    if (prefix == to_string(m)) return m;
  return std::nullopt;
}

// Parses a lower-cased limit token into `out`; returns why it is not a limit, or "" on success.
//   [msg:|rcpt:]COUNT/WINDOW   [msg:|rcpt:]burst:Kx:FLOOR/WINDOW   client_ips:N/WINDOW   rcpt_domains:N/WINDOW
//   new_networks:N/WINDOW   new_domains:N/WINDOW
std::string parse_limit(std::string_view token, window_limit& out) {
  out = window_limit{};
  bool unit_given = false;
  for (auto colon = token.find(':'); colon != std::string_view::npos && colon < token.find('/');
       colon = token.find(':')) {
    const auto prefix = token.substr(0, colon);
    token.remove_prefix(colon + 1);
    if (out.how != measure::count) return "nothing may come between \"" + std::string(to_string(out.how)) + ":\" and the count";
    if (prefix == "msg" || prefix == "rcpt") {
      if (unit_given) return "the unit (\"msg:\" or \"rcpt:\") is given twice";
      unit_given = true;
      if (prefix == "rcpt") out.what = unit::recipients;
    } else if (prefix == "burst") {
      const auto next = token.find(':');
      if (next == std::string_view::npos) return "expected burst:FACTORx:FLOOR/WINDOW, e.g. burst:5x:50/1h";
      out.factor_x100 = parse_factor(token.substr(0, next));
      if (out.factor_x100 == 0) return "burst factor must be 1x to 1000x, at most two decimals (e.g. 5x, 2.5x)";
      token.remove_prefix(next + 1);
      out.how = measure::burst;
    } else if (const auto m = value_measure(prefix)) {
      if (unit_given) return std::string(prefix) + " counts " + (is_novelty(*m) ? "new" : "distinct") + " values: it takes no unit";
      out.how = *m;
    } else {
      return "unknown prefix " + quoted(prefix) +
             " (expected msg:, rcpt:, burst:, client_ips:, rcpt_domains:, new_networks: or new_domains:)";
    }
  }
  const auto slash = token.find('/');
  if (slash == std::string_view::npos) return "expected COUNT/WINDOW, e.g. 100/1h";
  const auto count = token.substr(0, slash);
  auto window = token.substr(slash + 1);

  if (count.empty()) return "missing count before '/'";
  if (!std::all_of(count.begin(), count.end(), is_digit)) return "count must be a whole number";
  if (count.size() > 13) return "count must be at most 1000000000000";
  for (char c : count) out.count = out.count * 10 + static_cast<std::uint64_t>(c - '0');
  if (out.count > max_count) return "count must be at most 1000000000000";

  if (window.empty()) return "missing window after '/'";
  std::uint64_t n = 0;
  std::size_t digits = 0;
  while (digits < window.size() && is_digit(window[digits])) {
    if (digits == 8) return "window must be between 1s and 30d";  // before n can overflow
    n = n * 10 + static_cast<std::uint64_t>(window[digits++] - '0');
  }
  if (digits == 0) n = 1;  // "h" means "1h"
  window.remove_prefix(digits);
  if (window.empty()) return "window needs a unit: s, m, h or d (e.g. 60s)";
  std::uint64_t size = 0;
  if (window.size() == 1) {
    switch (window[0]) {
      case 's':
        size = 1;
        break;
      case 'm':
        size = 60;
        break;
      case 'h':
        size = 3600;
        break;
      case 'd':
        size = 86400;
        break;
      default:
        break;
    }
  }
  if (size == 0) return "window unit must be s, m, h or d";
  if (n == 0 || n * size > max_window) return "window must be between 1s and 30d";
  out.seconds = static_cast<std::uint32_t>(n * size);
  if (out.how == measure::burst && out.count == 0) return "the burst floor must be at least 1";
  if (counts_values(out.how) && out.count == 0) return std::string(to_string(out.how)) + " must allow at least 1";
  return "";
}

// What a selector is, and the key it is indexed under (lower case; CIDRs canonical so that spellings of
// one network share an entry).
struct selector_info {
  enum class form : std::uint8_t { any, exact, domain, net } how = form::any;
  std::string key;  // exact: the value; domain: "example.com" for "@example.com", ".example.com" as is
  cidr net{};
  bool host_bits = false;
  std::string error;  // set when the selector is invalid
};

selector_info classify(key_kind kind, std::string_view written) {
  selector_info s;
  const std::string sel = lowered(written);
  const auto fail = [&](std::string_view why) {
    s.error =
        "bad " + std::string(to_string(kind)) + " selector " + quoted(written) + ": " + std::string(why);
    return s;
  };
  if (sel == "*") return s;
  switch (kind) {
    case key_kind::sasl_username:
    case key_kind::sender:
      if (sel.starts_with("*@")) return fail("write \"@domain\" to match every address of a domain");
      if (sel.front() == '@') {
        if (sel.size() == 1) return fail("empty domain");
        if (sel.find('@', 1) != std::string::npos) return fail("a domain cannot contain '@'");
        s.how = selector_info::form::domain;
        s.key = sel.substr(1);
        return s;
      }
      if (kind == key_kind::sender) {
        const auto at = sel.rfind('@');
        if (at == std::string::npos) {
          return fail("use \"*\", \"@domain\" or \"user@domain\" (for a bare domain use sender_domain)");
        }
        if (at + 1 == sel.size()) return fail("empty domain after '@'");
      }
      s.how = selector_info::form::exact;
      s.key = sel;
      return s;
    case key_kind::local_user:
      if (sel.find_first_of("@:/") != std::string::npos) return fail("expected a login name or a numeric uid");
      s.how = selector_info::form::exact;
      s.key = sel;
      return s;
    case key_kind::sender_domain:
      if (sel.starts_with("*.")) return fail("write \".example.com\" to match subdomains");
      if (sel.find('@') != std::string::npos) return fail("expected a domain, not an address");
      if (sel == ".") return fail("empty domain");
      s.how = sel.front() == '.' ? selector_info::form::domain : selector_info::form::exact;
      s.key = sel;
      return s;
    case key_kind::client_address: {
      auto net = parse_cidr(sel, &s.host_bits);
      if (!net) return fail("not an IP address or network (address/prefix)");
      s.how = selector_info::form::net;
      s.net = *net;
      s.key = ip_bucket(net->net, 128) + "/" + std::to_string(net->prefix);
      return s;
    }
  }
  return s;
}

std::array<std::uint8_t, 16> masked(const ip_address& a, unsigned prefix) {
  std::array<std::uint8_t, 16> out{};
  const unsigned full = prefix / 8;
  std::copy_n(a.bytes.begin(), full, out.begin());
  if (prefix % 8 != 0) out[full] = static_cast<std::uint8_t>(a.bytes[full] & (0xff00u >> (prefix % 8)));
  return out;
}

using rule_list = std::vector<const rule*>;

// Transparent, so match() can look up a string_view without building a std::string.
struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using string_map = std::unordered_map<std::string, rule_list, string_hash, std::equal_to<>>;

struct bytes_hash {
  std::size_t operator()(const std::array<std::uint8_t, 16>& b) const noexcept {
    return std::hash<std::string_view>{}(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()));
  }
};

// All networks of one family and prefix length, keyed by their masked address: a lookup masks once per
// prefix length present in the file (at most 33 + 129 probes), however many networks there are.
struct net_level {
  bool v6 = false;
  unsigned prefix = 0;
  std::unordered_map<std::array<std::uint8_t, 16>, rule_list, bytes_hash> nets;
};

struct kind_index {
  bool present = false;
  string_map exact;
  string_map domain;            // "example.com" for "@example.com"; ".example.com" for sender_domain
  std::vector<net_level> nets;  // client_address only; longest prefix first
  rule_list any;
};

std::size_t index_of(key_kind k) { return static_cast<std::size_t>(k); }

}  // namespace

struct rule_set::data {
  std::vector<rule> rules;
  std::array<kind_index, key_kind_count> kinds;
};

// ---- names -------------------------------------------------------------------------------------------

std::string_view to_string(key_kind k) {
  switch (k) {
    case key_kind::sasl_username:
      return "sasl_username";
    case key_kind::client_address:
      return "client_address";
    case key_kind::sender:
      return "sender";
    case key_kind::sender_domain:
      return "sender_domain";
    case key_kind::local_user:
      return "local_user";
  }
  return "?";
}

std::optional<key_kind> key_kind_from_string(std::string_view s) {
  for (auto k :
       {key_kind::sasl_username, key_kind::client_address, key_kind::sender, key_kind::sender_domain,
        key_kind::local_user}) {
    if (iequals(s, to_string(k))) return k;
  }
  return std::nullopt;
}

std::string_view to_string(measure m) {
  switch (m) {
    case measure::count:
      return "count";
    case measure::burst:
      return "burst";
    case measure::client_ips:
      return "client_ips";
    case measure::rcpt_domains:
      return "rcpt_domains";
    case measure::new_networks:
      return "new_networks";
    case measure::new_domains:
      return "new_domains";
  }
  return "?";
}

std::string window_text(std::uint32_t seconds) {
  for (auto [size, letter] : {std::pair{86400u, 'd'}, {3600u, 'h'}, {60u, 'm'}}) {
    if (seconds % size == 0) return std::to_string(seconds / size) + letter;
  }
  return std::to_string(seconds) + 's';
}

std::string factor_text(std::uint32_t factor_x100) {
  std::string s = std::to_string(factor_x100 / 100);
  if (const auto cents = factor_x100 % 100; cents != 0)
    s += cents % 10 == 0 ? "." + std::to_string(cents / 10) : (cents < 10 ? ".0" : ".") + std::to_string(cents);
  return s + "x";
}

std::string to_string(const window_limit& l) {
  std::string s;
  if (l.what == unit::recipients) s = "rcpt:";
  if (l.how == measure::burst) {
    s += "burst:" + factor_text(l.factor_x100) + ":";
  } else if (l.how != measure::count) {
    s += std::string(to_string(l.how)) + ":";
  }
  return s + std::to_string(l.count) + "/" + window_text(l.seconds);
}

std::string_view to_string(unit u) { return u == unit::recipients ? "recipients" : "messages"; }

std::optional<unit> unit_from_string(std::string_view s) {
  if (iequals(s, "messages") || iequals(s, "msg")) return unit::messages;
  if (iequals(s, "recipients") || iequals(s, "rcpt")) return unit::recipients;
  return std::nullopt;
}

std::string_view to_string(action a) {
  switch (a) {
    case action::none:
      return "none";
    case action::warn:
      return "warn";
    case action::hold:
      return "hold";
    case action::defer:
      return "defer";
    case action::reject:
      return "reject";
  }
  return "?";
}

std::optional<action> action_from_string(std::string_view s) {
  for (auto a : {action::none, action::warn, action::hold, action::defer, action::reject}) {
    if (iequals(s, to_string(a))) return a;
  }
  return std::nullopt;
}

std::string limits_error::to_string() const {
  if (line == 0) return file + ": " + message;
  return file + ":" + std::to_string(line) + ": " + message;
}

// ---- lookup ------------------------------------------------------------------------------------------

const std::vector<rule>& rule_set::rules() const {
  static const std::vector<rule> no_rules;
  return data_ ? data_->rules : no_rules;
}

bool rule_set::has_kind(key_kind k) const { return data_ && data_->kinds[index_of(k)].present; }

const std::vector<const rule*>* rule_set::match(key_kind k, std::string_view value) const {
  if (!data_ || value.empty()) return nullptr;
  if (k == key_kind::client_address) {
    const auto a = parse_ip(value);
    return a ? match_address(*a) : nullptr;
  }
  const kind_index& ix = data_->kinds[index_of(k)];
  // Most rule sets name few values per kind, often none: an empty map is not worth hashing the value for.
  if (!ix.exact.empty())
    if (auto it = ix.exact.find(value); it != ix.exact.end()) return &it->second;
  if (!ix.domain.empty()) {
    if (k == key_kind::sender_domain) {
      // Left to right is longest suffix first. Position 0 is skipped: a subdomain needs a label before it.
      for (auto dot = value.find('.', 1); dot != std::string_view::npos; dot = value.find('.', dot + 1)) {
        if (auto it = ix.domain.find(value.substr(dot)); it != ix.domain.end()) return &it->second;
      }
    } else if (const auto at = value.rfind('@'); at != std::string_view::npos) {
      if (auto it = ix.domain.find(value.substr(at + 1)); it != ix.domain.end()) return &it->second;
    }
  }
  return ix.any.empty() ? nullptr : &ix.any;
}

const std::vector<const rule*>* rule_set::match_address(const ip_address& a) const {
  if (!data_) return nullptr;
  const kind_index& ix = data_->kinds[index_of(key_kind::client_address)];
  for (const net_level& level : ix.nets) {
    if (level.v6 != a.v6) continue;
    if (auto it = level.nets.find(masked(a, level.prefix)); it != level.nets.end()) return &it->second;
  }
  return ix.any.empty() ? nullptr : &ix.any;
}

// ---- parser ------------------------------------------------------------------------------------------

struct limits_parser {
  std::string file;
  limits_parse_result result;
  std::vector<rule> rules;
  // For warnings: the first line of each distinct rule, of each selector+unit+window+action, and of each
  // selector's first exemption / first limits line.
  std::unordered_map<std::string, unsigned> rule_lines;
  std::unordered_map<std::string, unsigned> window_lines;
  std::unordered_map<std::string, std::pair<unsigned, unsigned>> exempt_and_limited;

  void error(unsigned line, std::string message) {
    result.errors.push_back({file, line, std::move(message)});
  }
  void warning(unsigned line, std::string message) {
    result.warnings.push_back({file, line, std::move(message)});
  }

  void parse_text(std::string_view text) {
    std::string logical;
    unsigned logical_line = 0;
    unsigned line_no = 0;
    while (!text.empty()) {
      ++line_no;
      const auto nl = text.find('\n');
      auto line = text.substr(0, nl);
      text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);  // edited on Windows

      const auto first = line.find_first_not_of(" \t");
      if (first == std::string_view::npos || line[first] == '#') continue;
      if (first > 0) {
        if (logical_line == 0) {
          error(line_no, "continuation line (starts with whitespace) without a rule before it");
        } else {
          logical += ' ';
          logical += line;
        }
        continue;
      }
      if (logical_line != 0) parse_line(logical, logical_line);
      logical.assign(line);
      logical_line = line_no;
    }
    if (logical_line != 0) parse_line(logical, logical_line);
  }

  void parse_line(std::string_view text, unsigned line) {
    const auto fields = split_fields(text);
    const std::size_t errors_before = result.errors.size();
    if (fields.size() < 3) {
      error(line, "expected \"KIND SELECTOR LIMIT... ACTION [TEXT]\" or \"KIND SELECTOR none\"");
      return;
    }
    const auto kind = key_kind_from_string(fields[0]);
    if (!kind) {
      error(line, "unknown key kind " + quoted(fields[0]) +
                      " (expected sasl_username, client_address, sender, sender_domain or local_user)");
      return;
    }
    rule r;
    r.kind = *kind;
    r.selector = lowered(fields[1]);
    r.file = file;
    r.line = line;
    const selector_info sel = classify(*kind, fields[1]);
    if (!sel.error.empty()) error(line, sel.error);

    if (iequals(fields[2], "none")) {
      if (fields.size() > 3) error(line, "nothing may follow \"none\" (an exemption has no action or text)");
    } else {
      std::size_t i = 2;
      for (; i < fields.size(); ++i) {
        const auto token = fields[i];
        if (const auto act = action_from_string(token)) {
          if (*act == action::none) {
            error(line, "\"none\" cannot follow limits; write it alone: \"KIND SELECTOR none\"");
            return;
          }
          r.act = *act;
          break;
        }
        if (!is_digit(token.front()) && token.find_first_of("/:") == std::string_view::npos) {
          error(line, i == 2 ? "expected a limit such as 100/1h, or \"none\", but found " + quoted(token)
                             : "unknown action " + quoted(token) + " (expected defer, hold, reject or warn)");
          return;
        }
        window_limit limit;
        if (auto why = parse_limit(lowered(token), limit); !why.empty()) {
          error(line, "bad limit " + quoted(token) + ": " + why);
          continue;
        }
        const bool repeated = std::any_of(r.limits.begin(), r.limits.end(), [&](const window_limit& l) {
          return l.what == limit.what && l.seconds == limit.seconds && l.how == limit.how;
        });
        if (repeated) {
          error(line, "limit " + quoted(token) + " repeats the " +
                          (limit.how == measure::count ? std::string(to_string(limit.what))
                                                       : std::string(to_string(limit.how))) +
                          " per " + window_text(limit.seconds) + " window given earlier on this line");
        }
        if ((limit.how == measure::client_ips || limit.how == measure::new_networks) && *kind == key_kind::client_address) {
          error(line, std::string(to_string(limit.how)) + " counts the client addresses of one login or sender; a "
                      "client_address key has exactly one");
        }
        r.limits.push_back(limit);
      }
      if (i == 2) {
        error(line, "at least one limit (such as 100/1h) must come before the action");
      } else if (i == fields.size()) {
        error(line, "missing action after the limits (defer, hold, reject or warn)");
      } else {
        for (std::size_t j = i + 1; j < fields.size(); ++j) {
          if (!r.text.empty()) r.text += ' ';
          r.text += fields[j];
        }
        const bool printable = std::all_of(r.text.begin(), r.text.end(), [](char c) {
          return static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7f;
        });
        if (!printable) error(line, "reply text may contain only printable ASCII characters");
        if (r.text.size() > max_text) {
          error(line, "reply text is " + std::to_string(r.text.size()) + " characters; at most " +
                          std::to_string(max_text) + " are allowed");
        }
      }
    }
    if (result.errors.size() != errors_before) return;
    check_warnings(r, sel);
    rules.push_back(std::move(r));
  }

  void check_warnings(const rule& r, const selector_info& sel) {
    const std::string where = std::string(to_string(r.kind)) + " " + quoted(r.selector);
    if (sel.host_bits) {
      warning(r.line, where + " has host bits set; it matches the network " + sel.key);
    }
    const std::string selector_key = std::string(to_string(r.kind)) + '\n' + sel.key + '\n';
    std::string rule_key = selector_key + std::string(to_string(r.act)) + '\n' + r.text;
    for (const auto& l : r.limits) {
      rule_key += '\n' + to_string(l);
    }
    if (auto [it, fresh] = rule_lines.try_emplace(rule_key, r.line); !fresh) {
      warning(r.line, "duplicate of line " + std::to_string(it->second));
      return;  // the checks below would only repeat this
    }
    for (const auto& l : r.limits) {
      const std::string key = selector_key + std::to_string(static_cast<int>(l.what)) + '/' +
                              std::to_string(static_cast<int>(l.how)) + '/' + std::to_string(l.seconds) + '/' +
                              std::string(to_string(r.act));
      if (auto [it, fresh] = window_lines.try_emplace(key, r.line); !fresh) {
        const std::string what = l.how == measure::count ? std::string(to_string(l.what)) : std::string(to_string(l.how));
        warning(r.line, where + " already has a " + what + " per " + window_text(l.seconds) + " limit with action " +
                            std::string(to_string(r.act)) + " on line " + std::to_string(it->second) +
                            "; only the lower count matters");
      }
    }
    // An exemption next to limits for the same selector is almost certainly a leftover.
    auto& [exempt, limited] = exempt_and_limited[selector_key];
    unsigned& mine = r.act == action::none ? exempt : limited;
    if (mine == 0) mine = r.line;
    if (exempt != 0 && limited != 0 && mine == r.line) {
      warning(r.line, where + " is both exempted (\"none\", line " + std::to_string(exempt) +
                          ") and limited (line " + std::to_string(limited) + ")");
    }
  }

  limits_parse_result finish() {
    if (!result.errors.empty()) return std::move(result);
    auto d = std::make_shared<rule_set::data>();
    d->rules = std::move(rules);
    for (const rule& r : d->rules) {  // pointers are stable from here on: d->rules is never modified again
      kind_index& ix = d->kinds[index_of(r.kind)];
      ix.present = true;
      const selector_info sel = classify(r.kind, r.selector);
      switch (sel.how) {
        case selector_info::form::any:
          ix.any.push_back(&r);
          break;
        case selector_info::form::exact:
          ix.exact[sel.key].push_back(&r);
          break;
        case selector_info::form::domain:
          ix.domain[sel.key].push_back(&r);
          break;
        case selector_info::form::net: {
          auto level = std::find_if(ix.nets.begin(), ix.nets.end(), [&](const net_level& l) {
            return l.v6 == sel.net.net.v6 && l.prefix == sel.net.prefix;
          });
          if (level == ix.nets.end()) {
            ix.nets.push_back({sel.net.net.v6, sel.net.prefix, {}});
            level = std::prev(ix.nets.end());
          }
          level->nets[sel.net.net.bytes].push_back(&r);
          break;
        }
      }
    }
    for (kind_index& ix : d->kinds) {
      std::sort(ix.nets.begin(), ix.nets.end(),
                [](const net_level& a, const net_level& b) { return a.prefix > b.prefix; });
    }
    result.rules.emplace();
    result.rules->data_ = std::move(d);
    return std::move(result);
  }
};

limits_parse_result parse_limits(std::string_view text, const std::string& file_name) {
  limits_parser p;
  p.file = file_name;
  p.parse_text(text);
  return p.finish();
}

limits_parse_result parse_limits_file(const std::string& path) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  std::string text;
  if (f) {
    char buf[65536];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f.get())) > 0) text.append(buf, n);
  }
  if (!f || std::ferror(f.get())) {  // errno still holds why fopen or fread failed
    limits_parse_result result;
    result.errors.push_back({path, 0, std::string("cannot read the limits file: ") + std::strerror(errno)});
    return result;
  }
  return parse_limits(text, path);
}

}  // namespace rg
