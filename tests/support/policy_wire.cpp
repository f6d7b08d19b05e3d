// Postfix 3.7 policy requests and replies as a test client writes and reads them (see policy_wire.hpp).
#include "policy_wire.hpp"

#include "net_addr.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <cctype>
#include <stdexcept>

namespace rg::test {

namespace {
void attr(std::string& out, std::string_view name, std::string_view value) {
  out += name;
  out += '=';
  out += value;
  out += '\n';
}
void attr(std::string& out, std::string_view name, std::uint64_t value) {
  out += name;
  out += '=';
  out += std::to_string(value);
  out += '\n';
}
}  // namespace

void append_request(std::string& out, const postfix_request& r) {
  attr(out, "request", "smtpd_access_policy");
  attr(out, "protocol_state", r.protocol_state);
  attr(out, "protocol_name", "ESMTP");
  attr(out, "client_address", r.client_address);
  attr(out, "client_name", r.client_name);
  attr(out, "client_port", r.client_port);
  attr(out, "reverse_client_name", r.client_name);
  attr(out, "server_address", "127.0.0.1");
  attr(out, "server_port", r.server_port);
  attr(out, "helo_name", r.helo_name);
  attr(out, "sender", r.sender);
  attr(out, "recipient", r.recipient);
  attr(out, "recipient_count", r.recipient_count);
  attr(out, "queue_id", r.queue_id);
  attr(out, "instance", r.instance);
  attr(out, "size", r.size);
  attr(out, "etrn_domain", "");
  attr(out, "stress", "");
  attr(out, "sasl_method", r.sasl_method);
  attr(out, "sasl_username", r.sasl_username);
  attr(out, "sasl_sender", "");
  attr(out, "ccert_subject", "");
  attr(out, "ccert_issuer", "");
  attr(out, "ccert_fingerprint", "");
  attr(out, "ccert_pubkey_fingerprint", "");
  attr(out, "encryption_protocol", "");
  attr(out, "encryption_cipher", "");
  attr(out, "encryption_keysize", 0);
  attr(out, "policy_context", r.policy_context);
  out += '\n';
}

std::string action_of(std::string_view reply) {
  if (!reply.starts_with("action=") || !reply.ends_with("\n\n")) return {};
  auto body = reply.substr(7, reply.size() - 9);
  if (body.empty() || body.find('\n') != std::string_view::npos) return {};
  std::string w(body.substr(0, body.find(' ')));
  for (auto& ch : w) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return w;
}

boost::asio::generic::stream_protocol::endpoint parse_endpoint(const std::string& spec) {
  namespace asio = boost::asio;
  // The daemon's listen syntax, less port 0 (nothing to connect to).
  constexpr endpoint_syntax connect_syntax{.scheme_required = true, .default_port = 0, .port_zero_ok = false};
  std::string why;
  const auto e = rg::parse_endpoint(spec, connect_syntax, &why);
  if (!e) throw std::invalid_argument("address must be inet:HOST:PORT or unix:/path: " + spec + ": " + why);
  if (e->is_unix) return asio::local::stream_protocol::endpoint(e->path);
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(e->host, ec);
  if (ec) throw std::invalid_argument("bad address " + spec);
  if (!addr.is_loopback()) throw std::invalid_argument("tests run on loopback only: " + spec);
  return asio::ip::tcp::endpoint(addr, e->port);
}

}  // namespace rg::test
