// Listeners and policy connections on one Asio event loop. Each connection is a coroutine that owns its
// socket; a watchdog beside it closes the socket when the connection's deadline passes (idle, slow
// request, client that never reads), so every read and write is bounded.
#include "server.hpp"

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <utility>
#include <filesystem>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

#include "control.hpp"
#include "log_exception.hpp"
#include "privileges.hpp"

namespace rg {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using namespace asio::experimental::awaitable_operators;
using std::chrono::steady_clock;
constexpr auto tuple_awaitable = asio::as_tuple(use_awaitable);

namespace {


asio::ip::tcp::endpoint inet_endpoint(const endpoint& e, const std::string& spec) {
  const std::string host = e.host == "localhost" ? "127.0.0.1" : e.host;
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) throw std::runtime_error(spec + ": not a numeric address: " + host);
  return {addr, e.port};
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
    const auto ids = find_user(user, "unix_socket_owner");
    if (!ids) throw std::runtime_error("unix_socket_owner: unknown user " + user);
    uid = ids->uid;
  }
  if (!group.empty()) {
    const auto found = find_group(group, "unix_socket_owner");
    if (!found) throw std::runtime_error("unix_socket_owner: unknown group " + group);
    gid = *found;
  }
  if (chown(path.c_str(), uid, gid) != 0)
    throw std::runtime_error("chown " + path + ": " + std::strerror(errno));
}

// Makes way for a unix socket at `path`: removes a socket left by a crash, but never some other file, nor
// (with `refuse_live`) a socket another process still accepts on: stealing it would leave that process
// unreachable. Throws std::runtime_error naming the path.
void remove_stale_socket(asio::io_context& io, const std::string& path, bool refuse_live) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) return;
  if (!S_ISSOCK(st.st_mode)) throw std::runtime_error(path + " exists and is not a socket");
  if (refuse_live) {
    asio::local::stream_protocol::socket probe(io);
    boost::system::error_code ec;
    probe.connect(asio::local::stream_protocol::endpoint(path), ec);
    if (!ec) throw std::runtime_error(path + " is in use by another process");
  }
  ::unlink(path.c_str());
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

// Postfix's protocol_state values (SMTPD_POLICY_README); anything else is counted as "other", so a client
// cannot grow the label set.
constexpr std::array<std::string_view, 9> request_states{"CONNECT", "EHLO", "HELO", "MAIL", "RCPT",
                                                        "DATA", "END-OF-MESSAGE", "VRFY", "ETRN"};
constexpr std::array<std::string_view, 2> front_names{"policy", "milter"};

}  // namespace

server::server(asio::io_context& io, const daemon_config& cfg, policy_service& service, metrics::registry& reg)
    : io_(io), service_(service),
      refused_(reg.counters("rateguard_connections_refused_total",
                            "Connections closed at accept, by front and reason (allow_clients, max_connections)",
                            {{"front"}, {"reason"}})) {
  auto& requests = reg.counters("rateguard_requests_total", "Policy requests by front and protocol_state",
                                {{"front"}, {"protocol_state"}});
  auto& open = reg.gauges("rateguard_connections_open", "Policy and milter connections open now", {{"front"}});
  for (std::string_view f : front_names) {
    requests_.emplace_back();
    for (std::string_view st : request_states) requests_.back().push_back(&requests.with({f, st}));
    requests_.back().push_back(&requests.with({f, "other"}));
    open_.push_back(&open.with({f}));
    for (std::string_view reason : {"allow_clients", "max_connections"}) refused_.with({f, reason});
  }
  milter_settings_.user_name = [](std::uint32_t uid) { return login_name(static_cast<uid_t>(uid)); };
  apply(cfg);
  service_.on_journal_idle([this] { check_drained(); });
}

void server::apply(const daemon_config& c) {
  const bool bound = !tcp_.empty() || !unix_.empty();  // bind() raises the limit for the first settings
  if (bound && c.max_connections > cfg_.max_connections) raise_open_file_limit(c.max_connections);
  cfg_ = c;
  allow_clients_.clear();
  for (const auto& a : cfg_.allow_clients)
    if (auto n = parse_cidr(a)) allow_clients_.push_back(*n);  // validated by load_config
  milter_settings_.local_daemon_name = cfg_.milter_local_daemon_name;
}

bool server::allows(const asio::ip::address& a) const {
  const auto ip = parse_ip(a.to_string());
  return ip && std::any_of(allow_clients_.begin(), allow_clients_.end(), [&](const cidr& c) { return c.contains(*ip); });
}

void server::count_request(front f, const policy_request& r) {
  const std::string_view state = r.get(attr::protocol_state);
  auto& by_state = requests_[static_cast<std::size_t>(f)];
  std::size_t i = 0;
  while (i < request_states.size() && request_states[i] != state) ++i;
  by_state[i]->inc();  // i == request_states.size(): "other"
}

void server::bind() {
  raise_open_file_limit(cfg_.max_connections);
  bind_control();
  for (const std::string& spec : cfg_.listen) bind_endpoint(spec, front::policy);
  for (const std::string& spec : cfg_.milter) bind_endpoint(spec, front::milter);
}

void server::bind_endpoint(const std::string& spec, front f) {
  const char* setting = f == front::milter ? "milter " : "listen ";
  try {
    std::string why;
    const auto parsed = parse_endpoint(spec, listen_syntax, &why);  // load_config has checked it
    if (!parsed) throw std::runtime_error(why);
    if (!parsed->is_unix) {
      auto ep = inet_endpoint(*parsed, spec);
      asio::ip::tcp::acceptor acc(io_);
      acc.open(ep.protocol());
      acc.set_option(asio::socket_base::reuse_address(true));
      if (ep.address().is_v6()) acc.set_option(asio::ip::v6_only(true));
      acc.bind(ep);
      acc.listen(asio::socket_base::max_listen_connections);
      tcp_.push_back({std::move(acc), f});
    } else {
      const std::string& path = parsed->path;
      remove_stale_socket(io_, path, false);
      asio::local::stream_protocol::acceptor acc(io_);
      acc.open();
      acc.bind(asio::local::stream_protocol::endpoint(path));
      acc.listen(asio::socket_base::max_listen_connections);
      auto mode = static_cast<mode_t>(std::stoul(cfg_.unix_socket_mode, nullptr, 8));
      if (chmod(path.c_str(), mode) != 0) throw std::runtime_error("chmod " + path + ": " + std::strerror(errno));
      if (!cfg_.unix_socket_owner.empty()) set_socket_owner(path, cfg_.unix_socket_owner);
      unix_.push_back({std::move(acc), path, f});
    }
  } catch (const boost::system::system_error& e) {
    throw std::runtime_error(setting + spec + ": " + e.code().message());
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(setting + spec + ": " + e.what());
  }
}

void server::start() {
  for (auto& l : tcp_) {
    auto ep = l.acc.local_endpoint();
    std::string name = "inet:" + ep.address().to_string() + ":" + std::to_string(ep.port());
    spdlog::info("listening on {}{}", name, l.f == front::milter ? " (milter)" : "");
    asio::co_spawn(io_, accept_loop(l.acc, std::move(name), l.f), [](std::exception_ptr e) { log_exception(e, "accept"); });
  }
  for (auto& l : unix_) {
    spdlog::info("listening on unix:{}{}", l.path, l.f == front::milter ? " (milter)" : "");
    asio::co_spawn(io_, accept_loop(l.acc, "unix:" + l.path, l.f), [](std::exception_ptr e) { log_exception(e, "accept"); });
  }
  if (control_) {
    asio::co_spawn(io_, control_loop(), [](std::exception_ptr e) { log_exception(e, "control"); });
    spdlog::info("control socket {}", cfg_.control_socket);
  }
}

template <typename Acceptor>
awaitable<void> server::accept_loop(Acceptor& acc, std::string name, front f) {
  while (!draining_) {
    auto [ec, sock] = co_await acc.async_accept(tuple_awaitable);
    if (ec) {
      if (ec == asio::error::operation_aborted || draining_) break;
      // EMFILE and friends: say so (not on every retry), pause briefly instead of spinning.
      accept_warning_.warn("{}: accept: {}", name, ec.message());
      asio::steady_timer t(io_, std::chrono::milliseconds(100));
      co_await t.async_wait(tuple_awaitable);
      continue;
    }
    if (conns_.size() >= cfg_.max_connections) {
      refused_.with({front_names[static_cast<std::size_t>(f)], "max_connections"}).inc();
      cap_warning_.warn("{}: max_connections ({}) reached: closing new connections", name, cfg_.max_connections);
      boost::system::error_code ignored;
      sock.close(ignored);
      continue;
    }
    std::string peer = name;
    if constexpr (std::is_same_v<Acceptor, asio::ip::tcp::acceptor>) {
      boost::system::error_code e2;
      auto rep = sock.remote_endpoint(e2);
      // A peer that reset before we asked has no address: refused, and said so.
      peer = e2 ? "unknown peer (" + e2.message() + ")" : rep.address().to_string() + ":" + std::to_string(rep.port());
      if (e2 || !allows(rep.address())) {
        refused_.with({front_names[static_cast<std::size_t>(f)], "allow_clients"}).inc();
        refused_warning_.warn("{}: connection from {} refused: not in allow_clients", name, peer);
        boost::system::error_code ignored;
        sock.close(ignored);
        continue;
      }
    }
    asio::co_spawn(io_, serve(std::move(sock), std::move(peer), f),
                   [](std::exception_ptr e) { log_exception(e, "connection"); });
  }
}

template <typename Socket>
awaitable<void> server::serve(Socket sock, std::string peer, front f) {
  // Replies are written with a non-blocking write_some first (serve_requests); a socket that refuses the
  // mode is closed like one that fails a read.
  boost::system::error_code nb_ec;
  sock.non_blocking(true, nb_ec);
  if (nb_ec) co_return;
  conns_.push_front(connection{});
  auto conn = conns_.begin();
  peak_connections_ = std::max(peak_connections_, conns_.size());
  metrics::gauge& open = *open_[static_cast<std::size_t>(f)];
  open.add(1);
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
  message_tracker tracker;  // here, not in serve_requests: it outlives a connection cut by the watchdog
  if (f == front::milter)
    co_await (serve_milter(sock, peer, conn, tracker, set_deadline) || watchdog());
  else
    co_await (serve_requests(sock, peer, conn, tracker, set_deadline) || watchdog());
  boost::system::error_code ignored;
  sock.close(ignored);
  service_.end_connection(tracker);  // the message in progress is finished and journaled
  open.add(-1);
  conns_.erase(conn);
  check_drained();
}

template <typename Socket>
awaitable<void> server::serve_requests(Socket& sock, const std::string& peer, conn_iter conn,
                                       message_tracker& tracker,
                                       const std::function<void(steady_clock::time_point)>& set_deadline) {
  request_parser parser;
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
      // The request's values are views of `buf` (or of the parser's copy of a request that spanned reads):
      // valid until next(), as nothing reads into `buf` before the loop has answered every request in it.
      // The service logs, locks and journals during the decision and copies what it keeps.
      count_request(front::policy, parser.request());
      // With the memory store the decision needs no waiting: no suspension, no completion handler.
      verdict v;
      if (service_.decides_at_once())
        v = service_.decide_at_once(tracker, parser.request());
      else
        v = co_await service_.decide(tracker, parser.request());
      append_reply(out, v.reply);
      parser.next();
    }
    if (!out.empty()) {
      // The reply almost always fits the socket buffer: write it now, without an asynchronous operation
      // (and without moving the deadline); only what the socket does not take waits, under the deadline.
      boost::system::error_code wec;
      std::size_t written = sock.write_some(asio::buffer(out), wec);
      if (wec == asio::error::would_block || wec == asio::error::try_again) {
        wec.clear();
        written = 0;
      }
      if (!wec && written < out.size()) {
        set_deadline(steady_clock::now() + cfg_.request_timeout);
        const auto rest = asio::buffer(out.data() + written, out.size() - written);
        auto [async_ec, async_written] = co_await asio::async_write(sock, rest, tuple_awaitable);
        wec = async_ec;
      }
      if (wec) {
        spdlog::warn("{}: cannot send reply: {}: closing connection", peer, wec.message());
        co_return;
      }
      out.clear();
    }
  }
}

template <typename Socket>
awaitable<void> server::serve_milter(Socket& sock, const std::string& peer, conn_iter conn, message_tracker& tracker,
                                     const std::function<void(steady_clock::time_point)>& set_deadline) {
  milter_session session(milter_settings_, "milter." + std::to_string(++milter_connections_));
  milter::decoder decoder;
  std::array<char, 8192> buf;
  std::string out;
  bool partial = false;  // bytes of a packet have arrived, its end has not
  steady_clock::time_point began{};  // when the partial packet began: its deadline does not move
  for (;;) {
    if (draining_ && !partial) co_return;
    conn->busy = partial;
    set_deadline(partial ? began + cfg_.request_timeout : steady_clock::now() + cfg_.idle_timeout);
    auto [ec, n] = co_await sock.async_read_some(asio::buffer(buf), tuple_awaitable);
    if (ec) {
      if (partial)
        spdlog::warn("{}: milter packet not complete {}: closing connection", peer,
                     ec == asio::error::operation_aborted ? "within request_timeout (" + format_duration(cfg_.request_timeout) + ")"
                                                          : std::string("when the connection closed"));
      co_return;
    }
    conn->busy = true;
    const auto arrived = steady_clock::now();
    bool fresh = !partial;
    std::string_view data(buf.data(), n);
    while (!data.empty()) {
      const auto r = decoder.feed(data);
      if (r.status == milter::decode_status::error) {
        spdlog::warn("{}: bad milter packet: {}: closing connection", peer, decoder.error());
        co_return;
      }
      data.remove_prefix(r.consumed);
      partial = r.status == milter::decode_status::need_more;
      if (partial) {
        if (fresh) began = arrived;
        break;
      }
      fresh = true;
      const milter::packet p = decoder.current();
      const auto next = session.on_packet(p, out);
      if (next == milter_session::step::close) {
        if (!session.error().empty()) spdlog::warn("{}: {}: closing connection", peer, session.error());
        co_return;
      }
      if (next == milter_session::step::decide) {
        count_request(front::milter, session.request());
        verdict v;
        if (service_.decides_at_once())
          v = service_.decide_at_once(tracker, session.request());
        else
          v = co_await service_.decide(tracker, session.request());
        session.decided(v, out);
      }
      decoder.next();
    }
    if (!out.empty()) {
      set_deadline(steady_clock::now() + cfg_.request_timeout);
      auto [wec, written] = co_await asio::async_write(sock, asio::buffer(out), tuple_awaitable);
      if (wec) {
        spdlog::warn("{}: cannot send milter reply: {}: closing connection", peer, wec.message());
        co_return;
      }
      out.clear();
    }
  }
}

void server::bind_control() {
  const std::string& path = cfg_.control_socket;
  if (path.empty()) return;
  try {
    // /run/rateguard is not there on a fresh boot without systemd's RuntimeDirectory=: make it.
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    // A live socket belongs to a running rateguardd: stealing it would leave that one unreachable.
    remove_stale_socket(io_, path, true);
    asio::local::stream_protocol::acceptor acc(io_);
    acc.open();
    acc.bind(asio::local::stream_protocol::endpoint(path));
    acc.listen(16);
    // Commands change locks and counters: the daemon's own user only (rateguardctl runs as root or it).
    if (chmod(path.c_str(), 0600) != 0) throw std::runtime_error("chmod " + path + ": " + std::strerror(errno));
    control_.emplace(std::move(acc));
  } catch (const boost::system::system_error& e) {
    throw std::runtime_error("control_socket " + path + ": " + e.code().message());
  } catch (const std::filesystem::filesystem_error& e) {
    throw std::runtime_error("control_socket " + path + ": " + e.code().message());
  } catch (const std::runtime_error& e) {
    throw std::runtime_error("control_socket " + std::string(e.what()));
  }
}

awaitable<void> server::control_loop() {
  // rateguardctl runs one command at a time; a few at once is plenty, more is a runaway script.
  constexpr std::size_t max_control_connections = 16;
  while (!draining_ && control_) {
    auto [ec, sock] = co_await control_->async_accept(tuple_awaitable);
    if (ec) {
      if (ec == asio::error::operation_aborted || draining_) break;
      spdlog::warn("control socket: accept: {}", ec.message());
      asio::steady_timer t(io_, std::chrono::milliseconds(100));
      co_await t.async_wait(tuple_awaitable);
      continue;
    }
    if (control_conns_ >= max_control_connections) {
      control_warning_.warn("control socket: {} commands in progress: closing new connections",
                            max_control_connections);
      continue;  // `sock` closes as it goes out of scope
    }
    asio::co_spawn(io_, serve_control(std::move(sock)), [](std::exception_ptr e) { log_exception(e, "control"); });
  }
}

awaitable<void> server::serve_control(asio::local::stream_protocol::socket sock) {
  ++control_conns_;
  // One command per connection, read, run and answered within one deadline (a tool that never finishes
  // its request, or never reads the answer, is cut).
  auto work = [&]() -> awaitable<void> {
    std::string in;
    auto [ec, n] = co_await asio::async_read_until(sock, asio::dynamic_buffer(in, control_max_request), "\n\n",
                                                   tuple_awaitable);
    std::string reply;
    if (ec == asio::error::not_found)
      reply = R"({"ok":false,"code":"usage","error":"request too large"})";
    else if (ec)
      co_return;
    else {
      // Named, not temporaries in the co_await expression: g++ 12 destroys such a temporary twice (seen
      // here as the snapshot's shared_ptr released once too often).
      control_env env{service_.counter_store(), service_.snapshot(), cfg_.lock_time, stats_,
                      [this](const std::string& identity, std::int64_t until_ms) {
                        service_.lock_changed(identity, until_ms);
                      }};
      in.resize(n);
      reply = co_await run_control(std::move(env), std::move(in));
    }
    reply += '\n';
    co_await asio::async_write(sock, asio::buffer(reply), tuple_awaitable);
  };
  // Long enough for the store's own deadline of its slowest command (top on Redis: 10 x redis_timeout, at
  // least 5 s), so the store's answer, even an error, arrives before the cut.
  const auto limit = std::max({cfg_.request_timeout, std::chrono::milliseconds(std::chrono::seconds(10)),
                               10 * cfg_.redis_timeout + std::chrono::milliseconds(std::chrono::seconds(1))});
  asio::steady_timer deadline(io_, limit);
  co_await (work() || deadline.async_wait(tuple_awaitable));
  boost::system::error_code ignored;
  sock.close(ignored);
  --control_conns_;
}

void server::shutdown(std::function<void(std::size_t)> done) {
  if (draining_) return;
  draining_ = true;
  on_drained_ = std::move(done);
  boost::system::error_code ignored;
  for (auto& l : tcp_) l.acc.close(ignored);
  for (auto& l : unix_) {
    l.acc.close(ignored);
    ::unlink(l.path.c_str());
  }
  if (control_) {
    control_->close(ignored);
    ::unlink(cfg_.control_socket.c_str());
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
  // Journal records of messages finished by the shutdown itself are written before exiting.
  if (!draining_ || !conns_.empty() || service_.journal_pending() > 0 || !on_drained_) return;
  if (drain_timer_) drain_timer_->cancel();
  auto cb = std::move(on_drained_);
  on_drained_ = nullptr;
  asio::post(io_, [cb = std::move(cb)] { cb(0); });
}

}  // namespace rg
