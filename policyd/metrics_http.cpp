// One coroutine per scraper connection, Beast's parser and serializer (no hand-written HTTP): a request
// header of 8 kB at most and no body, each read and write under a deadline, keep-alive bounded.
#include "metrics_http.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

#include "config.hpp"
#include "log_exception.hpp"
#include "net_addr.hpp"

namespace rg {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::awaitable;
constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);

namespace {
// A scraper connects, asks, and waits a few seconds for the answer; one that takes longer to send its
// request or to read the answer is stuck or hostile.
constexpr auto io_deadline = std::chrono::seconds(10);
// Prometheus keeps one connection per target; a few for curl and a second Prometheus is plenty.
constexpr std::size_t max_connections = 16;
// Requests on one kept-alive connection before it is closed (Prometheus reconnects at once).
constexpr int max_requests_per_connection = 1000;
// A GET's header: far more than any scraper sends, small enough that a flood costs nothing.
constexpr std::uint32_t max_header = 8 * 1024;
}  // namespace

metrics_http::metrics_http(asio::io_context& io, metrics_http_handlers handlers)
    : io_(io), handlers_(std::move(handlers)) {}

void metrics_http::bind(const std::string& spec) {
  try {
    std::string why;
    const auto e = parse_endpoint(spec, listen_syntax, &why);  // load_config has checked it
    if (!e || e->is_unix) throw std::runtime_error(why.empty() ? "not inet:HOST:PORT" : why);
    boost::system::error_code ec;
    const auto addr = asio::ip::make_address(e->host == "localhost" ? "127.0.0.1" : e->host, ec);
    if (ec) throw std::runtime_error("not a numeric address: " + e->host);
    const asio::ip::tcp::endpoint ep(addr, e->port);
    asio::ip::tcp::acceptor acc(io_);
    acc.open(ep.protocol());
    acc.set_option(asio::socket_base::reuse_address(true));
    acc.bind(ep);
    acc.listen(16);
    acceptor_.emplace(std::move(acc));
  } catch (const boost::system::system_error& e) {
    throw std::runtime_error("metrics " + spec + ": " + e.code().message());
  } catch (const std::runtime_error& e) {
    throw std::runtime_error("metrics " + spec + ": " + e.what());
  }
}

void metrics_http::start() {
  if (!acceptor_) return;
  const auto ep = acceptor_->local_endpoint();
  spdlog::info("metrics on http://{}:{}/metrics", ep.address().to_string(), ep.port());
  asio::co_spawn(io_, accept_loop(), [](std::exception_ptr e) { log_exception(e, "metrics accept"); });
}

void metrics_http::close() {
  closed_ = true;
  boost::system::error_code ignored;
  if (acceptor_) acceptor_->close(ignored);
}

awaitable<void> metrics_http::accept_loop() {
  while (!closed_) {
    auto [ec, sock] = co_await acceptor_->async_accept(tuple_awaitable);
    if (ec) {
      if (ec == asio::error::operation_aborted || closed_) break;
      spdlog::warn("metrics: accept: {}", ec.message());
      asio::steady_timer t(io_, std::chrono::milliseconds(100));
      co_await t.async_wait(tuple_awaitable);
      continue;
    }
    boost::system::error_code e2;
    const auto peer = sock.remote_endpoint(e2);
    if (e2 || !handlers_.allowed(peer.address())) {
      refused_warning_.warn("metrics: connection from {} refused: not in allow_clients",
                            e2 ? "unknown peer" : peer.address().to_string());
      continue;  // `sock` closes as it goes out of scope
    }
    if (connections_ >= max_connections) {
      cap_warning_.warn("metrics: {} connections open: closing new ones", max_connections);
      continue;
    }
    asio::co_spawn(io_, serve(std::move(sock)), [](std::exception_ptr e) { log_exception(e, "metrics connection"); });
  }
}

awaitable<void> metrics_http::serve(asio::ip::tcp::socket sock) {
  ++connections_;
  beast::tcp_stream stream(std::move(sock));
  beast::flat_buffer buffer(max_header);
  for (int n = 0; n < max_requests_per_connection && !closed_; ++n) {
    http::request_parser<http::empty_body> parser;
    parser.header_limit(max_header);
    parser.body_limit(0);  // a GET carries none
    stream.expires_after(io_deadline);
    auto [ec, bytes] = co_await http::async_read(stream, buffer, parser, tuple_awaitable);
    if (ec) break;  // closed, timed out, or malformed: nothing worth answering
    const auto& req = parser.get();
    http::response<http::string_body> res;
    res.version(req.version());
    res.keep_alive(req.keep_alive());
    res.set(http::field::server, "rateguardd");
    const std::string_view target(req.target().data(), req.target().size());
    const std::string_view path = target.substr(0, target.find('?'));
    if (req.method() != http::verb::get) {
      res.result(http::status::method_not_allowed);
      res.set(http::field::allow, "GET");
      res.set(http::field::content_type, "text/plain; charset=utf-8");
      res.body() = "only GET\n";
    } else if (path == "/metrics") {
      res.result(http::status::ok);
      res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
      res.body() = handlers_.render();
    } else if (path == "/healthz") {
      const std::string problem = handlers_.health_problem();
      res.result(problem.empty() ? http::status::ok : http::status::service_unavailable);
      res.set(http::field::content_type, "text/plain; charset=utf-8");
      res.body() = (problem.empty() ? std::string("ok") : problem) + "\n";
    } else {
      res.result(http::status::not_found);
      res.set(http::field::content_type, "text/plain; charset=utf-8");
      res.body() = "not found: /metrics and /healthz are served here\n";
    }
    res.prepare_payload();
    const bool keep = res.keep_alive();
    stream.expires_after(io_deadline);
    auto [wec, written] = co_await http::async_write(stream, res, tuple_awaitable);
    if (wec || !keep) break;
  }
  boost::system::error_code ignored;
  stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  --connections_;
}

}  // namespace rg
