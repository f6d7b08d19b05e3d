// redis_store: connection life cycle (ask the sentinels, connect, handshake, serve, back off), the pipelined
// request FIFO with
// per-request deadlines, and the wire side of the operator commands (several pipelined commands each, one
// deadline; which commands and how their replies read is redis_admin's). The Lua scripts and their arguments
// are in redis_script, their replies are read by redis_reply. Everything runs on one executor; nothing here
// blocks.
// Not here: rules, decisions, Postfix; not thread-safe (one single-threaded io_context assumed).
#include "redis_store.hpp"
#include "decision_log.hpp"
#include "id_queue.hpp"

#include "net_addr.hpp"
#include "redis_admin.hpp"
#include "redis_reply.hpp"
#include "redis_check.hpp"
#include "redis_script.hpp"

#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <boost/asio/append.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <map>
#include <optional>
#include <stdexcept>
#include <utility>

namespace rg {

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
using handler_type = asio::any_completion_handler<void(store_result)>;
using admin_handler = asio::any_completion_handler<void(admin_result)>;

// What the redis setting may be: "HOST[:PORT]", "[V6][:PORT]", "/path" or "unix:/path" (Redis' own port
// when none is written).
constexpr endpoint_syntax redis_syntax{.scheme_required = false, .default_port = 6379, .port_zero_ok = false};

endpoint parse_address(const std::string& address) {
  std::string why;
  auto e = parse_endpoint(address, redis_syntax, &why);
  if (!e) throw std::invalid_argument(fmt::format("redis address \"{}\": {}", escape_log_value(address, 200), why));
  return std::move(*e);
}

// A sentinel that does not answer within this is skipped for the next (the guidelines' "short timeout"); at
// least the request deadline, so a sentinel is given as long as a check.
std::chrono::milliseconds sentinel_step(std::chrono::milliseconds timeout) {
  return std::clamp<std::chrono::milliseconds>(timeout, 250ms, 1000ms);
}

// Back-off between connection attempts: quick first retries for a restart, capped so the store is back
// within about half a second of Redis returning.
constexpr auto backoff_first = 50ms;
constexpr auto backoff_cap = 500ms;

}  // namespace

// g++ 12 with -fsanitize=address reports Asio's coroutine frame allocation (awaitable_frame_base's own
// operator new/delete pair) as mismatched: a false positive, silenced for this class only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

class redis_store::impl : public std::enable_shared_from_this<impl> {
 public:
  impl(asio::any_io_executor ex, redis_options opts)
      : ex_(std::move(ex)),
        opts_(std::move(opts)),
        tls_(make_tls_context(opts_.tls)),
        target_(opts_.sentinel.sentinels.empty() ? parse_address(opts_.address) : endpoint{}),
        stall_limit_(std::max<clock_type::duration>(1s, 5 * opts_.timeout)),
        long_timeout_(std::max<clock_type::duration>(5s, 10 * opts_.timeout)),
        deadline_timer_(ex_),
        connect_timer_(ex_),
        retry_timer_(ex_) {
    if (opts_.timeout <= 0ms) throw std::invalid_argument("redis timeout must be positive");
    if (opts_.max_pending == 0) throw std::invalid_argument("redis max_pending must be positive");
    if (opts_.journal.max_entries == 0) throw std::invalid_argument("hold journal max entries must be positive");
    admin_keys_.prefix = opts_.key_prefix;
    admin_keys_.journal = opts_.journal;
    if (!opts_.sentinel.sentinels.empty())
      sentinel_.emplace(ex_, opts_.sentinel, tls_, opts_.tls.server_name, sentinel_step(opts_.timeout));
    where_ = sentinel_ ? fmt::format("master \"{}\"", escape_log_value(opts_.sentinel.master, 200)) : opts_.address;
  }

  void start() {
    if (started_ || state_ == state::stopped) return;
    started_ = true;
    asio::co_spawn(ex_, run(shared_from_this()), [address = where_](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& x) {
        spdlog::critical("redis {}: connection manager died: {}", address, x.what());
      }
    });
  }

  void stop() {
    if (state_ == state::stopped) return;
    state_ = state::stopped;
    deadline_timer_.cancel();
    connect_timer_.cancel();
    retry_timer_.cancel();
    if (conn_) close(*conn_, "stopped");
    fail_all("redis store stopped");
  }

  bool connected() const { return state_ == state::connected; }
  const std::string& refused() const { return refused_; }

  void check(store_request req, handler_type done) {
    if (state_ != state::connected) return complete_later(std::move(done), not_connected());
    if (conn_->wire.size() >= opts_.max_pending) return complete_later(std::move(done), "redis overloaded");
    for (const auto& c : req.counters) {
      // A zero window would divide by zero in the script; the rules loader should never produce one.
      if (c.window_s == 0) return complete_later(std::move(done), "redis: invalid counter (window 0)");
    }
    const auto id = next_id_++;
    const auto now = clock_type::now();
    send_check(*conn_, id, req);
    calls_.add(id, call{std::move(req), std::move(done), false});
    timeouts_.emplace_back(now + opts_.timeout, id);
    arm_deadline_timer();
    // At once, not gathered until the loop has run every ready handler: the first check of a burst then
    // reaches Redis alone and Redis starts on it while the rest arrive (gathering each burst into one write
    // keeps every connection in one batch; tests/bench/README.md, "Profile").
    start_write(conn_);
  }

  void admin(admin_request req, admin_handler done) {
    if (state_ != state::connected) return complete_later(std::move(done), not_connected());
    if (conn_->wire.size() >= opts_.max_pending) return complete_later(std::move(done), "redis overloaded");
    if (req.op == admin_op::lock && req.ttl_ms <= 0) return complete_later(std::move(done), "lock: ttl must be positive");
    if ((req.op == admin_op::top || req.op == admin_op::journal_read) && req.limit == 0) {
      admin_result empty;
      empty.ok = true;
      return asio::post(ex_, asio::append(std::move(done), std::move(empty)));
    }
    const auto id = next_id_++;
    const bool long_op = req.op == admin_op::top || req.op == admin_op::journal_read;
    // Built in place: Boost 1.81's any_completion_handler move assignment recurses without end (it copies
    // from the lvalue), so the handler is only ever move-constructed.
    const auto deadline = clock_type::now() + (long_op ? long_timeout_ : clock_type::duration(opts_.timeout));
    auto& a = admins_.try_emplace(id, std::move(req), std::move(done), deadline).first->second;
    admin_begin(*conn_, id, a);
    arm_deadline_timer();
    start_write(conn_);
  }

 private:
  enum class state { idle, connecting, connected, stopped };
  enum class slot_kind { auth, select, cluster_info, role, function_load, script_load, check, admin };

  // What one reply answers. Checks and operator commands each find their own state by `id` (and a late
  // reply, after a deadline removed that state, finds none and is dropped): checks in calls_, parsed by
  // parse_check_reply; operator commands in admins_, each command's parser chosen by its admin_cmd.
  struct wire_slot {
    slot_kind kind;
    std::uint64_t id;  // calls_ key (check), admins_ key (admin), script index (script_load)
    clock_type::time_point sent;
  };

  // One connection attempt and everything tied to its socket: a late completion of an old connection's
  // write finds its own buffer and socket, never the next connection's.
  struct connection {
    connection(const asio::any_io_executor& ex, std::shared_ptr<asio::ssl::context> tls, std::string tls_name)
        : link(ex, std::move(tls), std::move(tls_name)), reader(new_reader()) {
      if (!reader) throw std::bad_alloc();
    }
    redis_link link;
    reader_ptr reader;
    std::string out;      // encoded, not yet handed to the socket
    std::string writing;  // handed to the socket by the write in flight
    bool write_busy = false;
    std::deque<wire_slot> wire;  // sent (or queued) commands awaiting replies, in send order
    bool up = false;             // handshake done
    std::string reason;          // why it was closed, first cause wins
  };

  struct call {
    store_request req;
    handler_type done;
    bool reloaded;  // resent after "Function not found" behind a FUNCTION LOAD: not resent again
  };

  // An operator command in flight: its progress (redis_admin) and the store's side of it.
  struct admin_call {
    admin_call(admin_request r, admin_handler h, clock_type::time_point d)
        : state(std::move(r)), done(std::move(h)), deadline(d) {}
    admin_state state;
    admin_handler done;
    clock_type::time_point deadline;
    std::deque<admin_cmd> sent;  // this operation's commands awaiting replies, in wire order
  };

  // --- connection life cycle -------------------------------------------------------------------------------

  // The parameter keeps the impl alive for as long as the coroutine runs.
  asio::awaitable<void> run(std::shared_ptr<impl>) {
    auto backoff = std::chrono::milliseconds(backoff_first);
    while (state_ != state::stopped) {
      auto c = std::make_shared<connection>(ex_, tls_, opts_.tls.server_name);
      conn_ = c;
      state_ = state::connecting;
      std::string why;
      if (sentinel_) {
        // Asked before every connection: after a failover the next master is whichever they name now.
        auto a = co_await sentinel_->ask();
        if (a.master) {
          target_ = std::move(*a.master);
        } else {
          why = "no sentinel names the master: " + a.why;
        }
      }
      if (state_ == state::stopped) break;
      if (why.empty()) {
        arm_connect_timer(c);
        why = co_await c->link.connect(target_);
        if (!c->reason.empty()) why = c->reason;
      }
      if (why.empty()) {
        send_handshake(c);
        why = co_await serve(c);
      }
      close(*c, why);
      connect_timer_.cancel();
      conn_.reset();
      if (state_ == state::stopped || !refused_.empty()) break;
      state_ = state::idle;
      fail_all("redis connection lost");
      // One warning per outage, not one per attempt: the info line in became_up() closes it.
      if (c->up) {
        spdlog::warn("redis {}: connection lost: {}", where(), c->reason);
        down_since_ = clock_type::now();
        outage_reported_ = true;
        backoff = backoff_first;
      } else if (!outage_reported_) {
        spdlog::warn("redis {}: cannot connect: {}", where(), c->reason);
        down_since_ = clock_type::now();
        outage_reported_ = true;
      }
      retry_timer_.expires_after(backoff);
      co_await retry_timer_.async_wait(asio::as_tuple(asio::use_awaitable));
      backoff = std::min<std::chrono::milliseconds>(backoff * 2, backoff_cap);
    }
  }

  void arm_connect_timer(const std::shared_ptr<connection>& c) {
    // Covers resolve, connect and handshake: a paused Redis accepts connections into its backlog and then
    // answers nothing.
    connect_timer_.expires_after(stall_limit_);
    connect_timer_.async_wait([self = shared_from_this(), c](boost::system::error_code ec) {
      if (!ec && !c->up) self->close(*c, "connect timeout");
    });
  }

  void send_handshake(const std::shared_ptr<connection>& c) {
    const auto now = clock_type::now();
    if (!opts_.password.empty()) {
      if (opts_.username.empty()) {
        append_command(c->out, {"AUTH", opts_.password});
      } else {
        append_command(c->out, {"AUTH", opts_.username, opts_.password});
      }
      c->wire.push_back({slot_kind::auth, 0, now});
    }
    if (opts_.db != 0) {
      append_command(c->out, {"SELECT", std::to_string(opts_.db)});
      c->wire.push_back({slot_kind::select, 0, now});
    }
    // A Cluster node is refused (redis_store.hpp); INFO's section is there on every server, clustered or not.
    append_command(c->out, {"INFO", "cluster"});
    c->wire.push_back({slot_kind::cluster_info, 0, now});
    if (sentinel_) {
      // The sentinels' answer may be stale (a failover in progress): only a master gets checks.
      append_command(c->out, {"ROLE"});
      c->wire.push_back({slot_kind::role, 0, now});
    }
    append_command(c->out, {"FUNCTION", "LOAD", check_library()});
    c->wire.push_back({slot_kind::function_load, 0, now});
    for (std::size_t i = 0; i < script_count; ++i) {
      append_command(c->out, {"SCRIPT", "LOAD", script_text(i)});
      c->wire.push_back({slot_kind::script_load, i, now});
    }
    start_write(c);
  }

  void became_up(connection& c) {
    c.up = true;
    state_ = state::connected;
    connect_timer_.cancel();
    if (outage_reported_) {
      const auto down = std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - down_since_);
      spdlog::info("redis {}: connection restored after {} ms", where(), down.count());
      outage_reported_ = false;
    } else {
      spdlog::info("redis {}: connected", where());
    }
  }

  // Reads until the connection fails or is closed; returns why.
  asio::awaitable<std::string> serve(std::shared_ptr<connection> c) {
    std::array<char, 16 * 1024> buf;
    for (;;) {
      auto [ec, n] = co_await c->link.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
      if (!c->reason.empty()) co_return c->reason;
      if (ec) co_return redis_link::closed_by_peer(ec) ? std::string("closed by server") : ec.message();
      if (redisReaderFeed(c->reader.get(), buf.data(), n) != REDIS_OK) {
        co_return to_redis_error("read", c->reader.get(), nullptr).text;
      }
      for (;;) {
        void* raw = nullptr;
        if (redisReaderGetReply(c->reader.get(), &raw) != REDIS_OK) {
          co_return to_redis_error("read", c->reader.get(), nullptr).text;
        }
        if (raw == nullptr) break;
        on_reply(c, reply_ptr(static_cast<redisReply*>(raw)));
        // A completion handler may have stopped the store, or the reply may have been fatal.
        if (!c->reason.empty()) co_return c->reason;
      }
    }
  }

  // Closing makes the pending read complete, and serve() returns; `reason` is what the warning says.
  void close(connection& c, std::string_view reason) {
    if (c.reason.empty()) c.reason = reason.empty() ? "closed" : std::string(reason);
    c.link.close();
    if (&c == conn_.get() && state_ != state::stopped) {
      state_ = state::idle;
      fail_all("redis connection lost");
    }
  }

  // --- requests --------------------------------------------------------------------------------------------

  void send_check(connection& c, std::uint64_t id, const store_request& req) {
    append_check_call(c.out, check_function(), req, opts_.key_prefix, &layouts_);
    c.wire.push_back({slot_kind::check, id, clock_type::now()});
  }

  void start_write(const std::shared_ptr<connection>& c) {
    if (c->write_busy || c->out.empty() || !c->reason.empty()) return;
    c->write_busy = true;
    // Everything queued while the previous write was in flight goes out in this one write.
    std::swap(c->writing, c->out);
    c->link.async_write(asio::buffer(c->writing),
                      [self = shared_from_this(), c](boost::system::error_code ec, std::size_t) {
                        c->write_busy = false;
                        c->writing.clear();
                        if (ec) return self->close(*c, "write: " + ec.message());
                        self->start_write(c);
                      });
  }

  void on_reply(const std::shared_ptr<connection>& c, reply_ptr reply) {
    if (c->wire.empty()) return close(*c, "reply without a request");
    const wire_slot slot = c->wire.front();
    c->wire.pop_front();
    switch (slot.kind) {
      case slot_kind::auth:
      case slot_kind::select:
        if (reply->type == REDIS_REPLY_ERROR) {
          close(*c, to_redis_error(slot.kind == slot_kind::auth ? "AUTH" : "SELECT", nullptr, reply.get()).text);
        }
        return;
      case slot_kind::cluster_info:
        if (reply->type == REDIS_REPLY_STRING && as_view(*reply).find("cluster_enabled:1") != std::string_view::npos) {
          refused_ = fmt::format(
              "redis {}: is a Redis Cluster node (cluster_enabled:1), which rateguard does not support: one check "
              "is one atomic script over all the request's identities, and a Cluster runs a script only when all "
              "its keys are in one hash slot; point redis at a standalone server or use sentinels",
              where());
          spdlog::critical("{}", refused_);
          close(*c, refused_);
        }
        return;  // an error (a server without INFO cluster) is no cluster
      case slot_kind::role: {
        const bool named = reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 &&
                           reply->element[0]->type == REDIS_REPLY_STRING;
        const std::string role = named ? escape_log_value(as_view(*reply->element[0]), 40) : "unexpected reply";
        if (role == "master") return;
        return close(*c, fmt::format("{}:{} is not the master (ROLE: {}); asking the sentinels again", target_.host,
                                     target_.port, role));
      }
      case slot_kind::function_load:
        return on_function_load(*c, *reply);
      case slot_kind::script_load:
        if (reply->type != REDIS_REPLY_STRING) return close(*c, to_redis_error("SCRIPT LOAD", nullptr, reply.get()).text);
        shas_[slot.id].assign(reply->str, reply->len);
        if (!c->up && slot.id == script_count - 1) became_up(*c);
        return;
      case slot_kind::admin:
        return on_admin_reply(c, slot.id, *reply);
      case slot_kind::check:
        break;
    }
    call* const it = calls_.find(slot.id);
    if (it == nullptr) return;  // timed out already: the late reply is dropped
    if (reply->type == REDIS_REPLY_ERROR && !it->reloaded &&
        to_redis_error("FCALL", nullptr, reply.get()).code == redis_errc::no_function) {
      // The function did not run (a FUNCTION FLUSH, or a restart without persistence), so sending the call
      // again behind a FUNCTION LOAD on the same connection is side-effect free.
      it->reloaded = true;
      if (!reloading_) {
        reloading_ = true;
        append_command(c->out, {"FUNCTION", "LOAD", check_library()});
        c->wire.push_back({slot_kind::function_load, 0, clock_type::now()});
      }
      send_check(*c, slot.id, it->req);
      return start_write(c);
    }
    const bool not_master = reply->type == REDIS_REPLY_ERROR &&
                            to_redis_error("FCALL", nullptr, reply.get()).code == redis_errc::not_master;
    auto done = std::move(it->done);
    auto result = parse_check_reply(*reply, it->req);
    calls_.erase(slot.id);  // before invoking: the handler may issue the next request
    // A demoted master (READONLY) or one cut off from its replicas (NOREPLICAS): with sentinels, reconnect to
    // whichever they name now; this call failed and charged nothing (the script stops at its first write).
    if (not_master && sentinel_) close(*c, result.error);
    // Called directly, not through complete_now's asio::dispatch: this runs inside serve() on our executor,
    // the only one (see the top of the file), where dispatch would run the handler inline anyway, but only
    // after wrapping it twice in type-erased executor functions (allocations and moves of the result).
    std::move(done)(std::move(result));
  }

  // FUNCTION LOAD's answer: the library's name, or "already exists" (loaded by another node or an earlier
  // connection: the name carries the code's hash, so it is this code). A replica refuses it (READONLY) and its
  // checks are answered READONLY, as without it; a Redis older than 7.0 has no functions, which is final.
  void on_function_load(connection& c, const redisReply& reply) {
    reloading_ = false;
    if (reply.type == REDIS_REPLY_STRING) return;
    const auto e = to_redis_error("FUNCTION LOAD", nullptr, &reply);
    if (reply.type == REDIS_REPLY_ERROR &&
        (as_view(reply).find("already exists") != std::string_view::npos || e.code == redis_errc::not_master)) {
      return;
    }
    if (reply.type == REDIS_REPLY_ERROR && as_view(reply).starts_with("ERR unknown command")) {
      refused_ = fmt::format("redis {}: has no FUNCTION command: rateguard needs Redis 7.0 or later ({})", where(),
                             e.text);
      spdlog::critical("{}", refused_);
    }
    close(c, e.text);
  }

  // --- operator commands -----------------------------------------------------------------------------------

  // --- operator commands: the commands and their replies are redis_admin's; here they go on the wire -----

  void send_admin(connection& c, std::uint64_t id, admin_call& a, admin_cmd cmd) {
    if (cmd.script < script_count) {
      append_array_header(c.out, 2 + cmd.args.size());
      append_bulk(c.out, cmd.eval_sent ? std::string_view("EVAL") : std::string_view("EVALSHA"));
      append_bulk(c.out, cmd.eval_sent ? script_text(cmd.script) : std::string_view(shas_[cmd.script]));
    } else {
      append_array_header(c.out, cmd.args.size());
    }
    for (const auto& arg : cmd.args) append_bulk(c.out, arg);
    c.wire.push_back({slot_kind::admin, id, clock_type::now()});
    a.sent.push_back(std::move(cmd));
  }

  void admin_begin(connection& c, std::uint64_t id, admin_call& a) {
    for (auto& cmd : admin_first(a.state, admin_keys_)) send_admin(c, id, a, std::move(cmd));
  }

  void on_admin_reply(const std::shared_ptr<connection>& c, std::uint64_t id, const redisReply& reply) {
    const auto it = admins_.find(id);
    if (it == admins_.end()) return;  // timed out already: the late reply is dropped
    admin_call& a = it->second;
    if (a.sent.empty()) return close(*c, "reply without a request");
    admin_cmd cmd = std::move(a.sent.front());
    a.sent.pop_front();
    const std::string_view context = cmd.script < script_count ? std::string_view("EVALSHA") : std::string_view(cmd.args[0]);
    if (reply.type == REDIS_REPLY_ERROR) {
      if (cmd.script < script_count && !cmd.eval_sent && to_redis_error(context, nullptr, &reply).code == redis_errc::noscript) {
        // As for the check: the script did not run, so EVAL is side-effect free; reload it for the next ones.
        const auto script = cmd.script;
        cmd.eval_sent = true;
        send_admin(*c, id, a, std::move(cmd));
        append_command(c->out, {"SCRIPT", "LOAD", script_text(script)});
        c->wire.push_back({slot_kind::script_load, script, clock_type::now()});
        return start_write(c);
      }
      a.state.result.error = "redis error: " + to_redis_error(context, nullptr, &reply).text;
      return finish_admin(it);
    }
    std::vector<admin_cmd> next;
    if (!admin_take(a.state, cmd, reply, admin_keys_, next)) {
      if (a.state.result.error.empty()) a.state.result.error = fmt::format("redis: unexpected reply to {}", context);
      return finish_admin(it);
    }
    for (auto& n : next) send_admin(*c, id, a, std::move(n));
    if (a.sent.empty()) return finish_admin(it);
    start_write(c);
  }

  void finish_admin(std::map<std::uint64_t, admin_call>::iterator it) {
    auto done = std::move(it->second.done);
    admin_finish(it->second.state);
    auto result = std::move(it->second.state.result);
    result.ok = result.error.empty();
    if (!result.ok) {
      result.identities.clear();
      result.holds.clear();
      result.changed = result.truncated = false;
    }
    admins_.erase(it);  // its commands still on the wire find no state: their replies are dropped
    complete_now(std::move(done), std::move(result));
  }

  // --- deadlines -------------------------------------------------------------------------------------------

  // Check deadlines are pushed in time order (same timeout for all), so one timer set to the earliest
  // suffices; the few operator commands in flight are looked at one by one.
  void arm_deadline_timer() {
    while (!timeouts_.empty() && !calls_.contains(timeouts_.front().second)) timeouts_.pop_front();
    std::optional<clock_type::time_point> next;
    if (!timeouts_.empty()) next = timeouts_.front().first;
    for (const auto& [id, a] : admins_)
      if (!next || a.deadline < *next) next = a.deadline;
    if (conn_ && conn_->up && !conn_->wire.empty()) {
      const auto stall_at = conn_->wire.front().sent + stall_limit_;
      if (!next || stall_at < *next) next = stall_at;
    }
    if (!next || state_ == state::stopped) return;
    if (deadline_armed_ && deadline_timer_.expiry() <= *next) return;
    deadline_armed_ = true;
    deadline_timer_.expires_at(*next);
    deadline_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec == asio::error::operation_aborted) return;  // re-armed earlier, or stopped
      self->deadline_armed_ = false;
      self->on_deadline();
    });
  }

  void on_deadline() {
    const auto now = clock_type::now();
    while (!timeouts_.empty() && timeouts_.front().first <= now) {
      const auto id = timeouts_.front().second;
      timeouts_.pop_front();
      call* const it = calls_.find(id);
      if (it == nullptr) continue;
      verify_master();
      auto done = std::move(it->done);
      calls_.erase(id);  // its wire slot stays: the reply still comes, in order, and is dropped
      complete_now(std::move(done), failure("redis timeout"));
    }
    std::vector<std::uint64_t> late;  // first collected: a handler may stop the store and empty admins_
    for (const auto& [id, a] : admins_)
      if (a.deadline <= now) late.push_back(id);
    for (const auto id : late) {
      const auto it = admins_.find(id);
      if (it == admins_.end()) continue;
      it->second.state.result.error = "redis timeout";
      finish_admin(it);
    }
    if (conn_ && conn_->up && !conn_->wire.empty() && now - conn_->wire.front().sent >= stall_limit_) {
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(stall_limit_).count();
      close(*conn_, fmt::format("no reply for {} ms", ms));
    }
    arm_deadline_timer();
  }

  // --- where and why ---------------------------------------------------------------------------------------

  // The log's name for the server: the address, or with sentinels the master's name and where it is now.
  std::string where() const {
    if (!sentinel_ || target_.host.empty()) return where_;
    return fmt::format("{} at {}:{}", where_, target_.host, target_.port);
  }

  std::string not_connected() const {
    if (state_ == state::stopped) return "redis store stopped";
    return refused_.empty() ? "redis not connected" : refused_;
  }

  // With sentinels, a check that timed out may mean the master is gone or hung: ask them (once at a time)
  // and drop the connection if they name another server, rather than wait for the connection's stall limit.
  void verify_master() {
    if (!sentinel_ || verifying_ || !conn_ || !conn_->up) return;
    verifying_ = true;
    asio::co_spawn(ex_, ask_sentinels_again(shared_from_this(), conn_), asio::detached);
  }
  asio::awaitable<void> ask_sentinels_again(std::shared_ptr<impl>, std::shared_ptr<connection> c) {
    const endpoint was = target_;
    auto a = co_await sentinel_->ask();
    verifying_ = false;
    if (a.master && (a.master->host != was.host || a.master->port != was.port) && c == conn_ && c->reason.empty())
      close(*c, fmt::format("the sentinels name {}:{} as the master now", a.master->host, a.master->port));
  }

  // --- completion ------------------------------------------------------------------------------------------

  // From initiation: never inline (the caller is still inside async_check / async_admin).
  void complete_later(handler_type done, std::string error) {
    // Posted to our executor, then run on the handler's own associated executor (ours if it has none).
    asio::post(ex_, asio::append(std::move(done), failure(std::move(error))));
  }
  void complete_later(admin_handler done, std::string error) {
    asio::post(ex_, asio::append(std::move(done), admin_failure(std::move(error))));
  }

  // From our own completion: inline when already on the handler's executor. Callers have removed the call's
  // state first, so the handler may re-enter the store.
  template <typename Handler, typename Result>
  void complete_now(Handler done, Result r) {
    asio::dispatch(ex_, asio::append(std::move(done), std::move(r)));
  }

  void fail_all(std::string_view error) {
    auto doomed = std::exchange(calls_, id_queue<call>{});
    auto doomed_admins = std::exchange(admins_, {});
    timeouts_.clear();
    if (conn_) {
      conn_->out.clear();
      conn_->wire.clear();
    }
    doomed.for_each([&](call& c) { complete_now(std::move(c.done), failure(std::string(error))); });
    for (auto& [id, a] : doomed_admins) complete_now(std::move(a.done), admin_failure(std::string(error)));
  }

  asio::any_io_executor ex_;
  redis_options opts_;
  check_layouts layouts_;  // the layouts of the last checks, written once each
  std::shared_ptr<asio::ssl::context> tls_;  // null: plain text
  std::optional<sentinel_resolver> sentinel_;
  std::string where_;    // the log's name for the server (where())
  std::string refused_;  // refused() (a Cluster node): no more reconnects
  bool verifying_ = false;
  admin_keys admin_keys_;  // from opts_: where the operator commands find the data
  endpoint target_;  // with sentinels: the master they named last
  clock_type::duration stall_limit_;  // the oldest request unanswered this long: drop the connection
  // Deadline of top and journal_read, which take several round trips (SCAN steps, pages): max(5 s, 10 x
  // timeout). The other operator commands have the check's `timeout`.
  clock_type::duration long_timeout_;
  asio::steady_timer deadline_timer_;
  asio::steady_timer connect_timer_;
  asio::steady_timer retry_timer_;
  bool deadline_armed_ = false;
  bool started_ = false;
  state state_ = state::idle;
  std::shared_ptr<connection> conn_;
  std::array<std::string, script_count> shas_;
  bool reloading_ = false;
  bool outage_reported_ = false;
  clock_type::time_point down_since_{};
  std::uint64_t next_id_ = 1;
  id_queue<call> calls_;  // the checks in flight, by id
  std::map<std::uint64_t, admin_call> admins_;
  std::deque<std::pair<clock_type::time_point, std::uint64_t>> timeouts_;
};

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

redis_store::redis_store(boost::asio::any_io_executor ex, redis_options opts)
    : impl_(std::make_shared<impl>(std::move(ex), std::move(opts))) {}

redis_store::~redis_store() { impl_->stop(); }

void redis_store::start() { impl_->start(); }
void redis_store::stop() { impl_->stop(); }
bool redis_store::connected() const { return impl_->connected(); }
const std::string& redis_store::refused() const { return impl_->refused(); }
std::string_view redis_store::lua_script() { return check_library(); }
std::string_view redis_store::lua_function() { return check_function(); }

void redis_store::start_check(store_request req, boost::asio::any_completion_handler<void(store_result)> done) {
  impl_->check(std::move(req), std::move(done));
}

void redis_store::start_admin(admin_request req, boost::asio::any_completion_handler<void(admin_result)> done) {
  impl_->admin(std::move(req), std::move(done));
}

}  // namespace rg
