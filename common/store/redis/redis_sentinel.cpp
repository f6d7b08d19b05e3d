// redis_sentinel: SENTINEL get-master-addr-by-name, asked of one sentinel after another on a fresh link each
// time (a sentinel question is rare: at connect and after a failure), each bounded by a timer that closes the
// link. hiredis encodes the commands and parses the replies, as for the store.
#include "redis_sentinel.hpp"

#include "decision_log.hpp"
#include "redis_link.hpp"
#include "redis_reply.hpp"
#include "redis_script.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <array>
#include <charconv>
#include <fmt/format.h>
#include <stdexcept>

namespace rg {

namespace asio = boost::asio;

sentinel_resolver::sentinel_resolver(asio::any_io_executor ex, sentinel_options opts,
                                     std::shared_ptr<asio::ssl::context> tls, std::string tls_server_name,
                                     std::chrono::milliseconds step_timeout)
    : ex_(std::move(ex)),
      opts_(std::move(opts)),
      tls_(std::move(tls)),
      tls_server_name_(std::move(tls_server_name)),
      step_timeout_(step_timeout) {
  if (opts_.sentinels.empty()) throw std::invalid_argument("sentinels: no sentinel given");
  if (opts_.master.empty()) throw std::invalid_argument("sentinels need sentinel_master");
  for (const auto& s : opts_.sentinels) {
    std::string why;
    auto e = parse_sentinel(s, &why);
    if (!e) throw std::invalid_argument(fmt::format("sentinel \"{}\": {}", escape_log_value(s, 200), why));
    sentinels_.push_back(std::move(*e));
    names_.push_back(s);
  }
}

asio::awaitable<sentinel_resolver::answer> sentinel_resolver::ask() {
  answer out;
  for (std::size_t i = 0; i < sentinels_.size(); ++i) {
    answer a = co_await ask_one(sentinels_[i]);
    if (a.master) {
      // The guidelines' order: the sentinel that answered is asked first next time.
      std::rotate(sentinels_.begin(), sentinels_.begin() + static_cast<std::ptrdiff_t>(i),
                  sentinels_.begin() + static_cast<std::ptrdiff_t>(i) + 1);
      std::rotate(names_.begin(), names_.begin() + static_cast<std::ptrdiff_t>(i),
                  names_.begin() + static_cast<std::ptrdiff_t>(i) + 1);
      co_return a;
    }
    out.why += (out.why.empty() ? "" : "; ") + fmt::format("sentinel {}: {}", names_[i], a.why);
  }
  co_return out;
}

asio::awaitable<sentinel_resolver::answer> sentinel_resolver::ask_one(const endpoint& sentinel) {
  using asio::as_tuple;
  using asio::use_awaitable;
  answer out;
  auto link = std::make_shared<redis_link>(ex_, tls_, tls_server_name_);
  asio::steady_timer deadline(ex_);
  bool expired = false;
  deadline.expires_after(step_timeout_);
  deadline.async_wait([link, &expired](boost::system::error_code ec) {
    if (ec) return;
    expired = true;
    link->close();
  });
  const auto timed_out = [&] { return fmt::format("no answer within {} ms", step_timeout_.count()); };
  std::string why = co_await link->connect(sentinel);
  if (!why.empty()) {
    deadline.cancel();
    out.why = expired ? timed_out() : why;
    co_return out;
  }
  std::string request;
  std::size_t replies = 1;
  if (!opts_.password.empty()) {
    if (opts_.username.empty()) append_command(request, {"AUTH", opts_.password});
    else append_command(request, {"AUTH", opts_.username, opts_.password});
    ++replies;
  }
  append_command(request, {"SENTINEL", "get-master-addr-by-name", opts_.master});
  auto [wec, written] = co_await link->async_write(asio::buffer(request), as_tuple(use_awaitable));
  reader_ptr reader = new_reader();
  if (!reader) throw std::bad_alloc();
  reply_ptr last;
  std::array<char, 4096> buf;
  while (!wec && replies > 0) {
    auto [ec, n] = co_await link->async_read_some(asio::buffer(buf), as_tuple(use_awaitable));
    if (ec) {
      wec = ec;
      break;
    }
    if (redisReaderFeed(reader.get(), buf.data(), n) != REDIS_OK) {
      why = to_redis_error("sentinel", reader.get(), nullptr).text;
      break;
    }
    for (;;) {
      void* raw = nullptr;
      if (redisReaderGetReply(reader.get(), &raw) != REDIS_OK) {
        why = to_redis_error("sentinel", reader.get(), nullptr).text;
        break;
      }
      if (raw == nullptr) break;
      reply_ptr r(static_cast<redisReply*>(raw));
      --replies;
      if (r->type == REDIS_REPLY_ERROR) {
        why = to_redis_error(replies > 0 ? "AUTH" : "SENTINEL", nullptr, r.get()).text;
        replies = 0;
        break;
      }
      if (replies == 0) last = std::move(r);
    }
    if (!why.empty()) break;
  }
  deadline.cancel();
  link->close();
  if (expired) {
    out.why = timed_out();
  } else if (!why.empty()) {
    out.why = why;
  } else if (wec) {
    out.why = redis_link::closed_by_peer(wec) ? std::string("closed by the sentinel") : wec.message();
  } else if (last->type == REDIS_REPLY_NIL) {
    out.why = fmt::format("does not know a master named \"{}\"", escape_log_value(opts_.master, 200));
  } else if (!is_array(last.get(), 2) || last->element[0]->type != REDIS_REPLY_STRING ||
             last->element[1]->type != REDIS_REPLY_STRING) {
    out.why = "unexpected reply to SENTINEL get-master-addr-by-name";
  } else {
    endpoint m;
    m.host = std::string(as_view(*last->element[0]));
    const auto port = as_view(*last->element[1]);
    unsigned p = 0;
    const auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (ec != std::errc() || ptr != port.data() + port.size() || p == 0 || p > 65535 || m.host.empty()) {
      out.why = "unexpected address in the reply to SENTINEL get-master-addr-by-name";
    } else {
      m.port = static_cast<std::uint16_t>(p);
      out.master = std::move(m);
    }
  }
  co_return out;
}

}  // namespace rg
