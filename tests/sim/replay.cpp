// The replay (see replay.hpp): one coroutine per smtpd process on one io_context; each takes the next
// message in time order, waits for its due time, and sends its requests the way Postfix 3.7 does: one RCPT
// request per recipient (queue_id empty until a recipient has been accepted, as with
// smtpd_delay_open_until_valid_rcpt = yes), then END-OF-MESSAGE with recipient_count when any recipient
// was accepted. Every reply has a deadline.
#include "replay.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>

#include "policy_wire.hpp"

// g++ 12 reports Asio's coroutine frame allocation (awaitable_frame_base's own operator new/delete pair) as
// mismatched when it inlines a coroutine's start into its caller: a false positive (as in redis_store.cpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace rg::sim {

namespace {

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
using asio::awaitable;
using clock_type = std::chrono::steady_clock;
using socket_type = asio::generic::stream_protocol::socket;
constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);

// A daemon that refuses this many connections in a row is gone: stop instead of failing every message.
constexpr unsigned max_connect_failures = 50;

enum class verdict { accept, warn, hold, defer, reject };

// access(5): 4xx and DEFER* defer, 5xx and REJECT reject, HOLD parks, WARN logs; anything else
// (DUNNO, OK, PREPEND, ...) lets the recipient through.
verdict classify(const std::string& act) {
  if (act == "HOLD") return verdict::hold;
  if (act == "WARN") return verdict::warn;
  if (act.starts_with("DEFER") || (act.size() == 3 && act[0] == '4')) return verdict::defer;
  if (act == "REJECT" || (act.size() == 3 && act[0] == '5')) return verdict::reject;
  return verdict::accept;
}

struct state {
  const population& p;
  const replay_options& o;
  asio::generic::stream_protocol::endpoint endpoint;
  clock_type::time_point start;
  std::size_t next = 0;
  unsigned connect_failures = 0;
  bool aborted = false;
  unsigned days_reported = 0;
  replay_result res;
};

// Sends one request and reads its reply; the action word, or "" when there was no valid reply in time.
awaitable<std::string> ask(socket_type& sock, asio::steady_timer& timer, std::string& rbuf, const std::string& req,
                           std::chrono::milliseconds timeout) {
  timer.expires_after(timeout);
  auto w = co_await (asio::async_write(sock, asio::buffer(req), tuple_awaitable) || timer.async_wait(tuple_awaitable));
  if (w.index() != 0 || std::get<0>(std::get<0>(w))) co_return std::string();
  auto r = co_await (asio::async_read_until(sock, asio::dynamic_buffer(rbuf), "\n\n", tuple_awaitable) ||
                     timer.async_wait(tuple_awaitable));
  if (r.index() != 0) co_return std::string();
  auto [ec, n] = std::get<0>(r);
  if (ec) co_return std::string();
  std::string act = rg::test::action_of(std::string_view(rbuf).substr(0, n));
  rbuf.erase(0, n);
  if (!rbuf.empty()) act.clear();  // bytes nobody asked for
  co_return act;
}

void report_progress(state& st, double t) {
  if (!st.o.progress) return;
  const auto day = static_cast<unsigned>(t / day_s);
  if (day <= st.days_reported) return;
  st.days_reported = day;
  std::cerr << "rg_sim: simulated day " << day << " done, " << st.res.requests << " requests, " << st.res.errors
            << " errors\n";
}

// One smtpd process with its persistent policy connection.
awaitable<void> smtpd(state& st, unsigned id) {
  auto ex = co_await asio::this_coro::executor;
  socket_type sock(ex);
  asio::steady_timer timer(ex);
  const std::chrono::milliseconds timeout(st.o.timeout_ms);
  std::string req, rbuf;
  const auto& msgs = st.p.messages;
  while (!st.aborted && st.next < msgs.size()) {
    const std::size_t i = st.next++;
    const sim_message& m = msgs[i];
    const sender_profile& s = st.p.senders[m.sender];
    const auto due = st.start + std::chrono::duration_cast<clock_type::duration>(
                                    std::chrono::duration<double, std::milli>(m.t / hour_s * st.o.hour_ms));
    timer.expires_at(due);
    co_await timer.async_wait(tuple_awaitable);
    message_outcome& out = st.res.outcomes[i];
    out.lag_ms = std::chrono::duration<float, std::milli>(clock_type::now() - due).count();
    report_progress(st, m.t);

    if (!sock.is_open()) {
      timer.expires_after(timeout);
      auto c = co_await (sock.async_connect(st.endpoint, tuple_awaitable) || timer.async_wait(tuple_awaitable));
      if (c.index() != 0 || std::get<0>(std::get<0>(c))) {
        boost::system::error_code ignored;
        sock.close(ignored);
        out.failed = true;
        ++st.res.errors;
        if (++st.connect_failures >= max_connect_failures) st.aborted = true;
        continue;
      }
      st.connect_failures = 0;
      rbuf.clear();
    }

    char instance[48], queue_id[24];
    std::snprintf(instance, sizeof instance, "%x.%llx.%zx.0", id, static_cast<unsigned long long>(st.p.options.seed),
                  i);
    std::snprintf(queue_id, sizeof queue_id, "%02X%09zX", id & 0xff, i);
    rg::test::postfix_request r;
    r.client_address = m.client;
    r.client_name = m.client == "127.0.0.1" ? "localhost" : "unknown";
    r.client_port = static_cast<unsigned>(1024 + (i * 7919) % 64000);
    r.server_port = s.login.empty() ? 25 : 587;
    r.helo_name = s.helo;
    r.sender = s.address;
    r.instance = instance;
    r.sasl_method = s.login.empty() ? "" : "PLAIN";
    r.sasl_username = s.login;
    r.policy_context = s.login.empty() ? "" : "submission";

    auto answer = [&](const std::string& act) {
      if (act.empty()) {
        out.failed = true;
        ++st.res.errors;
        boost::system::error_code ignored;
        sock.close(ignored);
        return false;
      }
      ++st.res.requests;
      ++st.res.actions[act];
      if (!out.answers.empty()) out.answers += r.protocol_state == "RCPT" ? ',' : '|';
      out.answers += act;
      return true;
    };
    for (const std::string& rcpt : m.rcpts) {
      r.recipient = rcpt;
      r.queue_id = out.accepted > 0 ? std::string_view(queue_id) : std::string_view();
      req.clear();
      rg::test::append_request(req, r);
      const std::string act = co_await ask(sock, timer, rbuf, req, timeout);
      if (!answer(act)) break;
      switch (classify(act)) {
        case verdict::hold: out.held = true; ++out.accepted; break;
        case verdict::warn: out.warned = true; ++out.accepted; break;
        case verdict::accept: ++out.accepted; break;
        case verdict::defer: ++out.deferred; break;
        case verdict::reject: ++out.rejected; break;
      }
    }
    if (out.failed || out.accepted == 0) continue;  // no DATA without an accepted recipient

    r.protocol_state = "END-OF-MESSAGE";
    r.recipient = "";
    r.recipient_count = out.accepted;
    r.queue_id = queue_id;
    r.size = m.size;
    req.clear();
    rg::test::append_request(req, r);
    const std::string act = co_await ask(sock, timer, rbuf, req, timeout);
    if (!answer(act)) continue;
    switch (classify(act)) {
      case verdict::hold: out.held = true; break;
      case verdict::warn: out.warned = true; break;
      case verdict::accept: break;
      case verdict::defer: out.eom_deferred = true; break;
      case verdict::reject: out.eom_rejected = true; break;
    }
  }
  boost::system::error_code ignored;
  sock.close(ignored);
}

}  // namespace

replay_result replay(const population& p, const replay_options& o) {
  asio::io_context io(1);
  state st{p, o, rg::test::parse_endpoint(o.connect), clock_type::now(), 0, 0, false, 0, {}};
  st.res.outcomes.resize(p.messages.size());
  st.start = clock_type::now();
  for (unsigned i = 0; i < std::max(1u, o.connections); ++i)
    asio::co_spawn(io, smtpd(st, i), [&st](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        std::cerr << "rg_sim: connection coroutine failed: " << ex.what() << "\n";
      }
      ++st.res.errors;
      st.aborted = true;
    });
  io.run();
  st.res.wall_s = std::chrono::duration<double>(clock_type::now() - st.start).count();
  if (st.aborted)
    for (std::size_t i = st.next; i < p.messages.size(); ++i) st.res.outcomes[i].failed = true;
  return st.res;
}

}  // namespace rg::sim
