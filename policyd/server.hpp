// The network side of rateguardd: listeners (inet and unix), one coroutine per policy connection with
// deadlines, the connection cap, decision logging, locks set by tripped hold rules, hold journal writes,
// the control socket for rateguardctl, reload of the policy snapshot and graceful shutdown.
// What to answer is decided by the engine; counting is the store's job; commands are control.hpp's.
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
#include "decision_log.hpp"
#include "engine.hpp"
#include "net_addr.hpp"
#include "store.hpp"

namespace rg {

class server {
 public:
  server(boost::asio::io_context& io, const daemon_config& cfg, std::shared_ptr<const policy_snapshot> snap,
         store& st);

  // Binds every listen endpoint and the control socket (before privileges are dropped). Throws
  // std::runtime_error naming the endpoint on failure.
  void bind();
  // Starts accepting.
  void start();
  // Swaps the rules and settings; requests in flight finish on the snapshot they began with.
  void set_snapshot(std::shared_ptr<const policy_snapshot> snap);
  // Stops accepting, closes idle connections, lets in-flight requests finish, then calls `done`
  // (also when `deadline` passes first, with the number of connections cut).
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
  // The decision log line of a verdict, if it is worth one (or debug logging is on).
  void log_decision(const verdict& v, const policy_request& r);
  void log_verdict(const verdict& v, const policy_request& r);
  // A hold rule tripped: lock its key; logs the lock once, when it is new.
  boost::asio::awaitable<void> set_lock(const verdict& v, const policy_request& r);
  // Journal records of finished held messages, written after the reply (never delaying it).
  void journal(std::vector<hold_record> records);
  boost::asio::awaitable<void> write_journal(hold_record rec);
  void warn_limited(std::chrono::steady_clock::time_point& last, const std::string& text);
  void bind_control();
  boost::asio::awaitable<void> control_loop();
  boost::asio::awaitable<void> serve_control(boost::asio::local::stream_protocol::socket sock);
  void note_request(const policy_snapshot& snap, const policy_request& r);
  void check_drained();

  boost::asio::io_context& io_;
  daemon_config cfg_;
  std::shared_ptr<const policy_snapshot> snap_;
  store& store_;
  log_format format_;
  std::vector<cidr> allow_clients_;
  std::vector<boost::asio::ip::tcp::acceptor> tcp_;
  std::vector<std::pair<boost::asio::local::stream_protocol::acceptor, std::string>> unix_;
  std::optional<boost::asio::local::stream_protocol::acceptor> control_;
  std::size_t control_conns_ = 0;
  std::size_t journal_pending_ = 0;
  std::list<connection> conns_;
  bool draining_ = false;
  std::function<void(std::size_t)> on_drained_;
  std::unique_ptr<boost::asio::steady_timer> drain_timer_;
  // Rate limits for our own warnings, so a flood cannot turn into a log flood.
  std::chrono::steady_clock::time_point last_cap_warning_{}, last_store_warning_{}, last_refused_warning_{},
      last_accept_warning_{}, last_lock_warning_{}, last_journal_warning_{}, last_control_warning_{};
  std::uint64_t suppressed_store_warnings_ = 0;
  std::uint64_t requests_ = 0, rcpt_requests_ = 0;
  bool warned_no_rcpt_ = false;
  bool warned_realm_ = false;  // once per process: the mismatch does not fix itself
};

}  // namespace rg
