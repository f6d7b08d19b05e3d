// Unit tests for common/rules: the limits file syntax (good and bad lines, errors with line numbers,
// warnings) and the lookup precedence. Counting and actions are the engine's tests.
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>
#include <thread>

#include "rules.hpp"

using namespace rg;

namespace {

rule_set parse_ok(const std::string& text) {
  auto r = parse_limits(text, "limits.conf");
  for (const auto& e : r.errors) UNSCOPED_INFO(e.to_string());
  REQUIRE(r.errors.empty());
  REQUIRE(r.rules);
  return *r.rules;
}

// The line numbers of the rules matched, in the order returned; empty when nothing matched.
std::vector<unsigned> lines(const std::vector<const rule*>* m) {
  std::vector<unsigned> out;
  if (m != nullptr) {
    for (const rule* r : *m) out.push_back(r->line);
  }
  return out;
}

std::vector<unsigned> lines_of(const rule_set& rs, key_kind k, std::string_view value) {
  return lines(rs.match(k, value));
}

std::vector<unsigned> lines_of_ip(const rule_set& rs, const char* text) {
  auto a = parse_ip(text);
  REQUIRE(a);
  return lines(rs.match_address(*a));
}

using L = std::vector<unsigned>;

}  // namespace

TEST_CASE("names round-trip", "[rules]") {
  for (auto k :
       {key_kind::sasl_username, key_kind::client_address, key_kind::sender, key_kind::sender_domain,
        key_kind::local_user}) {
    CHECK(key_kind_from_string(to_string(k)) == k);
  }
  CHECK(key_kind_from_string("SASL_Username") == key_kind::sasl_username);
  CHECK_FALSE(key_kind_from_string("recipient"));
  CHECK_FALSE(key_kind_from_string(""));

  for (auto u : {unit::messages, unit::recipients}) CHECK(unit_from_string(to_string(u)) == u);
  CHECK(unit_from_string("rcpt") == unit::recipients);
  CHECK(unit_from_string("MSG") == unit::messages);
  CHECK_FALSE(unit_from_string("bytes"));

  for (auto a : {action::none, action::warn, action::hold, action::defer, action::reject}) {
    CHECK(action_from_string(to_string(a)) == a);
  }
  CHECK(action_from_string("DEFER") == action::defer);
  CHECK_FALSE(action_from_string("discard"));

  CHECK(limits_error{"a.conf", 7, "oops"}.to_string() == "a.conf:7: oops");
  CHECK(limits_error{"a.conf", 0, "oops"}.to_string() == "a.conf: oops");
}

TEST_CASE("a full line is parsed into a rule", "[rules]") {
  auto rs = parse_ok(
      "SASL_Username  Alice@Example.COM\t100/1h rcpt:500/1d msg:10/30s  DEFER  Slow  down,\tplease #1\n");
  REQUIRE(rs.rules().size() == 1);
  const rule& r = rs.rules()[0];
  CHECK(r.kind == key_kind::sasl_username);
  CHECK(r.selector == "alice@example.com");
  CHECK(r.act == action::defer);
  CHECK(r.text == "Slow down, please #1");
  CHECK(r.file == "limits.conf");
  CHECK(r.line == 1);
  CHECK(r.where() == "limits.conf:1");
  REQUIRE(r.limits.size() == 3);
  CHECK(r.limits[0].what == unit::messages);
  CHECK(r.limits[0].count == 100);
  CHECK(r.limits[0].seconds == 3600);
  CHECK(r.limits[1].what == unit::recipients);
  CHECK(r.limits[1].count == 500);
  CHECK(r.limits[1].seconds == 86400);
  CHECK(r.limits[2].what == unit::messages);
  CHECK(r.limits[2].seconds == 30);
  CHECK_FALSE(rs.empty());
  CHECK(rs.has_kind(key_kind::sasl_username));
  CHECK_FALSE(rs.has_kind(key_kind::sender));
}

TEST_CASE("every window unit and the limit bounds", "[rules]") {
  struct row {
    const char* limit;
    unit what;
    std::uint64_t count;
    std::uint32_t seconds;
  };
  const row r = GENERATE(values<row>({
      {"10/30s", unit::messages, 10, 30},
      {"10/1s", unit::messages, 10, 1},
      {"10/10m", unit::messages, 10, 600},
      {"10/m", unit::messages, 10, 60},
      {"10/1h", unit::messages, 10, 3600},
      {"10/h", unit::messages, 10, 3600},
      {"10/24h", unit::messages, 10, 86400},
      {"10/1d", unit::messages, 10, 86400},
      {"10/30d", unit::messages, 10, 30 * 86400},
      {"10/720h", unit::messages, 10, 30 * 86400},
      {"10/2592000s", unit::messages, 10, 2592000},
      {"0/1h", unit::messages, 0, 3600},
      {"1000000000000/1d", unit::messages, 1000000000000, 86400},
      {"msg:5/5m", unit::messages, 5, 300},
      {"rcpt:5/5m", unit::recipients, 5, 300},
      {"RCPT:5/5M", unit::recipients, 5, 300},
  }));
  INFO(r.limit);
  auto rs = parse_ok(std::string("sender_domain * ") + r.limit + " warn\n");
  REQUIRE(rs.rules().size() == 1);
  REQUIRE(rs.rules()[0].limits.size() == 1);
  const auto& l = rs.rules()[0].limits[0];
  CHECK(l.what == r.what);
  CHECK(l.count == r.count);
  CHECK(l.seconds == r.seconds);
}

TEST_CASE("bad lines report clear errors", "[rules]") {
  struct row {
    const char* line;
    const char* error;
  };
  const row r = GENERATE(values<row>({
      {"sasl_username *", "expected \"KIND SELECTOR LIMIT... ACTION [TEXT]\""},
      {"sasl_username", "expected \"KIND SELECTOR"},
      {"recipient * 10/1h defer", "unknown key kind \"recipient\""},
      {"local_user www-data@example.com 10/1h hold", "bad local_user selector \"www-data@example.com\": expected a login name or a numeric uid"},
      {"local_user @example.com 10/1h hold", "bad local_user selector"},
      {"sasl_username * 30/1x defer", "bad limit \"30/1x\": window unit must be s, m, h or d"},
      {"sasl_username * 30/1hh defer", "bad limit \"30/1hh\": window unit must be s, m, h or d"},
      {"sasl_username * 30/1.5h defer", "window unit must be s, m, h or d"},
      {"sasl_username * 30/60 defer", "window needs a unit"},
      {"sasl_username * 30/ defer", "missing window"},
      {"sasl_username * /1h defer", "missing count"},
      {"sasl_username * 30 defer", "expected COUNT/WINDOW"},
      {"sasl_username * -1/1h defer", "bad limit \"-1/1h\""},
      {"sasl_username * 1e3/1h defer", "count must be a whole number"},
      {"sasl_username * 1000000000001/1h defer", "count must be at most 1000000000000"},
      {"sasl_username * 99999999999999999999999/1h defer", "count must be at most"},
      {"sasl_username * 10/0s defer", "window must be between 1s and 30d"},
      {"sasl_username * 10/31d defer", "window must be between 1s and 30d"},
      {"sasl_username * 10/2592001s defer", "window must be between 1s and 30d"},
      {"sasl_username * 10/99999999999999999999h defer", "window must be between 1s and 30d"},
      {"sasl_username * bytes:10/1h defer", "unknown prefix \"bytes\" (expected msg:, rcpt:, burst:"},
      {"sasl_username * rcpt:msg:10/1h defer", "the unit (\"msg:\" or \"rcpt:\") is given twice"},
      {"sasl_username * burst:5:50/1h hold", "burst factor must be 1x to 1000x"},
      {"sasl_username * burst:0.5x:50/1h hold", "burst factor must be 1x to 1000x"},
      {"sasl_username * burst:1001x:50/1h hold", "burst factor must be 1x to 1000x"},
      {"sasl_username * burst:2.555x:50/1h hold", "at most two decimals"},
      {"sasl_username * burst:5x/1h hold", "expected burst:FACTORx:FLOOR/WINDOW"},
      {"sasl_username * burst:5x:0/1h hold", "the burst floor must be at least 1"},
      {"sasl_username * burst:5x:rcpt:50/1h hold", "nothing may come between \"burst:\" and the count"},
      {"sasl_username * burst:5x:50/1h burst:3x:20/60m hold", "repeats the burst per 1h window"},
      {"sasl_username * client_ips:0/1h hold", "client_ips must allow at least 1"},
      {"sasl_username * rcpt:client_ips:5/1h hold", "client_ips counts distinct values: it takes no unit"},
      {"client_address * client_ips:5/1h hold", "a client_address key has exactly one"},
      {"sender * rcpt_domains:5/1x hold", "window unit must be s, m, h or d"},
      {"sasl_username * 10/1h 20/60m defer", "repeats the messages per 1h window"},
      {"sasl_username * rcpt:10/1d rcpt:20/24h defer", "repeats the recipients per 1d window"},
      {"sasl_username * defer", "at least one limit"},
      {"sasl_username * 10/1h", "missing action"},
      {"sasl_username * 10/1h rcpt:5/1m", "missing action"},
      {"sasl_username * 10/1h defre", "unknown action \"defre\""},
      {"sasl_username * dfer Slow down", "expected a limit such as 100/1h"},
      {"sasl_username * 10/1h none", "\"none\" cannot follow limits"},
      {"sasl_username * none defer", "nothing may follow \"none\""},
      {"sasl_username * none # comment", "nothing may follow \"none\""},
      {"sasl_username @ 10/1h defer", "bad sasl_username selector \"@\": empty domain"},
      {"sasl_username @a@b 10/1h defer", "cannot contain '@'"},
      {"sender example.com 10/1h defer", "bad sender selector \"example.com\": use \"*\", \"@domain\" or"},
      {"sender alice 10/1h defer", "for a bare domain use sender_domain"},
      {"sender alice@ 10/1h defer", "empty domain"},
      {"sender *@example.com 10/1h defer", "write \"@domain\""},
      {"sender_domain *.example.com 10/1h defer", "write \".example.com\" to match subdomains"},
      {"sender_domain a@example.com 10/1h defer", "expected a domain, not an address"},
      {"sender_domain . 10/1h defer", "empty domain"},
      {"client_address 10.0.0.0/33 10/1h defer", "bad client_address selector \"10.0.0.0/33\""},
      {"client_address example.com 10/1h defer", "not an IP address or network"},
      {"client_address ipv6:2001:db8::1 10/1h defer", "not an IP address"},
      {"client_address 10.0.0.0/8 none extra", "nothing may follow"},
      {"sasl_username * 10/1h defer caf\xc3\xa9", "printable ASCII"},
      {"sasl_username * 10/1h defer a\x01z", "printable ASCII"},
  }));
  INFO(r.line);
  auto result = parse_limits(std::string("# header\n\n") + r.line + "\n", "limits.conf");
  CHECK_FALSE(result.rules);
  REQUIRE(result.errors.size() >= 1);
  CHECK(result.errors[0].line == 3);
  CHECK(result.errors[0].file == "limits.conf");
  CHECK_THAT(result.errors[0].to_string(), Catch::Contains("limits.conf:3: ") && Catch::Contains(r.error));
}

TEST_CASE("burst and signal limits parse and print back as written", "[rules]") {
  auto result = parse_limits(
      "sasl_username * 60/1h burst:5x:50/1h rcpt:burst:2.5x:200/1d client_ips:10/1h rcpt_domains:40/1h hold\n"
      "sender * BURST:1.05X:3/10m hold\n",
      "limits.conf");
  REQUIRE(result.rules);
  const auto& rules = result.rules->rules();
  REQUIRE(rules.size() == 2);
  const auto& l = rules[0].limits;
  REQUIRE(l.size() == 5);
  CHECK(l[0].how == measure::count);
  CHECK(l[1].how == measure::burst);
  CHECK(l[1].factor_x100 == 500);
  CHECK(l[1].count == 50);
  CHECK(l[1].seconds == 3600);
  CHECK(l[2].what == unit::recipients);
  CHECK(l[2].factor() == 2.5);
  CHECK(l[3].how == measure::client_ips);
  CHECK(l[3].count == 10);
  CHECK(l[4].how == measure::rcpt_domains);
  std::vector<std::string> printed;
  for (const auto& x : l) printed.push_back(to_string(x));
  CHECK(printed == std::vector<std::string>{"60/1h", "burst:5x:50/1h", "rcpt:burst:2.5x:200/1d", "client_ips:10/1h",
                                            "rcpt_domains:40/1h"});
  CHECK(to_string(rules[1].limits[0]) == "burst:1.05x:3/10m");
  // A count and a burst limit on the same window are two limits, not a repeat.
  CHECK(result.errors.empty());
}

TEST_CASE("the documented error message is exact", "[rules]") {
  auto result = parse_limits("\n\n\n\n\n\nsasl_username * 30/1x defer\n", "limits.conf");
  REQUIRE(result.errors.size() == 1);
  CHECK(result.errors[0].to_string() ==
        "limits.conf:7: bad limit \"30/1x\": window unit must be s, m, h or d");
}

TEST_CASE("reply text length limit", "[rules]") {
  const std::string ok(200, 'x');
  CHECK(parse_ok("sasl_username * 1/1h reject " + ok + "\n").rules()[0].text == ok);
  auto result = parse_limits("sasl_username * 1/1h reject " + ok + "y\n", "l");
  REQUIRE(result.errors.size() == 1);
  CHECK_THAT(result.errors[0].message, Catch::Contains("201 characters"));
  // Collapsed spacing counts, not the spacing written.
  CHECK(parse_ok("sasl_username * 1/1h reject " + std::string(100, 'a') + "     " + std::string(99, 'b'))
            .rules()[0]
            .text.size() == 200);
}

TEST_CASE("all errors are collected - with their own line numbers", "[rules]") {
  const char* text =
      "sasl_username * 10/1h defer\n"       // 1 ok
      "bogus * 10/1h defer\n"               // 2
      "# comment\n"                         // 3
      "sender alice 10/1h defer\n"          // 4
      "sender_domain * 10/1q 5/0s defer\n"  // 5: two bad limits
      "client_address 1.2.3.4/8 10/1h\n"    // 6: bad because of its continuation
      "  10/1x warn\n"                      // 7
      "client_address nope 10/1x defer\n";  // 8: bad selector and bad limit
  auto result = parse_limits(text, "x.conf");
  CHECK_FALSE(result.rules);
  std::vector<unsigned> got;
  for (const auto& e : result.errors) got.push_back(e.line);
  CHECK(got == L{2, 4, 5, 5, 6, 8, 8});
  CHECK_THAT(result.errors[5].message, Catch::Contains("bad client_address selector \"nope\""));
  CHECK_THAT(result.errors[6].message, Catch::Contains("bad limit \"10/1x\""));
}

TEST_CASE("comments - blank lines and continuation lines", "[rules]") {
  const char* text =
      "# leading comment\n"
      "   # indented comment, not a continuation\n"
      "\n"
      "   \t  \n"
      "sasl_username  alice\n"  // 5: the rule starts here
      "    100/1h\n"
      "# a comment inside a continued rule\n"
      "\trcpt:1000/1d\n"
      "    defer  You sent too\n"
      "    much mail #2\r\n"
      "sender_domain example.com none\r\n"  // 11
      "sender_domain * 1/1h warn # this is reply text, not a comment\n";
  auto rs = parse_ok(text);
  REQUIRE(rs.rules().size() == 3);
  const rule& r = rs.rules()[0];
  CHECK(r.line == 5);
  CHECK(r.selector == "alice");
  REQUIRE(r.limits.size() == 2);
  CHECK(r.limits[1].what == unit::recipients);
  CHECK(r.act == action::defer);
  CHECK(r.text == "You sent too much mail #2");
  CHECK(rs.rules()[1].line == 11);
  CHECK(rs.rules()[1].act == action::none);
  CHECK(rs.rules()[1].limits.empty());
  CHECK(rs.rules()[2].text == "# this is reply text, not a comment");

  auto orphan = parse_limits("# x\n  sasl_username * 1/1h defer\n", "l");
  REQUIRE(orphan.errors.size() == 1);
  CHECK(orphan.errors[0].line == 2);
  CHECK_THAT(orphan.errors[0].message, Catch::Contains("continuation line"));
}

TEST_CASE("empty files and missing files", "[rules]") {
  auto rs = parse_ok("# nothing yet\n\n");
  CHECK(rs.empty());
  CHECK(rs.rules().empty());
  CHECK_FALSE(rs.has_kind(key_kind::sasl_username));
  CHECK(rs.match(key_kind::sasl_username, "alice") == nullptr);

  const rule_set unparsed;
  CHECK(unparsed.empty());
  CHECK(unparsed.match(key_kind::sender, "a@b") == nullptr);
  CHECK(unparsed.match_address(*parse_ip("1.2.3.4")) == nullptr);

  auto missing = parse_limits_file("/nonexistent/rateguard/limits.conf");
  CHECK_FALSE(missing.rules);
  REQUIRE(missing.errors.size() == 1);
  CHECK(missing.errors[0].line == 0);
  CHECK_THAT(missing.errors[0].to_string(),
             Catch::StartsWith("/nonexistent/rateguard/limits.conf: ") && Catch::Contains("No such file"));

  auto directory = parse_limits_file("/");
  REQUIRE(directory.errors.size() == 1);
  CHECK(directory.errors[0].line == 0);
  CHECK_THAT(directory.errors[0].message, Catch::Contains("directory"));
}

TEST_CASE("parse_limits_file reads a file", "[rules]") {
  char name[] = "/tmp/rateguard-limits-XXXXXX";
  const int fd = mkstemp(name);
  REQUIRE(fd >= 0);
  close(fd);
  {
    std::ofstream out(name);
    out << "sender * 10/1h defer\n";
  }
  auto result = parse_limits_file(name);
  std::remove(name);
  REQUIRE(result.rules);
  REQUIRE(result.rules->rules().size() == 1);
  CHECK(result.rules->rules()[0].file == name);
}

TEST_CASE("warnings: host bits - duplicates - redundant windows - exemption next to limits", "[rules]") {
  const char* text =
      "client_address 10.1.2.3/8 10/1h defer\n"           // 1: host bits
      "sender @example.com 10/1h defer\n"                 // 2
      "sender   @EXAMPLE.com  10/1h   defer\n"            // 3: duplicate of 2
      "sender @example.com 20/60m rcpt:5/1h defer\n"      // 4: same window and action as 2
      "sender @example.com 20/60m hold\n"                 // 5: fine, other action
      "sender @example.com rcpt:5/1h defer Other text\n"  // 6: redundant with 4's rcpt limit
      "sender_domain example.com none\n"                  // 7
      "sender_domain example.com 10/1h warn\n"            // 8: exempted and limited
      "sender_domain example.org 10/1h warn\n";           // 9: fine
  auto result = parse_limits(text, "w.conf");
  REQUIRE(result.errors.empty());
  REQUIRE(result.rules);
  CHECK(result.rules->rules().size() == 9);  // warnings never drop a rule
  std::vector<unsigned> got;
  for (const auto& w : result.warnings) got.push_back(w.line);
  REQUIRE(got == L{1, 3, 4, 6, 8});
  CHECK_THAT(result.warnings[0].to_string(), Catch::StartsWith("w.conf:1: ") &&
                                                 Catch::Contains("host bits") &&
                                                 Catch::Contains("10.0.0.0/8"));
  CHECK_THAT(result.warnings[1].message, Catch::Contains("duplicate of line 2"));
  CHECK_THAT(result.warnings[2].message, Catch::Contains("line 2"));
  CHECK_THAT(result.warnings[3].message, Catch::Contains("recipients per 1h") && Catch::Contains("line 4"));
  CHECK_THAT(result.warnings[4].message, Catch::Contains("line 7") && Catch::Contains("line 8"));
}

TEST_CASE("precedence: exact > @domain > * - all lines of the winner in file order", "[rules]") {
  auto rs = parse_ok(
      "sasl_username *                 100/1h defer\n"       // 1
      "sasl_username @example.com      50/1h  defer\n"       // 2
      "sasl_username alice@example.com 10/1h  defer\n"       // 3
      "sasl_username @example.com      rcpt:500/1d hold\n"   // 4
      "sasl_username alice@example.com 5/1m   warn\n"        // 5
      "sasl_username bob               none\n"               // 6
      "sasl_username Carol             1/1h   reject\n"      // 7
      "sasl_username *                 rcpt:1000/1d hold\n"  // 8
      "sasl_username x@y@example.com   1/1h   reject\n");    // 9
  CHECK(lines_of(rs, key_kind::sasl_username, "alice@example.com") == L{3, 5});
  CHECK(lines_of(rs, key_kind::sasl_username, "zed@example.com") == L{2, 4});
  CHECK(lines_of(rs, key_kind::sasl_username, "zed@example.org") == L{1, 8});
  CHECK(lines_of(rs, key_kind::sasl_username, "zed") == L{1, 8});
  CHECK(lines_of(rs, key_kind::sasl_username, "carol") == L{7});
  CHECK(lines_of(rs, key_kind::sasl_username, "x@y@example.com") == L{9});
  CHECK(lines_of(rs, key_kind::sasl_username, "w@y@example.com") == L{2, 4});  // last '@' decides the domain
  CHECK(lines_of(rs, key_kind::sasl_username, "alice@sub.example.com") == L{1, 8});  // no subdomain match

  // `none` overrides `*`: the exemption is the only line returned.
  const auto* bob = rs.match(key_kind::sasl_username, "bob");
  REQUIRE(bob != nullptr);
  REQUIRE(bob->size() == 1);
  CHECK((*bob)[0]->act == action::none);
  CHECK((*bob)[0]->limits.empty());

  // Other kinds are independent.
  CHECK(rs.match(key_kind::sender, "alice@example.com") == nullptr);
  CHECK_FALSE(rs.has_kind(key_kind::sender));
  CHECK_FALSE(rs.has_kind(key_kind::client_address));
}

TEST_CASE("sender selectors", "[rules]") {
  auto rs = parse_ok(
      "sender @example.com       10/1h defer\n"  // 1
      "sender news@example.com   none\n"         // 2
      "sender ceo@example.net    1/1h hold\n");  // 3
  CHECK(lines_of(rs, key_kind::sender, "a@example.com") == L{1});
  CHECK(lines_of(rs, key_kind::sender, "news@example.com") == L{2});
  CHECK(lines_of(rs, key_kind::sender, "ceo@example.net") == L{3});
  CHECK(lines_of(rs, key_kind::sender, "cfo@example.net").empty());  // no `*`: nothing matches
  CHECK(lines_of(rs, key_kind::sender, "example.com").empty());
  CHECK(rs.has_kind(key_kind::sender));
}

TEST_CASE("sender_domain: exact - longest .suffix - *", "[rules]") {
  auto rs = parse_ok(
      "sender_domain *                10/1h defer\n"   // 1
      "sender_domain .example.com     20/1h defer\n"   // 2
      "sender_domain .mx.example.com  30/1h defer\n"   // 3
      "sender_domain example.com      40/1h defer\n"   // 4
      "sender_domain a.mx.example.com none\n"          // 5
      "sender_domain .com             50/1h warn\n");  // 6
  CHECK(lines_of(rs, key_kind::sender_domain, "example.com") == L{4});
  CHECK(lines_of(rs, key_kind::sender_domain, "www.example.com") == L{2});
  CHECK(lines_of(rs, key_kind::sender_domain, "a.b.example.com") == L{2});
  CHECK(lines_of(rs, key_kind::sender_domain, "mx.example.com") ==
        L{2});  // .mx.example.com needs a label more
  CHECK(lines_of(rs, key_kind::sender_domain, "b.mx.example.com") == L{3});
  CHECK(lines_of(rs, key_kind::sender_domain, "x.b.mx.example.com") == L{3});
  CHECK(lines_of(rs, key_kind::sender_domain, "a.mx.example.com") == L{5});
  CHECK(lines_of(rs, key_kind::sender_domain, "other.com") == L{6});
  CHECK(lines_of(rs, key_kind::sender_domain, "com") == L{1});
  CHECK(lines_of(rs, key_kind::sender_domain, "example.org") == L{1});
  CHECK(lines_of(rs, key_kind::sender_domain, "badexample.com") == L{6});  // suffix means whole labels
}

TEST_CASE("client_address: longest prefix - families - mapped addresses", "[rules]") {
  auto rs = parse_ok(
      "client_address *                 100/1h defer\n"    // 1
      "client_address 10.0.0.0/8        50/1h  defer\n"    // 2
      "client_address 10.1.0.0/16       40/1h  defer\n"    // 3
      "client_address 10.1.2.3          none\n"            // 4
      "client_address 10.1.0.0/16       rcpt:9/1d hold\n"  // 5
      "client_address 2001:db8::/32     30/1h  defer\n"    // 6
      "client_address 2001:DB8:1:2::/64 20/1h  defer\n"    // 7
      "client_address ::/0              10/1h  warn\n"     // 8
      "client_address 10.1.0.0/016      5/1m   warn\n");   // 9: same network as line 3, other spelling
  CHECK(lines_of_ip(rs, "10.1.2.3") == L{4});
  CHECK(lines_of_ip(rs, "10.1.2.4") == L{3, 5, 9});
  CHECK(lines_of_ip(rs, "10.200.0.1") == L{2});
  CHECK(lines_of_ip(rs, "192.0.2.1") == L{1});
  CHECK(lines_of_ip(rs, "::ffff:10.1.2.3") == L{4});
  CHECK(lines_of_ip(rs, "::ffff:10.9.9.9") == L{2});
  CHECK(lines_of_ip(rs, "2001:db8:1:2:aaaa::1") == L{7});
  CHECK(lines_of_ip(rs, "2001:db8:1:2:ffff:ffff:ffff:ffff") == L{7});
  CHECK(lines_of_ip(rs, "2001:db8:1:3::1") == L{6});
  CHECK(lines_of_ip(rs, "2001:db9::1") == L{8});  // ::/0 is IPv6 only, and beats `*`
  CHECK(lines_of_ip(rs, "::a00:0") == L{8});      // 10.0.0.0 as IPv6 bits is not 10/8

  // match() with a client_address parses the text for the caller.
  CHECK(lines(rs.match(key_kind::client_address, "10.1.2.3")) == L{4});
  CHECK(rs.match(key_kind::client_address, "not-an-ip") == nullptr);
  CHECK(rs.has_kind(key_kind::client_address));

  auto v4_only = parse_ok("client_address 0.0.0.0/0 1/1h defer\n");
  CHECK(lines_of_ip(v4_only, "192.0.2.1") == L{1});
  CHECK(lines_of_ip(v4_only, "2001:db8::1").empty());
}

TEST_CASE("IPv6 clients of one /64 share a bucket and a rule", "[rules]") {
  auto rs = parse_ok("client_address 2001:db8:5:6::/64 10/1h defer\n");
  const char* hosts[] = {"2001:db8:5:6::1", "2001:db8:5:6:1234:5678:9abc:def0"};
  for (const char* h : hosts) {
    INFO(h);
    auto a = parse_ip(h);
    REQUIRE(a);
    CHECK(ip_bucket(*a, 64) == "2001:db8:5:6::/64");
    CHECK(lines(rs.match_address(*a)) == L{1});
  }
  CHECK(lines_of_ip(rs, "2001:db8:5:7::1").empty());
}

TEST_CASE("copies share rules safely and outlive the original", "[rules]") {
  std::optional<rule_set> copy;
  {
    auto rs = parse_ok("sasl_username alice 10/1h defer\nsasl_username * 1/1h defer\n");
    copy = rs;
    rule_set moved = std::move(rs);
    CHECK(lines_of(moved, key_kind::sasl_username, "alice") == L{1});
  }
  REQUIRE(copy);
  const auto* m = copy->match(key_kind::sasl_username, "alice");
  REQUIRE(m != nullptr);
  REQUIRE(m->size() == 1);
  CHECK((*m)[0] == &copy->rules()[0]);  // points into the rules this copy shows
  CHECK((*m)[0]->selector == "alice");

  // Read-only use from several threads at once (meaningful under the sanitizer build).
  std::vector<std::thread> threads;
  std::atomic<int> hits{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      const rule_set mine = *copy;
      for (int i = 0; i < 1000; ++i) {
        if (mine.match(key_kind::sasl_username, (i + t) % 2 ? "alice" : "bob") != nullptr) ++hits;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(hits == 4000);
}

TEST_CASE("a 50000 line file parses and matches", "[rules]") {
  std::string text = "sasl_username * 100/1h defer\nclient_address * 1000/1h defer\n";
  for (int i = 0; i < 20000; ++i) {
    text += "sasl_username user" + std::to_string(i) + "@example.com " + std::to_string(i) + "/1h defer\n";
  }
  for (int i = 0; i < 10000; ++i) {
    text += "sender_domain .d" + std::to_string(i) + ".example rcpt:" + std::to_string(i) + "/1d hold\n";
  }
  for (int i = 0; i < 10000; ++i) {
    text += "client_address 10." + std::to_string(i / 256) + "." + std::to_string(i % 256) + ".0/24 " +
            std::to_string(i) + "/10m warn\n";
  }
  for (int i = 0; i < 9998; ++i) {
    text += "client_address 2001:db8:" + std::to_string(i % 10) + ":" + std::to_string(i) + "::/64 " +
            std::to_string(i) + "/10m warn\n";
  }
  auto result = parse_limits(text, "big.conf");
  REQUIRE(result.errors.empty());
  CHECK(result.warnings.empty());
  REQUIRE(result.rules);
  const rule_set& rs = *result.rules;
  REQUIRE(rs.rules().size() == 50000);

  auto one = [](const std::vector<const rule*>* m) -> const rule* {
    return m != nullptr && m->size() == 1 ? (*m)[0] : nullptr;
  };
  const rule* r = one(rs.match(key_kind::sasl_username, "user12345@example.com"));
  REQUIRE(r != nullptr);
  CHECK(r->limits[0].count == 12345);
  r = one(rs.match(key_kind::sasl_username, "user20000@example.com"));
  REQUIRE(r != nullptr);
  CHECK(r->line == 1);

  r = one(rs.match(key_kind::sender_domain, "mail.d777.example"));
  REQUIRE(r != nullptr);
  CHECK(r->limits[0].count == 777);
  CHECK(rs.match(key_kind::sender_domain, "d777.example") == nullptr);

  r = one(rs.match_address(*parse_ip("10.20.30.40")));  // i = 20 * 256 + 30
  REQUIRE(r != nullptr);
  CHECK(r->limits[0].count == 20 * 256 + 30);
  r = one(rs.match_address(*parse_ip("10.200.0.1")));
  REQUIRE(r != nullptr);
  CHECK(r->line == 2);

  r = one(rs.match_address(*parse_ip("2001:db8:3:4563::99")));  // hex group "4563" is decimal 4563 as text
  REQUIRE(r != nullptr);
  CHECK(r->limits[0].count == 4563);
}

TEST_CASE("local_user selectors: a login name (or uid) beats *", "[rules]") {
  auto rs = parse_ok("local_user * 100/1h hold\nlocal_user WWW-Data 20/1h hold\nlocal_user 1001 5/1h hold\n");
  CHECK(lines_of(rs, key_kind::local_user, "www-data") == L{2});
  CHECK(lines_of(rs, key_kind::local_user, "1001") == L{3});
  CHECK(lines_of(rs, key_kind::local_user, "alice") == L{1});
  CHECK(lines_of(rs, key_kind::sasl_username, "www-data").empty());
}

TEST_CASE("novelty limits parse and print - they take no unit and need a key with more than one client",
          "[rules][novelty]") {
  auto parsed = parse_limits("sasl_username * new_domains:20/1h new_networks:3/1h hold\n", "l.conf");
  REQUIRE(parsed.rules);
  const auto& l = parsed.rules->rules()[0].limits;
  REQUIRE(l.size() == 2);
  CHECK(l[0].how == measure::new_domains);
  CHECK(l[0].count == 20);
  CHECK(to_string(l[0]) == "new_domains:20/1h");
  CHECK(to_string(l[1]) == "new_networks:3/1h");
  for (const auto& [line, why] : std::vector<std::pair<std::string, std::string>>{
           {"sasl_username * new_domains:0/1h hold", "new_domains must allow at least 1"},
           {"sasl_username * rcpt:new_domains:5/1h hold", "new_domains counts new values: it takes no unit"},
           {"client_address * new_networks:5/1h hold", "a client_address key has exactly one"},
           {"sender * new_stuff:5/1h hold", "unknown prefix"}}) {
    auto bad = parse_limits(line + "\n", "l.conf");
    INFO(line);
    REQUIRE_FALSE(bad.rules);
    CHECK(bad.errors.at(0).message.find(why) != std::string::npos);
  }
}
