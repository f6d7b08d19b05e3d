// IP address parsing, CIDR matching and the bucket an address is counted in (IPv6 grouped by prefix).
// Standard library plus POSIX inet_pton only; nothing about rules or requests.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace rg {

struct ip_address {
  bool v6 = false;
  std::array<std::uint8_t, 16> bytes{};  // IPv4 uses the first 4 bytes
  unsigned bits() const { return v6 ? 128u : 32u; }
};

// Accepts dotted IPv4 and any textual IPv6. The "ipv6:" prefix of Postfix logs and zone ids ("%eth0") are
// rejected: Postfix sends bare addresses in client_address. IPv4-mapped IPv6 (::ffff:1.2.3.4) becomes IPv4.
std::optional<ip_address> parse_ip(std::string_view text);

struct cidr {
  ip_address net;   // host bits cleared
  unsigned prefix;  // 0..32 or 0..128
  bool contains(const ip_address& a) const;
};

// "10.0.0.0/8", "2001:db8::/32", or a bare address (full-length prefix). `host_bits_set` tells the caller
// the text had host bits set (10.1.2.3/8), which is worth a warning: the rule still matches 10.0.0.0/8.
std::optional<cidr> parse_cidr(std::string_view text, bool* host_bits_set = nullptr);

// The text a client address is counted under: IPv4 as is; IPv6 masked to `v6_prefix` bits and printed
// canonically with the prefix ("2001:db8:1:2::/64"), so one host hopping through its /64 is one client.
// A prefix of 128 (or more) prints the bare address.
std::string ip_bucket(const ip_address& a, unsigned v6_prefix);

}  // namespace rg
