// Listeners and policy connections on one Asio event loop. Each connection is a coroutine that owns its
// socket; a watchdog beside it closes the socket when the connection's deadline passes (idle, slow
// request, client that never reads), so every read and write is bounded.
#include "server.hpp"

#include <grp.h>
#include <pwd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

namespace rg {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using namespace asio::experimental::awaitable_operators;
using std::chrono::steady_clock;
constexpr auto tuple_awaitable = asio::as_tuple(use_awaitable);

namespace {

void log_exception(std::exception_ptr e, const char* what) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    spdlog::error("{}: unexpected exception: {}", what, ex.what());
  }
}

asio::ip::tcp::endpoint inet_endpoint(const std::string& spec) {
  // inet:HOST:PORT or inet:[V6]:PORT
  std::string rest = spec.substr(5);
  auto colon = rest.rfind(':');
  std::string host = rest.substr(0, colon);
  auto port = static_cast<unsigned short>(std::stoul(rest.substr(colon + 1)));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host == "localhost") host = "127.0.0.1";
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) throw std::runtime_error(spec + ": not a numeric address: " + host);
  return {addr, port};
}

void set_socket_owner(const std::string& path, const std::string& owner) {
  std::string user = owner, group;
  if (auto c = owner.find(':'); c != std::string::npos) {
    user = owner.substr(0, c);
    group = owner.substr(c + 1);
  }
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
  if (!user.empty()) {
    const passwd* pw = getpwnam(user.c_str());
    if (!pw) throw std::runtime_error("unix_socket_owner: unknown user " + user);
    uid = pw->pw_uid;
  }
  if (!group.empty()) {
    const struct group* gr = getgrnam(group.c_str());
    if (!gr) throw std::runtime_error("unix_socket_owner: unknown group " + group);
    gid = gr->gr_gid;
  }
  if (chown(path.c_str(), uid, gid) != 0)
    throw std::runtime_error("chown " + path + ": " + std::strerror(errno));
}

// Every connection is one descriptor. A soft limit below max_connections (systemd's default is 1024)
// would make accept fail with EMFILE long before the cap, so raise it as far as the hard limit allows,
// and say so once if that is not enough.
void raise_open_file_limit(std::size_t max_connections) {
  constexpr rlim_t reserve = 64;  // listeners, log file, Redis, a reload's file reads
  const rlim_t want = static_cast<rlim_t>(max_connections) + reserve;
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= want) return;
  const rlim_t can = rl.rlim_max == RLIM_INFINITY ? want : std::min(want, rl.rlim_max);
  if (can > rl.rlim_cur) {
    rl.rlim_cur = can;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) getrlimit(RLIMIT_NOFILE, &rl);
  }
  if (rl.rlim_cur < want)
    spdlog::warn("max_connections ({}) needs {} open files but the limit is {}: connections beyond that wait "
                 "until others close (raise LimitNOFILE)",
                 max_connections, want, rl.rlim_cur);
}

}  // namespace

server::server(asio::io_context& io, const daemon_config& cfg, std::shared_ptr<const policy_snapshot> snap,
               store& st)
    : io_(io), cfg_(cfg), snap_(std::move(snap)), store_(st),
      format_(cfg.log_format == "json" ? log_format::json : log_format::text) {
  for (const auto& a : cfg_.allow_clients)
    if (auto c = parse_cidr(a)) allow_clients_.push_back(*c);  // validated by load_config
}

void server::bind() {
  raise_open_file_limit(cfg_.max_connections);
  for (const std::string& spec : cfg_.listen) {
    try {
      if (spec.rfind("inet:", 0) == 0) {
        auto ep = inet_endpoint(spec);
        asio::ip::tcp::acceptor acc(io_);
        acc.open(ep.protocol());
        acc.set_option(asio::socket_base::reuse_address(true));
        if (ep.address().is_v6()) acc.set_option(asio::ip::v6_only(true));
        acc.bind(ep);
        acc.listen(asio::socket_base::max_listen_connections);
        tcp_.push_back(std::move(acc));
      } else {
        const std::string path = spec.substr(5);
        struct stat st {};
        // Replace a stale socket left by a crash, but never some other file.
        if (lstat(path.c_str(), &st) == 0) {
          if (!S_ISSOCK(st.st_mode)) throw std::runtime_error(path + " exists and is not a socket");
          ::unlink(path.c_str());
        }
        asio::local::stream_protocol::acceptor acc(io_);
        acc.open();
        acc.bind(asio::local::stream_protocol::endpoint(path));
        acc.listen(asio::socket_base::max_listen_connections);
        auto mode = static_cast<mode_t>(std::stoul(cfg_.unix_socket_mode, nullptr, 8));
        if (chmod(path.c_str(), mode) != 0) throw std::runtime_error("chmod " + path + ": " + std::strerror(errno));
        if (!cfg_.unix_socket_owner.empty()) set_socket_owner(path, cfg_.unix_socket_owner);
        unix_.emplace_back(std::move(acc), path);
      }
    } catch (const boost::system::system_error& e) {
      throw std::runtime_error("listen " + spec + ": " + e.code().message());
    } catch (const std::runtime_error& e) {
      throw std::runtime_error("listen " + spec + ": " + e.what());
    }
  }
}

void server::start() {
  for (auto& acc : tcp_) {
    auto ep = acc.local_endpoint();
    std::string name = "inet:" + ep.address().to_string() + ":" + std::to_string(ep.port());
    asio::co_spawn(io_, accept_loop(acc, name), [](std::exception_ptr e) { log_exception(e, "accept"); });
    spdlog::info("listening on {}", name);
  }
  for (auto& [acc, path] : unix_) {
    asio::co_spawn(io_, accept_loop(acc, "unix:" + path), [](std::exception_ptr e) { log_exception(e, "accept"); });
    spdlog::info("listening on unix:{}", path);
  }
}

void server::set_snapshot(std::shared_ptr<const policy_snapshot> snap) { snap_ = std::move(snap); }

template <typename Acceptor>
awaitable<void> server::accept_loop(Acceptor& acc, std::string name) {
  while (!draining_) {
    auto [ec, sock] = co_await acc.async_accept(tuple_awaitable);
    if (ec) {
      if (ec == asio::error::operation_aborted || draining_) break;
      // EMFILE and friends: say so (not on every retry), pause briefly instead of spinning.
      auto now = steady_clock::now();
      if (now - last_accept_warning_ > std::chrono::seconds(10)) {
        last_accept_warning_ = now;
        spdlog::warn("{}: accept: {}", name, ec.message());
      }
      asio::steady_timer t(io_, std::chrono::milliseconds(100));
      co_await t.async_wait(tuple_awaitable);
      continue;
    }
    if (conns_.size() >= cfg_.max_connections) {
      auto now = steady_clock::now();
      if (now - last_cap_warning_ > std::chrono::seconds(10)) {
        last_cap_warning_ = now;
        spdlog::warn("{}: max_connections ({}) reached: closing new connections", name, cfg_.max_connections);
      }
      boost::system::error_code ignored;
      sock.close(ignored);
      continue;
    }
    std::string peer = name;
    if constexpr (std::is_same_v<Acceptor, asio::ip::tcp::acceptor>) {
      boost::system::error_code e2;
      auto rep = sock.remote_endpoint(e2);
      if (!e2) peer = rep.address().to_string() + ":" + std::to_string(rep.port());
      auto ip = e2 ? std::nullopt : parse_ip(rep.address().to_string());
      const bool allowed = ip && std::any_of(allow_clients_.begin(), allow_clients_.end(),
                                             [&](const cidr& c) { return c.contains(*ip); });
      if (!allowed) {
        auto now = steady_clock::now();
        if (now - last_refused_warning_ > std::chrono::seconds(1)) {
          last_refused_warning_ = now;
          spdlog::warn("{}: connection from {} refused: not in allow_clients", name, peer);
        }
        boost::system::error_code ignored;
        sock.close(ignored);
        continue;
      }
    }
    asio::co_spawn(io_, serve(std::move(sock), std::move(peer)),
                   [](std::exception_ptr e) { log_exception(e, "connection"); });
  }
}

template <typename Socket>
awaitable<void> server::serve(Socket sock, std::string peer) {
  conns_.push_front(connection{});
  auto conn = conns_.begin();
  conn->close = [&sock] {
    boost::system::error_code ignored;
    sock.close(ignored);
  };
  auto deadline = steady_clock::now() + cfg_.idle_timeout;
  asio::steady_timer timer(io_);
  // The watchdog: wakes at the deadline; if it has not moved meanwhile, the connection is over.
  auto watchdog = [&]() -> awaitable<void> {
    for (;;) {
      timer.expires_at(deadline);
      co_await timer.async_wait(tuple_awaitable);
      if (steady_clock::now() >= deadline) co_return;
    }
  };
  // Moving the deadline later needs nothing (the watchdog re-checks when it wakes); moving it earlier
  // (a request has begun, a reply is being written) re-arms the timer, which wakes the watchdog.
  const std::function<void(steady_clock::time_point)> set_deadline = [&](steady_clock::time_point t) {
    deadline = t;
    if (t < timer.expiry()) timer.expires_at(t);
  };
  co_await (serve_requests(sock, peer, conn, set_deadline) || watchdog());
  boost::system::error_code ignored;
  sock.close(ignored);
  conns_.erase(conn);
  check_drained();
}

template <typename Socket>
awaitable<void> server::serve_requests(Socket& sock, const std::string& peer, conn_iter conn,
                                       const std::function<void(steady_clock::time_point)>& set_deadline) {
  request_parser parser;
  message_tracker tracker;
  std::array<char, 8192> buf;
  std::string out;
  bool partial = false;  // bytes of a request have arrived, its end has not
  // When the partial request began: its deadline does not move with each read, or a slow-loris sending
  // one byte at a time would hold the connection for ever.
  steady_clock::time_point began{};
  for (;;) {
    if (draining_ && !partial) co_return;
    conn->busy = partial;
    set_deadline(partial ? began + cfg_.request_timeout : steady_clock::now() + cfg_.idle_timeout);
    auto [ec, n] = co_await sock.async_read_some(asio::buffer(buf), tuple_awaitable);
    if (ec) {
      if (partial && ec != asio::error::operation_aborted)
        spdlog::warn("{}: connection closed in the middle of a request", peer);
      else if (partial)
        spdlog::warn("{}: request not complete within request_timeout ({}): closing connection", peer,
                     format_duration(cfg_.request_timeout));
      co_return;
    }
    conn->busy = true;
    const auto arrived = steady_clock::now();
    bool fresh = !partial;  // the bytes after a complete request begin a new one
    std::string_view data(buf.data(), n);
    while (!data.empty()) {
      auto r = parser.feed(data);
      if (r.status == parse_status::error) {
        spdlog::warn("{}: bad policy request: {}: closing connection", peer, parser.error());
        co_return;
      }
      data.remove_prefix(r.consumed);
      partial = r.status == parse_status::need_more;
      if (partial) {
        if (fresh) began = arrived;
        break;
      }
      fresh = true;
      auto snap = snap_;  // keeps this request's rules alive across a reload
      verdict v = co_await evaluate(*snap, tracker, parser.request());
      append_reply(out, v.reply);
      parser.next();
    }
    if (!out.empty()) {
      set_deadline(steady_clock::now() + cfg_.request_timeout);
      auto [wec, written] = co_await asio::async_write(sock, asio::buffer(out), tuple_awaitable);
      if (wec) {
        spdlog::warn("{}: cannot send reply: {}: closing connection", peer, wec.message());
        co_return;
      }
      out.clear();
    }
  }
}

awaitable<verdict> server::evaluate(const policy_snapshot& snap, message_tracker& t, const policy_request& r) {
  note_request(snap, r);
  auto p = t.prepare(snap, r);
  verdict v;
  if (!p.needs_store) {
    v = std::move(p.immediate);
  } else {
    store_result res = co_await store_.async_check(std::move(p.req), use_awaitable);
    v = t.finish(snap, r, p, res);
  }
  if (v.log) log_verdict(v, r);
  else if (spdlog::should_log(spdlog::level::debug))
    spdlog::debug("{}", format_decision(v, r, format_));
  co_return v;
}

void server::log_verdict(const verdict& v, const policy_request& r) {
  if (v.store_failed) {
    // One line per second at most while the store is down; the count of the others follows.
    auto now = steady_clock::now();
    if (now - last_store_warning_ < std::chrono::seconds(1)) {
      ++suppressed_store_warnings_;
      return;
    }
    last_store_warning_ = now;
    if (suppressed_store_warnings_ > 0)
      spdlog::warn("{} (and {} more store errors in the last second)", format_decision(v, r, format_),
                   suppressed_store_warnings_);
    else
      spdlog::warn("{}", format_decision(v, r, format_));
    suppressed_store_warnings_ = 0;
    return;
  }
  spdlog::info("{}", format_decision(v, r, format_));
}

void server::note_request(const policy_snapshot& snap, const policy_request& r) {
  ++requests_;
  if (!warned_realm_) {
    if (auto w = realm_mismatch(snap, r.get(attr::sasl_username)); !w.empty()) {
      warned_realm_ = true;
      spdlog::warn("{}", escape_log_value(w));
    }
  }
  if (r.get(attr::protocol_state) == "RCPT") ++rcpt_requests_;
  // "Rate limiting does nothing after I moved the check": say so instead of failing silently.
  if (!warned_no_rcpt_ && requests_ == 1000 && rcpt_requests_ == 0) {
    warned_no_rcpt_ = true;
    spdlog::warn("1000 policy requests and none at protocol_state RCPT: limits are counted at RCPT; "
                 "list check_policy_service in smtpd_recipient_restrictions");
  }
}

void server::shutdown(std::function<void(std::size_t)> done) {
  if (draining_) return;
  draining_ = true;
  on_drained_ = std::move(done);
  boost::system::error_code ignored;
  for (auto& acc : tcp_) acc.close(ignored);
  for (auto& [acc, path] : unix_) {
    acc.close(ignored);
    ::unlink(path.c_str());
  }
  // Idle connections go now; busy ones after their answer (serve_requests checks draining_).
  for (auto& c : conns_)
    if (!c.busy) c.close();
  drain_timer_ = std::make_unique<asio::steady_timer>(io_, cfg_.shutdown_timeout);
  drain_timer_->async_wait([this](boost::system::error_code ec) {
    if (ec || !on_drained_) return;
    auto cut = conns_.size();
    for (auto& c : conns_) c.close();
    auto cb = std::move(on_drained_);
    on_drained_ = nullptr;
    cb(cut);
  });
  check_drained();
}

void server::check_drained() {
  if (!draining_ || !conns_.empty() || !on_drained_) return;
  if (drain_timer_) drain_timer_->cancel();
  auto cb = std::move(on_drained_);
  on_drained_ = nullptr;
  asio::post(io_, [cb = std::move(cb)] { cb(0); });
}

}  // namespace rg
