// The metrics front: GET /metrics (the registry in the Prometheus text format) and GET /healthz (200 "ok", or
// 503 and why) over HTTP/1.1 with Boost.Beast, on the daemon's event loop. Every read is bounded in size and
// time, connections are capped, and it shares nothing with the policy fronts but the loop: a scraper that
// misbehaves is cut without touching a policy answer. Not here: what is counted (metrics.hpp and the
// fronts), the allow_clients list (the caller's `allowed`).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>

#include "rate_limited_warning.hpp"

namespace rg {

struct metrics_http_handlers {
  std::function<std::string()> render;           // the /metrics body
  std::function<std::string()> health_problem;   // "" when healthy, else the reason /healthz gives with 503
  std::function<bool(const boost::asio::ip::address&)> allowed;  // allow_clients
};

class metrics_http {
 public:
  metrics_http(boost::asio::io_context& io, metrics_http_handlers handlers);

  // Binds `spec` ("inet:HOST:PORT"); throws std::runtime_error naming it on failure.
  void bind(const std::string& spec);
  // Starts accepting; logs the address.
  void start();
  // Stops accepting; an open connection ends after its current request.
  void close();

 private:
  boost::asio::awaitable<void> accept_loop();
  boost::asio::awaitable<void> serve(boost::asio::ip::tcp::socket sock);

  boost::asio::io_context& io_;
  metrics_http_handlers handlers_;
  std::optional<boost::asio::ip::tcp::acceptor> acceptor_;
  std::size_t connections_ = 0;
  bool closed_ = false;
  rate_limited_warning refused_warning_{std::chrono::seconds(10)}, cap_warning_{std::chrono::seconds(10)};
};

}  // namespace rg
