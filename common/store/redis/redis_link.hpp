// redis_link: one byte stream to a Redis server or a Redis Sentinel: a unix socket, or TCP (name resolved,
// each address tried) optionally wrapped in TLS with the peer's certificate and name always verified.
// Not here: RESP, commands, deadlines (the caller closes the link when its deadline fires), reconnects.
#pragma once

#include "net_addr.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <memory>
#include <optional>
#include <string>

namespace rg {

// TLS to Redis (settings redis_tls*): the CA that signs the servers' certificates, an optional client
// certificate and key (Redis' tls-auth-clients), and the name the server's certificate must carry (empty: the
// host as written in the address).
struct redis_tls_options {
  bool enabled = false;
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  std::string server_name;
};

// The TLS client context of every link of one store, built once at start-up (the files are read then, as
// root, like the password file). Throws std::invalid_argument naming the file that cannot be used.
std::shared_ptr<boost::asio::ssl::context> make_tls_context(const redis_tls_options& opts);

class redis_link {
 public:
  using socket_type = boost::asio::generic::stream_protocol::socket;
  // `tls`: null for plain text; else every TCP connection is TLS, checked against `server_name` (empty: the
  // host connected to). A unix socket is never TLS (Redis serves TLS on TCP only).
  redis_link(const boost::asio::any_io_executor& ex, std::shared_ptr<boost::asio::ssl::context> tls,
             std::string server_name);

  // Connects (and does the TLS handshake); "" when done, else why not, one line.
  boost::asio::awaitable<std::string> connect(const endpoint& to);
  // Cancels what is in flight and closes; idempotent. The pending operation completes with an error.
  void close();
  // The peer closed the connection: EOF, or over TLS a close without close_notify (Redis exiting does that).
  static bool closed_by_peer(const boost::system::error_code& ec);

  template <typename Buffers, typename Token>
  auto async_read_some(const Buffers& b, Token&& token) {
    if (tls_) return tls_->async_read_some(b, std::forward<Token>(token));
    return socket_.async_read_some(b, std::forward<Token>(token));
  }
  template <typename Buffers, typename Token>
  auto async_write(const Buffers& b, Token&& token) {
    if (tls_) return boost::asio::async_write(*tls_, b, std::forward<Token>(token));
    return boost::asio::async_write(socket_, b, std::forward<Token>(token));
  }

 private:
  socket_type& lowest() { return tls_ ? tls_->next_layer() : socket_; }

  std::shared_ptr<boost::asio::ssl::context> context_;  // kept alive while tls_ uses it
  std::string server_name_;
  socket_type socket_;  // plain text; unused with TLS
  std::optional<boost::asio::ssl::stream<socket_type>> tls_;
  boost::asio::ip::tcp::resolver resolver_;
};

}  // namespace rg
