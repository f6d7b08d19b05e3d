// trivial_responder: the protocol ceiling for policy_bench and milter_bench. Same Asio style as rateguardd (one
// io_context, one coroutine per connection, read_some into a fixed buffer, one write per batch of replies) but no
// work: every policy request (attributes up to an empty line) gets "action=DUNNO\n\n"; with --milter, a milter
// that negotiates as rateguardd's front does (quarantine; only CONNECT, MAIL, RCPT, headers and EOM, no reply
// before EOM) and answers continue at every EOM. Loopback only; exits on SIGINT/SIGTERM or after MAX_SECONDS
// (default 3600), so it never outlives a benchmark by much.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <iostream>
#include <string>
#include <string_view>

#include "milter.hpp"

namespace asio = boost::asio;
using asio::awaitable;
using asio::ip::tcp;
constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);

namespace {

awaitable<void> serve(tcp::socket sock) {
  std::array<char, 8192> buf;
  std::string out;
  bool newline = false;  // the last byte seen was '\n' (so a second one ends the request)
  for (;;) {
    auto [ec, n] = co_await sock.async_read_some(asio::buffer(buf), tuple_awaitable);
    if (ec) co_return;
    for (std::size_t i = 0; i < n; ++i) {
      const bool nl = buf[i] == '\n';
      if (nl && newline) out.append("action=DUNNO\n\n");
      newline = nl && !newline;
    }
    if (!out.empty()) {
      auto [wec, written] = co_await asio::async_write(sock, asio::buffer(out), tuple_awaitable);
      if (wec) co_return;
      out.clear();
    }
  }
}

awaitable<void> serve_milter(tcp::socket sock) {
  namespace m = rg::milter;
  // rateguardd's negotiation (0xff3d2): no HELO, EOH, body, UNKNOWN or DATA, and no reply before EOM.
  constexpr std::uint32_t protocol = m::no_helo | m::no_end_of_headers | m::no_body | m::no_unknown | m::no_data |
                                     m::no_header_reply | m::no_reply_connect | m::no_reply_helo |
                                     m::no_reply_mail | m::no_reply_rcpt | m::no_reply_data | m::no_reply_unknown |
                                     m::no_reply_end_of_headers | m::no_reply_body;
  std::array<char, 8192> buf;
  std::string out;
  m::decoder d;
  for (;;) {
    auto [ec, n] = co_await sock.async_read_some(asio::buffer(buf), tuple_awaitable);
    if (ec) co_return;
    std::string_view in(buf.data(), n);
    for (;;) {
      const auto r = d.feed(in);
      in.remove_prefix(r.consumed);
      if (r.status == m::decode_status::error) co_return;
      if (r.status == m::decode_status::need_more) break;
      switch (d.current().command) {
        case m::command::negotiate:
          out += m::encode_negotiation({6, m::action_quarantine, protocol});
          break;
        case m::command::end_of_body: out += m::encode(m::reply::continue_); break;
        case m::command::quit: co_return;
        default: break;  // no reply to anything else
      }
      d.next();
    }
    if (!out.empty()) {
      auto [wec, written] = co_await asio::async_write(sock, asio::buffer(out), tuple_awaitable);
      if (wec) co_return;
      out.clear();
    }
  }
}

awaitable<void> accept_loop(tcp::acceptor& acc, bool milter) {
  for (;;) {
    auto [ec, sock] = co_await acc.async_accept(tuple_awaitable);
    if (ec) co_return;
    asio::co_spawn(acc.get_executor(), milter ? serve_milter(std::move(sock)) : serve(std::move(sock)), asio::detached);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bool milter = argc > 1 && std::string_view(argv[1]) == "--milter";
  if (milter) {
    --argc;
    ++argv;
  }
  if (argc < 2 || argc > 3) {
    std::cerr << "usage: trivial_responder [--milter] PORT [MAX_SECONDS]   (listens on 127.0.0.1:PORT)\n";
    return 2;
  }
  try {
    const auto port = static_cast<unsigned short>(std::stoul(argv[1]));
    const long max_seconds = argc == 3 ? std::stol(argv[2]) : 3600;
    asio::io_context io(1);
    tcp::acceptor acc(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](auto, int) { io.stop(); });
    asio::steady_timer limit(io, std::chrono::seconds(max_seconds));
    limit.async_wait([&](auto) { io.stop(); });
    asio::co_spawn(io, accept_loop(acc, milter), asio::detached);
    std::cout << "trivial_responder" << (milter ? " (milter)" : "") << " listening on 127.0.0.1:" << port << std::endl;
    io.run();
  } catch (const std::exception& e) {
    std::cerr << "trivial_responder: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
