// Unit tests for common/rules/net_addr: address and CIDR parsing, prefix matching, the IPv6 bucket text
// and the endpoint syntax (tables: text -> parts or error).
// Rules and the engine's use of buckets are tested elsewhere.
#include <catch2/catch.hpp>

#include <arpa/inet.h>

#include <cstdint>
#include <random>
#include <string>

#include "net_addr.hpp"

using namespace rg;

namespace {
ip_address ip(const char* text) {
  auto a = parse_ip(text);
  REQUIRE(a);
  return *a;
}
}  // namespace

TEST_CASE("parse_ip accepts IPv4 and IPv6", "[net_addr]") {
  auto v4 = ip("192.0.2.10");
  CHECK_FALSE(v4.v6);
  CHECK(v4.bits() == 32);
  CHECK(v4.bytes[0] == 192);
  CHECK(v4.bytes[3] == 10);
  CHECK(v4.bytes[4] == 0);

  auto v6 = ip("2001:DB8::1");
  CHECK(v6.v6);
  CHECK(v6.bits() == 128);
  CHECK(v6.bytes[0] == 0x20);
  CHECK(v6.bytes[1] == 0x01);
  CHECK(v6.bytes[15] == 1);

  CHECK(ip("::").v6);
  CHECK(ip("::1").bytes[15] == 1);
}

TEST_CASE("parse_ip turns IPv4-mapped IPv6 into IPv4", "[net_addr]") {
  for (const char* text : {"::ffff:192.0.2.10", "::FFFF:c000:20a"}) {
    INFO(text);
    auto a = ip(text);
    CHECK_FALSE(a.v6);
    CHECK(a.bytes == ip("192.0.2.10").bytes);
  }
  // IPv4-compatible (deprecated ::a.b.c.d) and other prefixes stay IPv6.
  CHECK(ip("::192.0.2.10").v6);
  CHECK(ip("64:ff9b::192.0.2.10").v6);
}

TEST_CASE("parse_ip rejects garbage", "[net_addr]") {
  const char* bad =
      GENERATE("", " ", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.4 ", " 1.2.3.4", "01.2.3.4", "1.2.3.4/32",
               "localhost", "ipv6:2001:db8::1", "ipv6:::1", "fe80::1%eth0", "2001:db8::1::2", "2001:db8:::1",
               "12345::", "[::1]", "::ffff:1.2.3", "0x7f.0.0.1", "2001:db8:0:0:0:0:0:0:1");
  INFO('"' << bad << '"');
  CHECK_FALSE(parse_ip(bad));
}

TEST_CASE("parse_ip takes IPv4 text exactly as inet_pton does", "[net_addr]") {
  // parse_ip reads dotted quads itself; glibc's inet_pton(AF_INET) is the reference, on edge cases and on strings of
  // digits and dots (with a few other bytes) drawn at random, at several seeds.
  const auto same = [](const std::string& text) {
    std::uint8_t want[4];
    const bool ok = inet_pton(AF_INET, text.c_str(), want) == 1;
    const auto got = parse_ip(text);
    INFO('"' << text << '"');
    REQUIRE(got.has_value() == ok);
    if (ok) CHECK(std::equal(want, want + 4, got->bytes.begin()));
  };
  for (const char* text : {"0.0.0.0", "255.255.255.255", "256.0.0.0", "1.2.3.04", "1.2.3.0", "00.1.2.3", "1.2.3.",
                           ".1.2.3", "1..2.3", "1.2.3.4.", "1.2.3.4.5", "1.2.3", "999.1.1.1", "1.2.3.2555", "1.2.3.-4",
                           "+1.2.3.4", "1.2.3.4a", "4294967296.0.0.1"})
    same(text);
  // Half of them shaped like quads (3 to 5 parts of 0 to 3 digits), so that many are valid; the rest any bytes of
  // the alphabet.
  const std::string alphabet = "0123456789....12a x";
  for (unsigned seed : {1u, 7u, 2026u}) {
    std::mt19937 rng(seed);
    int valid = 0;
    for (int i = 0; i < 50000; ++i) {
      std::string text;
      if (i % 2 == 0) {
        const auto parts = 3 + rng() % 3;
        for (std::size_t p = 0; p < parts; ++p) {
          if (p > 0) text += '.';
          for (auto d = rng() % 4; d > 0; --d) text += static_cast<char>('0' + rng() % (d == 3 ? 3 : 10));
        }
      } else {
        text.assign(rng() % 17, ' ');
        for (char& c : text) c = alphabet[rng() % alphabet.size()];
      }
      same(text);
      if (parse_ip(text)) ++valid;
    }
    CHECK(valid > 500);  // about 1 100 at these seeds
  }
}

TEST_CASE("parse_ip does not read past the view", "[net_addr]") {
  const std::string text = "10.0.0.1234";
  auto a = parse_ip(std::string_view(text).substr(0, 8));  // "10.0.0.1"
  REQUIRE(a);
  CHECK(a->bytes[3] == 1);
  CHECK_FALSE(parse_ip(std::string(100, '1')));
}

TEST_CASE("parse_cidr: prefixes - bare addresses and host bits", "[net_addr]") {
  bool host_bits = true;
  auto net = parse_cidr("10.0.0.0/8", &host_bits);
  REQUIRE(net);
  CHECK(net->prefix == 8);
  CHECK_FALSE(host_bits);

  net = parse_cidr("10.1.2.3/8", &host_bits);
  REQUIRE(net);
  CHECK(host_bits);
  CHECK(net->net.bytes == ip("10.0.0.0").bytes);

  net = parse_cidr("192.0.2.7", &host_bits);
  REQUIRE(net);
  CHECK(net->prefix == 32);
  CHECK_FALSE(host_bits);

  net = parse_cidr("2001:db8::1", &host_bits);
  REQUIRE(net);
  CHECK(net->prefix == 128);

  net = parse_cidr("2001:db8:abcd::/36", &host_bits);
  REQUIRE(net);
  CHECK(host_bits);
  CHECK(net->net.bytes == ip("2001:db8:a000::").bytes);

  net = parse_cidr("0.0.0.0/0", &host_bits);
  REQUIRE(net);
  CHECK(net->prefix == 0);
  net = parse_cidr("1.2.3.4/0", &host_bits);
  REQUIRE(net);
  CHECK(host_bits);
  CHECK(net->net.bytes == ip("0.0.0.0").bytes);

  CHECK(parse_cidr("::ffff:10.0.0.0/8"));  // mapped address: prefix counts in IPv4 bits
  CHECK(parse_cidr("2001:db8::/128"));
  CHECK(parse_cidr("10.0.0.0/32"));
  CHECK(parse_cidr("10.0.0.0/8", nullptr));
}

TEST_CASE("parse_cidr rejects bad prefixes", "[net_addr]") {
  const char* bad = GENERATE("10.0.0.0/33", "2001:db8::/129", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/8a",
                             "10.0.0.0/ 8", "10.0.0.0/0008", "/8", "10.0.0/8", "10.0.0.0/8/8", "*", "");
  INFO('"' << bad << '"');
  CHECK_FALSE(parse_cidr(bad));
}

TEST_CASE("cidr::contains", "[net_addr]") {
  auto net = *parse_cidr("192.0.2.0/24");
  CHECK(net.contains(ip("192.0.2.0")));
  CHECK(net.contains(ip("192.0.2.255")));
  CHECK_FALSE(net.contains(ip("192.0.3.0")));
  CHECK_FALSE(net.contains(ip("192.0.1.255")));

  auto odd = *parse_cidr("10.64.0.0/10");
  CHECK(odd.contains(ip("10.127.255.255")));
  CHECK_FALSE(odd.contains(ip("10.128.0.0")));

  auto v6 = *parse_cidr("2001:db8::/32");
  CHECK(v6.contains(ip("2001:db8:ffff::1")));
  CHECK_FALSE(v6.contains(ip("2001:db9::1")));

  // Families never match each other, not even the all-zero networks.
  CHECK(parse_cidr("0.0.0.0/0")->contains(ip("1.2.3.4")));
  CHECK_FALSE(parse_cidr("0.0.0.0/0")->contains(ip("::1")));
  CHECK_FALSE(parse_cidr("::/0")->contains(ip("1.2.3.4")));
  CHECK(parse_cidr("::/0")->contains(ip("::1")));
  CHECK(parse_cidr("10.0.0.0/8")->contains(ip("::ffff:10.9.8.7")));

  auto host = *parse_cidr("2001:db8::5");
  CHECK(host.contains(ip("2001:db8::5")));
  CHECK_FALSE(host.contains(ip("2001:db8::4")));
}

TEST_CASE("ip_bucket", "[net_addr]") {
  CHECK(ip_bucket(ip("192.0.2.10"), 64) == "192.0.2.10");
  CHECK(ip_bucket(ip("::ffff:192.0.2.10"), 64) == "192.0.2.10");
  CHECK(ip_bucket(ip("2001:0db8:0001:0002:aaaa:bbbb:cccc:dddd"), 64) == "2001:db8:1:2::/64");
  CHECK(ip_bucket(ip("2001:db8:1:2::1"), 64) == ip_bucket(ip("2001:db8:1:2:ffff::9"), 64));
  CHECK(ip_bucket(ip("2001:db8:1:2::1"), 64) != ip_bucket(ip("2001:db8:1:3::1"), 64));
  CHECK(ip_bucket(ip("2001:db8:1:2:3:4:5:6"), 48) == "2001:db8:1::/48");
  CHECK(ip_bucket(ip("2001:db8:1:2:3:4:5:6"), 56) == "2001:db8:1::/56");
  CHECK(ip_bucket(ip("2001:db8:1:2ff:3:4:5:6"), 56) == "2001:db8:1:200::/56");
  CHECK(ip_bucket(ip("2001:DB8::1"), 128) == "2001:db8::1");
  CHECK(ip_bucket(ip("2001:db8::1"), 0) == "::/0");
}

namespace {
// One row: the text, then what parse_endpoint makes of it ("unix PATH", "inet HOST PORT") or "error: WHY".
struct endpoint_case {
  const char* text;
  const char* expected;
};

std::string describe(std::string_view text, const endpoint_syntax& syntax) {
  std::string why;
  const auto e = parse_endpoint(text, syntax, &why);
  if (!e) return "error: " + why;
  if (e->is_unix) return "unix " + e->path;
  return "inet " + e->host + " " + std::to_string(e->port);
}

void check_table(const endpoint_syntax& syntax, std::initializer_list<endpoint_case> table) {
  for (const auto& row : table) {
    INFO('"' << row.text << '"');
    CHECK(describe(row.text, syntax) == row.expected);
  }
}

const std::string long_path = "/" + std::string(106, 'p');  // 107 bytes: sun_path (108) holds it with its NUL
}  // namespace

TEST_CASE("parse_endpoint: the listen syntax (inet: or unix: first, port required, port 0 allowed)",
          "[net_addr]") {
  const endpoint_syntax listen{.scheme_required = true, .default_port = 0, .port_zero_ok = true};
  check_table(listen, {
                          {"inet:127.0.0.1:10033", "inet 127.0.0.1 10033"},
                          {"inet:[::1]:10033", "inet ::1 10033"},
                          {"inet:[2001:db8::1]:25", "inet 2001:db8::1 25"},
                          {"inet:localhost:10033", "inet localhost 10033"},  // resolving: the caller's job
                          {"inet:127.0.0.1:0", "inet 127.0.0.1 0"},
                          {"inet:127.0.0.1:65535", "inet 127.0.0.1 65535"},
                          {"inet:127.0.0.1:010033", "inet 127.0.0.1 10033"},
                          {"unix:/run/rateguard/policy", "unix /run/rateguard/policy"},
                          {"unix:/x", "unix /x"},
                          {"127.0.0.1:10033", "error: expected inet: or unix:"},
                          {"/run/rateguard/policy", "error: expected inet: or unix:"},
                          {"", "error: expected inet: or unix:"},
                          {"tcp:127.0.0.1:10033", "error: expected inet: or unix:"},
                          {"inet:127.0.0.1", "error: missing :port"},
                          {"inet:127.0.0.1:", "error: bad port"},
                          {"inet:127.0.0.1:65536", "error: bad port"},
                          {"inet:127.0.0.1:-1", "error: bad port"},
                          {"inet:127.0.0.1:+25", "error: bad port"},
                          {"inet:127.0.0.1:25x", "error: bad port"},
                          {"inet:127.0.0.1: 25", "error: bad port"},
                          {"inet::10033", "error: empty host"},
                          {"inet:", "error: empty host"},
                          {"inet:[]:10033", "error: empty host"},
                          {"inet:::1:10033", "error: IPv6 addresses need brackets: [addr]:port"},
                          {"inet:[::1:10033", "error: missing ']'"},
                          {"inet:[::1]10033", "error: expected :port"},
                          {"inet:[::1]", "error: missing :port"},
                          {"unix:", "error: unix socket path must be absolute"},
                          {"unix:run/policy", "error: unix socket path must be absolute"},
                          {"unix:/", "error: unix socket path names no file"},
                      });
  CHECK(describe("unix:" + long_path, listen) == "unix " + long_path);
  CHECK(describe("unix:" + long_path + "p", listen) == "error: unix socket path too long");
}

TEST_CASE("parse_endpoint: the redis syntax (scheme optional, bare /path, default port, no port 0)",
          "[net_addr]") {
  const endpoint_syntax redis{.scheme_required = false, .default_port = 6379, .port_zero_ok = false};
  check_table(redis, {
                         {"127.0.0.1:6379", "inet 127.0.0.1 6379"},
                         {"127.0.0.1", "inet 127.0.0.1 6379"},
                         {"redis.example.com:6380", "inet redis.example.com 6380"},
                         {"[::1]:6380", "inet ::1 6380"},
                         {"[::1]", "inet ::1 6379"},
                         {"inet:127.0.0.1:6380", "inet 127.0.0.1 6380"},
                         {"/run/redis/redis.sock", "unix /run/redis/redis.sock"},
                         {"unix:/run/redis/redis.sock", "unix /run/redis/redis.sock"},
                         {"::1", "error: IPv6 addresses need brackets: [addr]:port"},
                         {"::1:6379", "error: IPv6 addresses need brackets: [addr]:port"},
                         {"127.0.0.1:0", "error: bad port"},
                         {"127.0.0.1:70000", "error: bad port"},
                         {":6379", "error: empty host"},
                         {"", "error: empty host"},
                         {"[::1", "error: missing ']'"},
                         {"[::1]x", "error: expected :port"},
                         {"unix:redis.sock", "error: unix socket path must be absolute"},
                         {"/", "error: unix socket path names no file"},
                     });
  CHECK(describe(long_path + "p", redis) == "error: unix socket path too long");
}

TEST_CASE("parse_endpoint does not read past the view", "[net_addr]") {
  const std::string text = "inet:127.0.0.1:100339";
  const endpoint_syntax listen{.scheme_required = true, .default_port = 0, .port_zero_ok = true};
  CHECK(describe(std::string_view(text).substr(0, text.size() - 1), listen) == "inet 127.0.0.1 10033");
}
