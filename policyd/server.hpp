// The fronts of rateguardd: policy and milter listeners (inet and unix), one coroutine per connection with
// deadlines, the connection cap, the control socket for rateguardctl and graceful shutdown. Each policy
// request, and each whole message a milter connection brings (milter_session.hpp), is decided by the policy
// service (policy_service.hpp: engine, store, locks, hold journal, decision log); commands are control.hpp's.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config.hpp"
#include "control.hpp"
#include "engine.hpp"
#include "metrics.hpp"
#include "milter_session.hpp"
#include "net_addr.hpp"
#include "policy_service.hpp"
#include "rate_limited_warning.hpp"

namespace rg {

class server {
 public:
  // `service` decides every request (and holds the rules snapshot); it must outlive the server.
  // Its metrics (requests, connections) go to `reg`, which must outlive the server.
  server(boost::asio::io_context& io, const daemon_config& cfg, policy_service& service, metrics::registry& reg);

  // Binds every listen and milter endpoint and the control socket (before privileges are dropped). Throws
  // std::runtime_error naming the endpoint on failure.
  void bind();
  // Starts accepting.
  void start();
  // Stops accepting, closes idle connections, lets in-flight requests and the service's journal writes
  // finish, then calls `done` with 0; when shutdown_timeout passes first, closes the connections left and
  // calls `done` with their number.
  void shutdown(std::function<void(std::size_t cut)> done);

  std::size_t connections() const { return conns_.size(); }
  // The most connections open at once since the last restart_peak() (the stats line's peak).
  std::size_t peak_connections() const { return peak_connections_; }
  void restart_peak() { peak_connections_ = conns_.size(); }
  // What `rateguardctl stats` reports (daemon_stats); unset: the command is refused.
  void set_stats(std::function<stats_figures()> f) { stats_ = std::move(f); }
  // Whether an inet client may connect (allow_clients); the metrics front asks too.
  bool allows(const boost::asio::ip::address& a) const;

  // A reload's settings: `c` must differ from the running ones only in settings a reload applies (config.hpp's
  // apply_reloadable). Deadlines, the connection cap, allow_clients, lock_time and milter_local_daemon_name
  // apply to what happens next: new connections, requests and deadlines.
  void apply(const daemon_config& c);

 private:
  struct connection {
    std::function<void()> close;
    bool busy = false;  // a request has begun and is not answered yet
  };
  using conn_iter = std::list<connection>::iterator;

  enum class front : std::uint8_t { policy, milter };
  template <typename Acceptor>
  boost::asio::awaitable<void> accept_loop(Acceptor& acc, std::string name, front f);
  template <typename Socket>
  boost::asio::awaitable<void> serve(Socket sock, std::string peer, front f);
  template <typename Socket>
  boost::asio::awaitable<void> serve_milter(Socket& sock, const std::string& peer, conn_iter conn,
                                            message_tracker& tracker,
                                            const std::function<void(std::chrono::steady_clock::time_point)>& set_deadline);
  template <typename Socket>
  boost::asio::awaitable<void> serve_requests(Socket& sock, const std::string& peer, conn_iter conn,
                                              message_tracker& tracker,
                                              const std::function<void(std::chrono::steady_clock::time_point)>& set_deadline);
  void bind_control();
  boost::asio::awaitable<void> control_loop();
  boost::asio::awaitable<void> serve_control(boost::asio::local::stream_protocol::socket sock);
  void check_drained();
  void count_request(front f, const policy_request& r);

  boost::asio::io_context& io_;
  daemon_config cfg_;
  policy_service& service_;
  std::vector<cidr> allow_clients_;
  struct tcp_listener {
    boost::asio::ip::tcp::acceptor acc;
    front f;
  };
  struct unix_listener {
    boost::asio::local::stream_protocol::acceptor acc;
    std::string path;
    front f;
  };
  void bind_endpoint(const std::string& spec, front f);
  std::vector<tcp_listener> tcp_;
  std::vector<unix_listener> unix_;
  milter_session_settings milter_settings_;
  std::uint64_t milter_connections_ = 0;  // numbers each milter connection's messages in the log (instance)
  std::optional<boost::asio::local::stream_protocol::acceptor> control_;
  std::size_t control_conns_ = 0;
  std::list<connection> conns_;
  std::size_t peak_connections_ = 0;
  std::function<stats_figures()> stats_;
  // requests_[front][state]: the series of rateguard_requests_total, in the order of request_states.
  std::vector<std::vector<metrics::counter*>> requests_;
  std::vector<metrics::gauge*> open_;  // per front
  metrics::family<metrics::counter>& refused_;
  bool draining_ = false;
  std::function<void(std::size_t)> on_drained_;
  std::unique_ptr<boost::asio::steady_timer> drain_timer_;
  // Rate limits for our own warnings, so a flood cannot turn into a log flood.
  rate_limited_warning accept_warning_{std::chrono::seconds(10)}, cap_warning_{std::chrono::seconds(10)},
      refused_warning_, control_warning_;
};

}  // namespace rg
