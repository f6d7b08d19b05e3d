// The policy front of rateguardd: listeners (inet and unix), one coroutine per policy connection with
// deadlines, the connection cap, the control socket for rateguardctl and graceful shutdown. Each request
// is decided by the policy service (policy_service.hpp: engine, store, locks, hold journal, decision log);
// commands are control.hpp's.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config.hpp"
#include "engine.hpp"
#include "net_addr.hpp"
#include "policy_service.hpp"
#include "rate_limited_warning.hpp"

namespace rg {

class server {
 public:
  // `service` decides every request (and holds the rules snapshot); it must outlive the server.
  server(boost::asio::io_context& io, const daemon_config& cfg, policy_service& service);

  // Binds every listen endpoint and the control socket (before privileges are dropped). Throws
  // std::runtime_error naming the endpoint on failure.
  void bind();
  // Starts accepting.
  void start();
  // Stops accepting, closes idle connections, lets in-flight requests and the service's journal writes
  // finish, then calls `done` with 0; when shutdown_timeout passes first, closes the connections left and
  // calls `done` with their number.
  void shutdown(std::function<void(std::size_t cut)> done);

  std::size_t connections() const { return conns_.size(); }

 private:
  struct connection {
    std::function<void()> close;
    bool busy = false;  // a request has begun and is not answered yet
  };
  using conn_iter = std::list<connection>::iterator;

  template <typename Acceptor>
  boost::asio::awaitable<void> accept_loop(Acceptor& acc, std::string name);
  template <typename Socket>
  boost::asio::awaitable<void> serve(Socket sock, std::string peer);
  template <typename Socket>
  boost::asio::awaitable<void> serve_requests(Socket& sock, const std::string& peer, conn_iter conn,
                                              message_tracker& tracker,
                                              const std::function<void(std::chrono::steady_clock::time_point)>& set_deadline);
  void bind_control();
  boost::asio::awaitable<void> control_loop();
  boost::asio::awaitable<void> serve_control(boost::asio::local::stream_protocol::socket sock);
  void check_drained();

  boost::asio::io_context& io_;
  daemon_config cfg_;
  policy_service& service_;
  std::vector<cidr> allow_clients_;
  std::vector<boost::asio::ip::tcp::acceptor> tcp_;
  std::vector<std::pair<boost::asio::local::stream_protocol::acceptor, std::string>> unix_;
  std::optional<boost::asio::local::stream_protocol::acceptor> control_;
  std::size_t control_conns_ = 0;
  std::list<connection> conns_;
  bool draining_ = false;
  std::function<void(std::size_t)> on_drained_;
  std::unique_ptr<boost::asio::steady_timer> drain_timer_;
  // Rate limits for our own warnings, so a flood cannot turn into a log flood.
  rate_limited_warning accept_warning_{std::chrono::seconds(10)}, cap_warning_{std::chrono::seconds(10)},
      refused_warning_, control_warning_;
};

}  // namespace rg
