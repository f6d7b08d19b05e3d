// IP address and CIDR parsing on top of POSIX inet_pton/inet_ntop, prefix matching, and the IPv6 bucket
// text. Nothing here allocates except ip_bucket's result; nothing knows about rules or requests.
#include "net_addr.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

namespace rg {
namespace {

// Clears every bit after the first `prefix` bits; returns true when any of them was set.
bool clear_host_bits(ip_address& a, unsigned prefix) {
  bool had = false;
  for (unsigned i = 0; i < a.bits() / 8; ++i) {
    const unsigned first = i * 8;  // index of the first bit of this byte
    std::uint8_t keep = 0xff;
    if (prefix <= first) {
      keep = 0;
    } else if (prefix < first + 8) {
      keep = static_cast<std::uint8_t>(0xff00u >> (prefix - first));
    }
    had = had || (a.bytes[i] & ~keep) != 0;
    a.bytes[i] = static_cast<std::uint8_t>(a.bytes[i] & keep);
  }
  return had;
}

}  // namespace

std::optional<ip_address> parse_ip(std::string_view text) {
  // inet_pton wants a terminated string; anything longer than the longest IPv6 text is garbage anyway.
  char buf[INET6_ADDRSTRLEN];
  if (text.empty() || text.size() >= sizeof buf) return std::nullopt;
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';

  ip_address a;
  if (text.find(':') == std::string_view::npos) {
    // glibc's inet_pton accepts only the four-part dotted form (no "10.1", no octal), which is what we want.
    if (inet_pton(AF_INET, buf, a.bytes.data()) != 1) return std::nullopt;
    return a;
  }
  // Zone ids ("fe80::1%eth0") and "ipv6:" prefixes fail here: neither is valid inet_pton input.
  if (inet_pton(AF_INET6, buf, a.bytes.data()) != 1) return std::nullopt;
  a.v6 = true;
  static constexpr std::uint8_t mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::equal(a.bytes.begin(), a.bytes.begin() + 12, mapped_prefix)) {
    // A dual-stack listener reports IPv4 clients this way; count and match them as the IPv4 they are.
    ip_address v4;
    std::copy(a.bytes.begin() + 12, a.bytes.end(), v4.bytes.begin());
    return v4;
  }
  return a;
}

std::optional<cidr> parse_cidr(std::string_view text, bool* host_bits_set) {
  if (host_bits_set != nullptr) *host_bits_set = false;
  const auto slash = text.find('/');
  auto addr = parse_ip(text.substr(0, slash));
  if (!addr) return std::nullopt;
  unsigned prefix = addr->bits();
  if (slash != std::string_view::npos) {
    const auto digits = text.substr(slash + 1);
    if (digits.empty() || digits.size() > 3) return std::nullopt;
    prefix = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') return std::nullopt;
      prefix = prefix * 10 + static_cast<unsigned>(c - '0');
    }
    if (prefix > addr->bits()) return std::nullopt;
  }
  const bool had = clear_host_bits(*addr, prefix);
  if (host_bits_set != nullptr) *host_bits_set = had;
  return cidr{*addr, prefix};
}

bool cidr::contains(const ip_address& a) const {
  if (a.v6 != net.v6) return false;
  ip_address masked = a;
  clear_host_bits(masked, prefix);
  return masked.bytes == net.bytes;
}

std::string ip_bucket(const ip_address& a, unsigned v6_prefix) {
  char buf[INET6_ADDRSTRLEN];
  if (!a.v6) {
    inet_ntop(AF_INET, a.bytes.data(), buf, sizeof buf);
    return buf;
  }
  const unsigned prefix = std::min(v6_prefix, 128u);
  ip_address masked = a;
  clear_host_bits(masked, prefix);
  inet_ntop(AF_INET6, masked.bytes.data(), buf, sizeof buf);
  std::string out = buf;
  if (prefix < 128) out += "/" + std::to_string(prefix);
  return out;
}

}  // namespace rg
