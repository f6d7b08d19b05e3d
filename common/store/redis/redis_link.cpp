// redis_link: connect (unix, or TCP with each resolved address in turn, then the TLS handshake) and the TLS
// client context. Every failure becomes one line for the store's log ("TLS handshake: certificate verify
// failed (unable to get local issuer certificate)"), so an operator sees which side to fix.
#include "redis_link.hpp"

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <stdexcept>
#include <tuple>

namespace rg {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;

std::shared_ptr<ssl::context> make_tls_context(const redis_tls_options& opts) {
  if (!opts.enabled) return nullptr;
  if (opts.ca_file.empty()) throw std::invalid_argument("redis_tls needs redis_tls_ca_file");
  if (opts.cert_file.empty() != opts.key_file.empty())
    throw std::invalid_argument("redis_tls_cert_file and redis_tls_key_file go together");
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                   ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  const auto use = [](std::string_view what, const std::string& file, auto&& load) {
    boost::system::error_code ec;
    load(ec);
    if (ec) throw std::invalid_argument(std::string(what) + " " + file + ": " + ec.message());
  };
  use("redis_tls_ca_file", opts.ca_file, [&](auto& ec) { ctx->load_verify_file(opts.ca_file, ec); });
  if (!opts.cert_file.empty()) {
    use("redis_tls_cert_file", opts.cert_file, [&](auto& ec) { ctx->use_certificate_chain_file(opts.cert_file, ec); });
    use("redis_tls_key_file", opts.key_file, [&](auto& ec) { ctx->use_private_key_file(opts.key_file, ssl::context::pem, ec); });
  }
  ctx->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
  return ctx;
}

redis_link::redis_link(const asio::any_io_executor& ex, std::shared_ptr<ssl::context> tls, std::string server_name)
    : context_(std::move(tls)), server_name_(std::move(server_name)), socket_(ex), resolver_(ex) {
  if (context_) tls_.emplace(ex, *context_);
}

asio::awaitable<std::string> redis_link::connect(const endpoint& to) {
  using asio::as_tuple;
  using asio::use_awaitable;
  boost::system::error_code ec;
  if (to.is_unix) {
    tls_.reset();  // Redis serves TLS on TCP only
    const asio::local::stream_protocol::endpoint ep(to.path);
    std::tie(ec) = co_await socket_.async_connect(socket_type::endpoint_type(ep), as_tuple(use_awaitable));
    co_return ec ? ec.message() : std::string();
  }
  auto [rec, results] = co_await resolver_.async_resolve(to.host, std::to_string(to.port), as_tuple(use_awaitable));
  if (rec == asio::error::operation_aborted) co_return "closed";
  if (rec) co_return "resolve " + to.host + ": " + rec.message();
  ec = asio::error::host_not_found;
  for (const auto& entry : results) {
    boost::system::error_code ignored;
    lowest().close(ignored);  // the next address may be of another family
    std::tie(ec) = co_await lowest().async_connect(socket_type::endpoint_type(entry.endpoint()), as_tuple(use_awaitable));
    if (!ec || ec == asio::error::operation_aborted) break;
  }
  if (ec) co_return ec.message();
  // Small pipelined writes must not wait for the previous one's ACK.
  boost::system::error_code ignored;
  lowest().set_option(asio::ip::tcp::no_delay(true), ignored);
  if (!tls_) co_return std::string();
  const std::string& name = server_name_.empty() ? to.host : server_name_;
  // SNI, then the name check: the certificate must be for the server meant, not just signed by the CA.
  SSL_set_tlsext_host_name(tls_->native_handle(), name.c_str());
  tls_->set_verify_callback(ssl::host_name_verification(name));
  std::tie(ec) = co_await tls_->async_handshake(ssl::stream_base::client, as_tuple(use_awaitable));
  if (!ec) co_return std::string();
  std::string why = "TLS handshake: " + ec.message();
  if (const long v = SSL_get_verify_result(tls_->native_handle()); v != X509_V_OK)
    why += std::string(" (") + X509_verify_cert_error_string(v) + ", server name " + name + ")";
  co_return why;
}

bool redis_link::closed_by_peer(const boost::system::error_code& ec) {
  return ec == asio::error::eof || ec == ssl::error::stream_truncated;
}

void redis_link::close() {
  resolver_.cancel();
  boost::system::error_code ignored;
  lowest().close(ignored);
}

}  // namespace rg
