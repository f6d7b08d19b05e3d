// The policy service (common/service) with the in-process store, an injected clock and the log captured in
// an spdlog sink: locks set by a tripped hold rule (logged once), messages held by the lock, one hold
// journal record per held message with the queue ID learned later, dry-run, store failure, and the
// rate-limited warning helper.
#include <catch2/catch.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <algorithm>
#include <optional>
#include <sstream>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "daemon_fixture.hpp"
#include "memory_store.hpp"
#include "policy_requests.hpp"
#include "policy_service.hpp"
#include "rate_limited_warning.hpp"

using namespace rg;
namespace asio = boost::asio;

namespace {

constexpr std::int64_t hour_ms = 3600 * 1000;

std::shared_ptr<const policy_snapshot> snapshot(const std::string& limits, run_mode mode = run_mode::enforce,
                                                store_error_action on_error = store_error_action::dunno) {
  auto parsed = parse_limits(limits, "limits.conf");
  REQUIRE(parsed.rules);
  engine_settings settings;
  settings.mode = mode;
  settings.on_store_error = on_error;
  settings.lock_time = std::chrono::hours(24);
  return std::make_shared<policy_snapshot>(make_snapshot(std::move(*parsed.rules), settings));
}

// Each user sends as user@example.com.
policy_request rcpt(const std::string& user, const std::string& instance, const std::string& queue_id = "") {
  return test::rcpt(user, instance, queue_id, "127.0.0.1", user + "@example.com");
}

// The default logger's lines ("LEVEL TEXT") while it lives; the previous logger afterwards.
struct log_capture {
  std::ostringstream out;
  std::shared_ptr<spdlog::logger> previous = spdlog::default_logger();
  log_capture() {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
    sink->set_pattern("%l %v");
    auto logger = std::make_shared<spdlog::logger>("test", sink);
    logger->set_level(spdlog::level::info);
    spdlog::set_default_logger(logger);
  }
  ~log_capture() { spdlog::set_default_logger(previous); }
  std::vector<std::string> lines(const std::string& containing = "") const {
    std::vector<std::string> v;
    std::istringstream in(out.str());
    for (std::string l; std::getline(in, l);)
      if (l.find(containing) != std::string::npos) v.push_back(l);
    return v;
  }
};

// Answers every check and command with a failure, as a Redis that is down does.
class failing_store final : public store {
 public:
  std::string name() const override { return "failing"; }

 protected:
  void start_check(store_request, asio::any_completion_handler<void(store_result)> done) override {
    store_result r;
    r.error = "redis timeout";
    std::move(done)(std::move(r));
  }
  void start_admin(admin_request, asio::any_completion_handler<void(admin_result)> done) override {
    admin_result r;
    r.error = "redis timeout";
    std::move(done)(std::move(r));
  }
};

struct harness {
  std::int64_t now = 1'000'000'000'000;  // store and service clock, ms
  log_capture log;
  asio::io_context io;
  memory_store mem{1000000, [this] { return now; }, {}, io.get_executor()};
  policy_service service;

  explicit harness(std::shared_ptr<const policy_snapshot> snap, store* st = nullptr)
      : service(io.get_executor(), st ? *st : mem, std::move(snap), settings()) {}
  std::vector<lock_event> locks;  // what the notifier was given
  service_settings settings() {
    service_settings s;
    s.clock = [this] { return now; };
    s.on_lock = [this](const lock_event& e) { locks.push_back(e); };
    return s;
  }

  // Decides one request as a front does (a coroutine awaiting the service; with at_once, as a front does with a
  // store that answers at once), then lets the journal writes run.
  bool at_once = false;
  verdict ask(message_tracker& t, const policy_request& r) {
    std::optional<verdict> v;
    if (at_once) {
      REQUIRE(service.decides_at_once());
      v = service.decide_at_once(t, r);
    } else {
      asio::co_spawn(io, [&]() -> asio::awaitable<void> { v = co_await service.decide(t, r); },
                     [](std::exception_ptr e) { if (e) std::rethrow_exception(e); });
    }
    io.restart();
    io.run();
    REQUIRE(v);
    return *v;
  }
  void end(message_tracker& t) {
    service.end_connection(t);
    io.restart();
    io.run();
  }
  std::vector<hold_record> journal() {
    admin_request q;
    q.op = admin_op::journal_read;
    q.limit = 100;
    return mem.admin(q).holds;
  }
  std::optional<lock_info> lock_of(const std::string& identity) {
    admin_request q;
    q.op = admin_op::status;
    q.identity = identity;
    auto res = mem.admin(q);
    REQUIRE(res.ok);
    REQUIRE(res.identities.size() == 1);
    return res.identities[0].lock;
  }
};

}  // namespace

TEST_CASE("a tripped hold rule locks its key once - later messages of the key are held by the lock", "[service][lock]") {
  harness h(snapshot("sasl_username * 2/1h hold\n"));
  h.at_once = GENERATE(false, true);  // awaited, and decided at once (the memory store)
  INFO("at once: " << h.at_once);
  message_tracker t;
  CHECK(h.ask(t, rcpt("alice", "m1")).reply == "DUNNO");
  CHECK(h.ask(t, rcpt("alice", "m2")).reply == "DUNNO");
  CHECK_FALSE(h.lock_of("u:alice"));

  // The third message trips the rule: held, and the key is locked before the answer.
  const verdict tripped = h.ask(t, rcpt("alice", "m3"));
  CHECK(tripped.act == action::hold);
  CHECK(tripped.reply.rfind("HOLD ", 0) == 0);
  CHECK(tripped.set_lock_ms == 24 * hour_ms);
  auto lock = h.lock_of("u:alice");
  REQUIRE(lock);
  CHECK(lock->until_ms == h.now + 24 * hour_ms);
  CHECK(lock->reason == "limits.conf:1 3 messages in 1h, limit 2");
  auto locks = h.log.lines(": lock: ");
  REQUIRE(locks.size() == 1);
  CHECK(locks[0].rfind("info NOQUEUE: lock: key=sasl_username:alice rule=limits.conf:1 until=", 0) == 0);
  CHECK(h.log.lines("info NOQUEUE: hold: key=sasl_username:alice rule=limits.conf:1 ").size() == 1);

  // The message's second RCPT brings the queue ID: the hold is logged again under it, queue ID first.
  CHECK(h.ask(t, rcpt("alice", "m3", "4F2A1B3C")).act == action::hold);
  CHECK(h.log.lines("info 4F2A1B3C: hold: ").size() == 1);

  // Two hours later the rate is fine again, but the lock still holds the key's messages.
  h.now += 2 * hour_ms;
  const verdict locked = h.ask(t, rcpt("alice", "m4"));  // also finishes m3
  CHECK(locked.act == action::hold);
  CHECK(locked.lock_key == "sasl_username:alice");
  CHECK(locked.set_lock_ms == 0);
  CHECK(h.ask(t, rcpt("alice", "m5")).act == action::hold);  // finishes m4
  CHECK(h.log.lines(": lock: ").size() == 1);                 // the lock is logged once

  // Another key is not affected.
  CHECK(h.ask(t, rcpt("bob", "m6")).reply == "DUNNO");  // finishes m5

  // One journal record per held message, each written once the message is finished.
  auto recs = h.journal();
  REQUIRE(recs.size() == 3);
  CHECK(recs[0].instance == "m3");
  CHECK(recs[0].queue_id == "4F2A1B3C");  // learned from the later RCPT
  CHECK(recs[0].key == "sasl_username:alice");
  CHECK(recs[0].rule == "limits.conf:1");
  CHECK(recs[0].reason == "3 messages in 1h, limit 2");
  CHECK(recs[0].recipients == 2);
  CHECK(recs[1].instance == "m4");
  CHECK(recs[1].queue_id.empty());
  CHECK(recs[1].reason == "locked: limits.conf:1 3 messages in 1h, limit 2");
  CHECK(recs[2].instance == "m5");
  CHECK(h.service.journal_pending() == 0);
  CHECK(h.service.requests() == 7);
  CHECK(h.service.rcpt_requests() == 7);
}

TEST_CASE("the end of a connection journals the held message in progress", "[service][journal]") {
  harness h(snapshot("sasl_username * 1/1h hold\n"));
  h.at_once = GENERATE(false, true);
  message_tracker t;
  h.ask(t, rcpt("alice", "m1"));
  REQUIRE(h.ask(t, rcpt("alice", "m2")).act == action::hold);
  CHECK(h.journal().empty());  // m2 is not finished yet
  h.end(t);
  auto recs = h.journal();
  REQUIRE(recs.size() == 1);
  CHECK(recs[0].instance == "m2");
  CHECK(recs[0].queue_id.empty());
  h.end(t);  // nothing more
  CHECK(h.journal().size() == 1);
}

TEST_CASE("dry-run logs what would happen but neither holds nor locks nor journals", "[service][lock]") {
  harness h(snapshot("sasl_username * 1/1h hold\n", run_mode::dry_run));
  message_tracker t;
  CHECK(h.ask(t, rcpt("alice", "m1")).reply == "DUNNO");
  const verdict v = h.ask(t, rcpt("alice", "m2"));
  CHECK(v.reply == "DUNNO");
  CHECK(v.act == action::hold);
  CHECK(v.set_lock_ms == 0);
  CHECK(h.log.lines("info NOQUEUE: would-hold: key=sasl_username:alice rule=limits.conf:1 ").size() == 1);
  CHECK(h.log.lines(": lock: ").empty());
  CHECK_FALSE(h.lock_of("u:alice"));
  h.end(t);
  CHECK(h.journal().empty());
}

TEST_CASE("a store failure answers with on_store_error and warns at most once a second", "[service]") {
  for (auto action : {store_error_action::dunno, store_error_action::defer}) {
    failing_store broken;
    harness h(snapshot("sasl_username * 1/1h hold\n", run_mode::enforce, action), &broken);
    CHECK_FALSE(h.service.decides_at_once());  // a store with I/O is always awaited
    message_tracker t;
    const verdict v = h.ask(t, rcpt("alice", "m1"));
    CHECK(v.store_failed);
    if (action == store_error_action::dunno)
      CHECK(v.reply == "DUNNO");
    else
      CHECK(v.reply.rfind("451 4.3.0 ", 0) == 0);
    CHECK(h.ask(t, rcpt("alice", "m2")).store_failed);
    auto warnings = h.log.lines("warning NOQUEUE: store-error: ");
    REQUIRE(warnings.size() == 1);  // the second one falls in the same second
    CHECK(warnings[0].find("error=\"redis timeout\"") != std::string::npos);
    CHECK(h.log.lines(": lock: ").empty());
  }
}

TEST_CASE("a failed lock is a rate-limited warning, and the message is still held", "[service][lock]") {
  // The store counts but refuses the lock command: like the memory store, except for admin commands.
  class no_admin_store final : public store {
   public:
    memory_store mem{1000000, [] { return std::int64_t{1'000'000'000'000}; }};
    std::string name() const override { return "no-admin"; }

   protected:
    void start_check(store_request req, asio::any_completion_handler<void(store_result)> done) override {
      std::move(done)(mem.check(req));
    }
    void start_admin(admin_request, asio::any_completion_handler<void(admin_result)> done) override {
      admin_result r;
      r.error = "READONLY";
      std::move(done)(std::move(r));
    }
  };
  no_admin_store st;
  harness h(snapshot("sasl_username * 1/1h hold\n"), &st);
  message_tracker t;
  h.ask(t, rcpt("alice", "m1"));
  CHECK(h.ask(t, rcpt("alice", "m2")).act == action::hold);
  CHECK(h.log.lines("warning cannot lock sasl_username:alice: READONLY").size() == 1);
  h.end(t);  // the journal write fails too: one warning
  CHECK(h.log.lines("warning hold journal: cannot record NOQUEUE: READONLY").size() == 1);
  CHECK(h.service.journal_pending() == 0);
}

namespace {

// A policy connection as policyd/server.cpp runs it: reads of `chunk` bytes into one buffer that each read
// overwrites, the parser's views into it (or into its copy of a request split across reads), and one decision
// awaited per request, while other connections run. The buffer is overwritten again when the stream ends.
asio::awaitable<void> serve_stream(policy_service& service, message_tracker& t, const std::string& stream,
                                   std::size_t chunk, std::vector<verdict>& out) {
  request_parser parser;
  std::vector<char> buf(chunk);
  for (std::size_t off = 0; off < stream.size(); off += chunk) {
    const std::size_t n = std::min(chunk, stream.size() - off);
    std::fill(buf.begin(), buf.end(), '#');
    std::copy_n(stream.data() + off, n, buf.begin());
    std::string_view data(buf.data(), n);
    while (!data.empty()) {
      const parse_result r = parser.feed(data);
      if (r.status == parse_status::error) throw std::runtime_error("parse error: " + parser.error());
      data.remove_prefix(r.consumed);
      if (r.status == parse_status::need_more) break;
      out.push_back(co_await service.decide(t, parser.request()));
      parser.next();
    }
  }
  std::fill(buf.begin(), buf.end(), '#');
}

}  // namespace

TEST_CASE("request values are views of the read buffer: valid across the awaited check, copied where kept",
          "[service][protocol]") {
  // Two connections at once, each in reads of a few bytes (requests split across reads) or in one read
  // (pipelined requests): every decision log line, lock notice and journal record must carry its own
  // request's values, after the buffers have been overwritten, and a later RCPT of a message must still be
  // known as the same message (the tracker keeps its own copy of the instance).
  for (const std::size_t chunk : {std::size_t{7}, std::size_t{64}, std::size_t{100000}}) {
    DYNAMIC_SECTION("reads of " << chunk << " bytes") {
      harness h(snapshot("sasl_username * 1/1h hold\n"));
      struct connection {
        std::string user, client;
        std::string stream;
        message_tracker t;
        std::vector<verdict> verdicts;
      };
      connection conns[2] = {{"alice", "127.0.0.2", {}, {}, {}}, {"bob", "127.0.0.3", {}, {}, {}}};
      for (connection& c : conns) {
        const std::string sender = c.user + "@example.com";
        c.stream = test::rcpt_request(c.user, c.user + "-m1", "", c.client, sender) +       // counted: DUNNO
                   test::rcpt_request(c.user, c.user + "-m2", "", c.client, sender) +       // trips: held, locked
                   test::rcpt_request(c.user, c.user + "-m2", "Q" + c.user + "2", c.client, sender) +  // same message
                   test::rcpt_request(c.user, c.user + "-m3", "Q" + c.user + "3", c.client, sender);   // held by the lock
      }
      for (connection& c : conns)
        asio::co_spawn(h.io, serve_stream(h.service, c.t, c.stream, chunk, c.verdicts),
                       [](std::exception_ptr e) { if (e) std::rethrow_exception(e); });
      h.io.run();
      for (connection& c : conns) h.end(c.t);

      for (const connection& c : conns) {
        CAPTURE(c.user);
        REQUIRE(c.verdicts.size() == 4);
        CHECK(c.verdicts[0].act == action::none);
        CHECK(c.verdicts[1].act == action::hold);
        CHECK_FALSE(c.verdicts[1].repeated);
        CHECK(c.verdicts[2].act == action::hold);
        CHECK(c.verdicts[2].repeated);  // the tracker knew the instance after its request's buffer was reused
        CHECK(c.verdicts[3].act == action::hold);
        CHECK(c.verdicts[3].lock);

        // Lines formatted while the request was alive, after its store check was awaited.
        const auto lines = h.log.lines("sasl_username=" + c.user + " ");
        CHECK(lines.size() == 4);  // the lock, the tripped hold, the queue ID of m2, m3 held by the lock
        for (const std::string& l : lines) {
          CAPTURE(l);
          CHECK(l.find("client=" + c.client + " ") != std::string::npos);
          CHECK(l.find("sender=<" + c.user + "@example.com>") != std::string::npos);
          CHECK(l.find('#') == std::string::npos);
        }
        CHECK(h.log.lines("Q" + c.user + "2: hold: ").size() == 1);
        CHECK(h.log.lines("Q" + c.user + "3: hold: ").size() == 1);

        // Kept beyond the request: the lock notice and the journal records.
        const auto lock = std::find_if(h.locks.begin(), h.locks.end(),
                                       [&](const lock_event& e) { return e.key == "sasl_username:" + c.user; });
        REQUIRE(lock != h.locks.end());
        CHECK(lock->client == c.client);
        CHECK(lock->sender == c.user + "@example.com");
        CHECK(lock->queue_id.empty());  // the first RCPT of m2
      }
      CHECK(h.locks.size() == 2);
      auto recs = h.journal();
      REQUIRE(recs.size() == 4);  // m2 and m3 of each connection
      std::sort(recs.begin(), recs.end(), [](const hold_record& a, const hold_record& b) { return a.instance < b.instance; });
      const char* const instances[] = {"alice-m2", "alice-m3", "bob-m2", "bob-m3"};
      for (std::size_t i = 0; i < 4; ++i) {
        CAPTURE(i);
        const std::string user = i < 2 ? "alice" : "bob";
        CHECK(recs[i].instance == instances[i]);
        CHECK(recs[i].queue_id == "Q" + user + (i % 2 == 0 ? "2" : "3"));
        CHECK(recs[i].client == (i < 2 ? "127.0.0.2" : "127.0.0.3"));
        CHECK(recs[i].sender == user + "@example.com");
      }
    }
  }
}

TEST_CASE("rate_limited_warning allows one line per interval and counts the others", "[service]") {
  using namespace std::chrono_literals;
  rate_limited_warning w(1s);
  const auto t0 = rate_limited_warning::clock::time_point{} + 5s;
  CHECK(w.ready(t0));
  CHECK(w.suppressed() == 0);
  CHECK_FALSE(w.ready(t0 + 500ms));
  CHECK_FALSE(w.ready(t0 + 999ms));
  CHECK(w.ready(t0 + 1s));
  CHECK(w.suppressed() == 2);
  CHECK(w.ready(t0 + 3s));
  CHECK(w.suppressed() == 0);
  // The first line is allowed whenever it comes, even right after the clock's epoch.
  rate_limited_warning early(10s);
  CHECK(early.ready(rate_limited_warning::clock::time_point{}));
}
