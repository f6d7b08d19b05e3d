// IP address parsing, CIDR matching and the bucket an address is counted in (IPv6 grouped by prefix); the
// endpoint syntax of the settings (listen, redis). Standard library plus POSIX inet_pton only; nothing about
// rules or requests, no name resolution, no sockets.
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
// The network of an address: its first `prefix` bits kept, the rest cleared (a prefix past the length keeps all).
ip_address ip_network(ip_address a, unsigned prefix);

// A socket address as the settings write it: "inet:HOST:PORT", "inet:[V6]:PORT", "unix:/path", and where
// the syntax allows it "HOST", "HOST:PORT", "[V6]", "[V6]:PORT", "/path". The one parser of listen (the
// settings' check, the daemon's listeners), redis (the Redis store) and the test clients' endpoints.
struct endpoint {
  bool is_unix = false;
  std::string path;        // unix: absolute, short enough for sockaddr_un
  std::string host;        // inet: as written, an IPv6 address without its brackets; a name is not resolved
  std::uint16_t port = 0;  // inet
};

struct endpoint_syntax {
  // true: "inet:" or "unix:" must come first (listen, like Postfix's master.cf); false: either is optional
  // and a bare "/path" is a unix socket (redis, like redis-cli).
  bool scheme_required = true;
  // The port of a host written without one; 0: the port must be written.
  std::uint16_t default_port = 0;
  // Port 0 lets the kernel choose, which makes sense for a listener only.
  bool port_zero_ok = false;
};

// nullopt when malformed, with `why` set to a short phrase ("IPv6 addresses need brackets: [addr]:port").
// An IPv6 host needs brackets (a bare "::1:10033" is ambiguous); the host must not be empty.
std::optional<endpoint> parse_endpoint(std::string_view text, const endpoint_syntax& syntax,
                                       std::string* why = nullptr);

// A Redis Sentinel (setting sentinels): "HOST[:PORT]" or "[V6][:PORT]", Sentinel's own port when none is
// written; a sentinel is reached over TCP only. Checked by the settings file, used by the Redis store.
inline constexpr endpoint_syntax sentinel_syntax{.scheme_required = false, .default_port = 26379, .port_zero_ok = false};
std::optional<endpoint> parse_sentinel(std::string_view text, std::string* why = nullptr);

}  // namespace rg
