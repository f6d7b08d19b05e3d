// IP address and CIDR parsing on top of POSIX inet_pton/inet_ntop, prefix matching, the IPv6 bucket
// text, and the endpoint syntax. Nothing knows about rules or requests; nothing resolves names.
#include "net_addr.hpp"

#include <arpa/inet.h>
#include <sys/un.h>

#include <algorithm>
#include <cstring>

#include "values.hpp"

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

// A dotted quad as glibc's inet_pton(AF_INET) takes it: four decimal parts of 0-255 without leading zeros, and
// nothing else. Here rather than inet_pton: the hot path parses one per request.
bool parse_dotted_quad(std::string_view text, std::uint8_t* out) {
  unsigned parts = 0, value = 0;
  bool digit = false;  // the part has a digit
  for (const char c : text) {
    if (c >= '0' && c <= '9') {
      if (digit && value == 0) return false;  // "01"
      value = value * 10 + static_cast<unsigned>(c - '0');
      if (value > 255) return false;
      digit = true;
    } else if (c == '.' && digit && parts < 3) {
      out[parts++] = static_cast<std::uint8_t>(value);
      value = 0;
      digit = false;
    } else {
      return false;
    }
  }
  if (!digit || parts != 3) return false;
  out[3] = static_cast<std::uint8_t>(value);
  return true;
}

}  // namespace

std::optional<ip_address> parse_ip(std::string_view text) {
  ip_address a;
  if (text.find(':') == std::string_view::npos) {
    // Only the four-part dotted form (no "10.1", no octal), as glibc's inet_pton takes it.
    if (!parse_dotted_quad(text, a.bytes.data())) return std::nullopt;
    return a;
  }
  // inet_pton wants a terminated string; anything longer than the longest IPv6 text is garbage anyway.
  char buf[INET6_ADDRSTRLEN];
  if (text.size() >= sizeof buf) return std::nullopt;
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
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

ip_address ip_network(ip_address a, unsigned prefix) {
  clear_host_bits(a, std::min(prefix, a.bits()));
  return a;
}

std::optional<endpoint> parse_endpoint(std::string_view text, const endpoint_syntax& syntax,
                                       std::string* why) {
  const auto bad = [&](const char* reason) -> std::optional<endpoint> {
    if (why != nullptr) *why = reason;
    return std::nullopt;
  };
  endpoint e;
  const bool unix_scheme = text.starts_with("unix:");
  const bool inet_scheme = text.starts_with("inet:");
  if (unix_scheme || inet_scheme) {
    text.remove_prefix(5);
  } else if (syntax.scheme_required) {
    return bad("expected inet: or unix:");
  }
  if (unix_scheme || (!inet_scheme && text.starts_with('/'))) {
    e.is_unix = true;
    e.path = text;
    if (!e.path.starts_with('/')) return bad("unix socket path must be absolute");
    if (e.path.size() < 2) return bad("unix socket path names no file");
    // bind/connect would fail later, with a less clear error, on a path that does not fit sockaddr_un.
    if (e.path.size() >= sizeof(sockaddr_un::sun_path)) return bad("unix socket path too long");
    return e;
  }
  std::string_view rest;
  if (text.starts_with('[')) {
    const auto close = text.find(']');
    if (close == std::string_view::npos) return bad("missing ']'");
    e.host = text.substr(1, close - 1);
    rest = text.substr(close + 1);
  } else {
    const auto colon = text.find(':');
    if (colon != std::string_view::npos && text.find(':', colon + 1) != std::string_view::npos)
      return bad("IPv6 addresses need brackets: [addr]:port");
    e.host = text.substr(0, colon);
    if (colon != std::string_view::npos) rest = text.substr(colon);
  }
  if (e.host.empty()) return bad("empty host");
  if (rest.empty()) {
    if (syntax.default_port == 0) return bad("missing :port");
    e.port = syntax.default_port;
    return e;
  }
  if (rest.front() != ':') return bad("expected :port");
  const auto port = parse_number<std::uint16_t>(rest.substr(1));
  if (!port || (*port == 0 && !syntax.port_zero_ok)) return bad("bad port");
  e.port = *port;
  return e;
}

std::optional<endpoint> parse_sentinel(std::string_view text, std::string* why) {
  auto e = parse_endpoint(text, sentinel_syntax, why);
  if (e && e->is_unix) {
    if (why) *why = "a sentinel is reached over TCP: HOST:PORT";
    return std::nullopt;
  }
  return e;
}

}  // namespace rg
