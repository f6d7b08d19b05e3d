// libFuzzer target for common/rules: the input is a limits file. Whatever it holds, every error and
// warning points at a line of the file; when it parses, every rule is within the documented bounds, the
// rules written back out parse to the same rules, and match()/match_address() agree with a plain scan of
// the rules by the README's precedence. Not a unit test: regressions go to tests/unit/test_rules.cpp.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "net_addr.hpp"
#include "rules.hpp"

namespace {

using rule_list = std::vector<const rg::rule*>;
constexpr rg::key_kind all_kinds[] = {rg::key_kind::sasl_username, rg::key_kind::client_address,
                                      rg::key_kind::sender, rg::key_kind::sender_domain};
const std::string file_name = "fuzz/limits.conf";

std::string lowered(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Lines as the parser counts them: a final line without '\n' counts, an empty tail does not.
unsigned count_lines(std::string_view text) {
  const auto n = static_cast<unsigned>(std::count(text.begin(), text.end(), '\n'));
  return n + (!text.empty() && text.back() != '\n' ? 1 : 0);
}

void check_diagnostics(const std::vector<rg::limits_error>& list, unsigned lines) {
  for (const rg::limits_error& e : list) {
    FUZZ_CHECK(e.file == file_name);
    FUZZ_CHECK(e.line >= 1 && e.line <= lines);
    FUZZ_CHECK(!e.message.empty() && e.message.find('\n') == std::string::npos);
    FUZZ_CHECK(e.to_string() == file_name + ":" + std::to_string(e.line) + ": " + e.message);
  }
}

void check_rule(const rg::rule& r, unsigned lines) {
  FUZZ_CHECK(r.file == file_name && r.line >= 1 && r.line <= lines);
  FUZZ_CHECK(r.where() == file_name + ":" + std::to_string(r.line));
  FUZZ_CHECK(!r.selector.empty() && r.selector == lowered(r.selector));
  FUZZ_CHECK(r.selector.find_first_of(" \t\n") == std::string::npos);
  FUZZ_CHECK((r.act == rg::action::none) == r.limits.empty());
  FUZZ_CHECK(r.act <= rg::action::reject);
  for (std::size_t i = 0; i < r.limits.size(); ++i) {
    const rg::window_limit& l = r.limits[i];
    FUZZ_CHECK(l.seconds >= 1 && l.seconds <= 30 * 86400);
    FUZZ_CHECK(l.count <= 1'000'000'000'000);
    for (std::size_t j = 0; j < i; ++j) {
      FUZZ_CHECK(r.limits[j].what != l.what || r.limits[j].seconds != l.seconds || r.limits[j].how != l.how);
    }
    FUZZ_CHECK((l.how == rg::measure::burst) == (l.factor_x100 != 0));
    FUZZ_CHECK(l.how != rg::measure::burst || (l.factor_x100 >= 100 && l.factor_x100 <= 100000 && l.count >= 1));
    FUZZ_CHECK(l.how == rg::measure::count || l.how == rg::measure::burst || (l.count >= 1 && l.what == rg::unit::messages));
    FUZZ_CHECK(l.how != rg::measure::client_ips || r.kind != rg::key_kind::client_address);
  }
  FUZZ_CHECK(r.text.size() <= 200);
  FUZZ_CHECK(r.act != rg::action::none || r.text.empty());
  for (char c : r.text) FUZZ_CHECK(c >= 0x20 && c < 0x7f);
  FUZZ_CHECK(r.text.empty() || (r.text.front() != ' ' && r.text.back() != ' '));
  FUZZ_CHECK(r.text.find("  ") == std::string::npos);
}

// The rules as a limits file again: one line each, each limit as rg::to_string(window_limit) prints it.
std::string write_rules(const std::vector<rg::rule>& rules) {
  std::string out;
  for (const rg::rule& r : rules) {
    out += std::string(rg::to_string(r.kind)) + " " + r.selector;
    if (r.act == rg::action::none) {
      out += " none\n";
      continue;
    }
    for (const rg::window_limit& l : r.limits) out += " " + rg::to_string(l);
    out += " " + std::string(rg::to_string(r.act));
    if (!r.text.empty()) out += " " + r.text;
    out += "\n";
  }
  return out;
}

bool same_rule(const rg::rule& a, const rg::rule& b) {
  if (a.kind != b.kind || a.selector != b.selector || a.act != b.act || a.text != b.text) return false;
  return std::equal(a.limits.begin(), a.limits.end(), b.limits.begin(), b.limits.end(),
                    [](const rg::window_limit& x, const rg::window_limit& y) {
                      return x.what == y.what && x.count == y.count && x.seconds == y.seconds && x.how == y.how &&
                             x.factor_x100 == y.factor_x100;
                    });
}

// The README's precedence as a plain scan over all rules. Returns the winning lines in file order.
rule_list reference_match(const std::vector<rg::rule>& rules, rg::key_kind kind, std::string_view value) {
  rule_list exact, domain, any;
  std::size_t best_domain = 0;  // sender_domain: length of the longest matching ".suffix"
  const std::size_t at = value.rfind('@');
  for (const rg::rule& r : rules) {
    if (r.kind != kind) continue;
    const std::string& s = r.selector;
    if (s == "*") {
      any.push_back(&r);
    } else if (kind == rg::key_kind::sender_domain && s.front() == '.') {
      if (value.size() > s.size() && value.ends_with(s) && s.size() >= best_domain) {
        if (s.size() > best_domain) domain.clear();
        best_domain = s.size();
        domain.push_back(&r);
      }
    } else if (kind != rg::key_kind::sender_domain && s.front() == '@') {
      if (at != std::string_view::npos && value.substr(at + 1) == std::string_view(s).substr(1)) {
        domain.push_back(&r);
      }
    } else if (s == value) {
      exact.push_back(&r);
    }
  }
  return !exact.empty() ? exact : !domain.empty() ? domain : any;
}

rule_list reference_match_address(const std::vector<rg::rule>& rules, const rg::ip_address& a) {
  rule_list best, any;
  unsigned best_prefix = 0;
  for (const rg::rule& r : rules) {
    if (r.kind != rg::key_kind::client_address) continue;
    if (r.selector == "*") {
      any.push_back(&r);
      continue;
    }
    const auto net = rg::parse_cidr(r.selector);
    FUZZ_CHECK(net.has_value());  // the file parsed, so every selector is a network
    if (!net->contains(a)) continue;
    if (best.empty() || net->prefix > best_prefix) {
      best.clear();
      best_prefix = net->prefix;
    }
    if (net->prefix == best_prefix) best.push_back(&r);
  }
  return !best.empty() ? best : any;
}

rule_list as_list(const rule_list* m) { return m ? *m : rule_list{}; }

void check_match(const rg::rule_set& rs, rg::key_kind kind, const std::string& value) {
  const std::vector<rg::rule>& rules = rs.rules();
  if (value.empty()) {
    FUZZ_CHECK(rs.match(kind, value) == nullptr);
    return;
  }
  const rule_list got = as_list(rs.match(kind, value));
  if (kind != rg::key_kind::client_address) {
    FUZZ_CHECK(got == reference_match(rules, kind, value));
    return;
  }
  const auto a = rg::parse_ip(value);
  if (!a) {
    FUZZ_CHECK(got.empty());
    return;
  }
  FUZZ_CHECK(got == as_list(rs.match_address(*a)));
  FUZZ_CHECK(got == reference_match_address(rules, *a));
}

// Values worth looking up: fixed ones, and for each rule its selector and values just inside and just
// outside it. Bounded, so a file of many rules stays fast.
std::vector<std::string> probe_values(const std::vector<rg::rule>& rules) {
  std::vector<std::string> v = {"alice",
                                "alice@example.com",
                                "example.com",
                                "a.example.com",
                                "*",
                                "@",
                                ".",
                                "x@",
                                "127.0.0.1",
                                "10.1.2.3",
                                "::1",
                                "2001:db8::1",
                                "::ffff:1.2.3.4",
                                "0.0.0.0",
                                "::",
                                "1.2.3.4/8"};
  for (std::size_t i = 0; i < rules.size() && i < 24; ++i) {
    const std::string& s = rules[i].selector;
    v.push_back(s);
    v.push_back("u@" + s);
    v.push_back("a" + s);
    v.push_back("a." + s);
    v.push_back(s.substr(1));
    v.push_back(s + "x");
    if (const auto net = rg::parse_cidr(s)) {
      rg::ip_address inside = net->net;
      v.push_back(rg::ip_bucket(inside, 128));
      inside.bytes[net->net.bits() / 8 - 1] ^= 1;  // the last address bit: inside unless the prefix is full
      v.push_back(rg::ip_bucket(inside, 128));
      if (net->prefix > 0) {
        rg::ip_address outside = net->net;
        const unsigned bit = net->prefix - 1;  // the last network bit
        outside.bytes[bit / 8] = static_cast<std::uint8_t>(outside.bytes[bit / 8] ^ (0x80u >> (bit % 8)));
        v.push_back(rg::ip_bucket(outside, 128));
      }
    }
  }
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(bytes), size);
  const unsigned lines = count_lines(text);

  rg::limits_parse_result result = rg::parse_limits(text, file_name);
  check_diagnostics(result.errors, lines);
  check_diagnostics(result.warnings, lines);
  FUZZ_CHECK(result.rules.has_value() == result.errors.empty());
  if (!result.rules) return 0;

  // A copy must stand on its own once the original is gone (the daemon swaps rule sets on reload).
  const rg::rule_set rs = *result.rules;
  result.rules.reset();

  const std::vector<rg::rule>& rules = rs.rules();
  FUZZ_CHECK(rs.empty() == rules.empty());
  for (std::size_t i = 0; i < rules.size(); ++i) {
    check_rule(rules[i], lines);
    FUZZ_CHECK(i == 0 || rules[i - 1].line < rules[i].line);  // one rule per line, in file order
  }
  for (rg::key_kind k : all_kinds) {
    const bool present =
        std::any_of(rules.begin(), rules.end(), [k](const rg::rule& r) { return r.kind == k; });
    FUZZ_CHECK(rs.has_kind(k) == present);
  }

  // Written back out, the rules parse to the same rules.
  const std::string again_text = write_rules(rules);
  const rg::limits_parse_result again = rg::parse_limits(again_text, file_name);
  FUZZ_CHECK(again.errors.empty() && again.rules.has_value());
  FUZZ_CHECK(again.rules->rules().size() == rules.size());
  for (std::size_t i = 0; i < rules.size(); ++i) FUZZ_CHECK(same_rule(rules[i], again.rules->rules()[i]));

  for (const std::string& value : probe_values(rules)) {
    for (rg::key_kind k : all_kinds) check_match(rs, k, value);
  }
  return 0;
}
