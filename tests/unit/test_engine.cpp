// Engine semantics with an injected clock and the in-process store: bursts, window edges, refusals not
// charged, one message counted once across its RCPTs, whole-message decisions, precedence, dry-run,
// store failure, and the decision log line.
#include <catch2/catch.hpp>

#include "decision_log.hpp"
#include "engine.hpp"
#include "memory_store.hpp"

using namespace rg;

namespace {

policy_snapshot snapshot(const std::string& limits, run_mode mode = run_mode::enforce,
                         store_error_action on_error = store_error_action::dunno) {
  auto parsed = parse_limits(limits, "limits.conf");
  INFO(limits);
  for (auto& e : parsed.errors) INFO(e.to_string());
  REQUIRE(parsed.rules);
  policy_snapshot s;
  s.rules = std::move(*parsed.rules);
  s.settings.mode = mode;
  s.settings.on_store_error = on_error;
  return s;
}

policy_request rcpt(const std::string& user, const std::string& instance, const std::string& queue_id = "",
                    const std::string& client = "127.0.0.1", const std::string& sender = "alice@example.com") {
  policy_request r;
  r.set(attr::request) = "smtpd_access_policy";
  r.set(attr::protocol_state) = "RCPT";
  r.set(attr::sasl_username) = user;
  r.set(attr::instance) = instance;
  r.set(attr::queue_id) = queue_id;
  r.set(attr::client_address) = client;
  r.set(attr::sender) = sender;
  r.set(attr::recipient) = "rcpt@example.net";
  return r;
}

struct harness {
  explicit harness(policy_snapshot s) : snap(std::move(s)) {}
  policy_snapshot snap;
  memory_store store{1000000, [] { return std::int64_t{0}; }};
  message_tracker tracker;
  std::int64_t now = 1'000'000'000;  // a multiple of every bucket width used below

  verdict ask(const policy_request& r) {
    auto p = tracker.prepare(snap, r, now);
    if (!p.needs_store) return p.immediate;
    auto res = store.check(p.req);
    return tracker.finish(snap, r, p, res);
  }
  // One single-recipient message, a fresh instance each time.
  verdict message(const std::string& user = "alice") {
    return ask(rcpt(user, "inst." + std::to_string(++serial_)));
  }
  int serial_ = 0;
};

}  // namespace

TEST_CASE("a burst of exactly the limit passes - the rest is deferred with a text naming the limit", "[engine]") {
  harness h(snapshot("sasl_username * 100/1h defer\n"));
  int dunno = 0, deferred = 0;
  for (int i = 0; i < 150; ++i) {
    auto v = h.message();
    if (v.reply == "DUNNO") ++dunno;
    else {
      ++deferred;
      CHECK(v.reply.rfind("450 4.7.1 ", 0) == 0);
      CHECK(v.reply.find("100 messages per 1h") != std::string::npos);
      REQUIRE(v.hit);
      CHECK(v.hit->count == 101);
      CHECK(v.hit->rule_where == "limits.conf:1");
      CHECK(v.log);
    }
  }
  CHECK(dunno == 100);
  CHECK(deferred == 50);
}

TEST_CASE("window edges: an event counts for the window plus at most one bucket", "[engine]") {
  harness h(snapshot("sasl_username * 3/1m defer\n"));  // bucket = 5 s
  const auto t0 = h.now;
  for (int i = 0; i < 3; ++i) REQUIRE(h.message().reply == "DUNNO");
  CHECK(h.message().act == action::defer);
  h.now = t0 + 59'999;
  CHECK(h.message().act == action::defer);  // never more than 3 in any 60 s
  h.now = t0 + 60'000 + 4'999;
  CHECK(h.message().act == action::defer);  // still inside the extra bucket
  h.now = t0 + 65'000;
  CHECK(h.message().reply == "DUNNO");
}

TEST_CASE("refused requests are not charged", "[engine]") {
  harness h(snapshot("sasl_username * 2/1m defer\n"));
  const auto t0 = h.now;
  REQUIRE(h.message().reply == "DUNNO");
  REQUIRE(h.message().reply == "DUNNO");
  h.now = t0 + 30'000;
  for (int i = 0; i < 20; ++i) REQUIRE(h.message().act == action::defer);
  // The two accepted at t0 have left the window; the twenty refused at t0+30 s must not count.
  h.now = t0 + 65'000;
  CHECK(h.message().reply == "DUNNO");
  CHECK(h.message().reply == "DUNNO");
  CHECK(h.message().act == action::defer);
}

TEST_CASE("a message is counted once across its RCPTs - recipients are counted per RCPT", "[engine]") {
  harness h(snapshot("sasl_username * 2/1h defer\nsasl_username * rcpt:7/1h defer\n"));
  for (int m = 0; m < 2; ++m)
    for (int r = 0; r < 3; ++r) REQUIRE(h.ask(rcpt("alice", "m" + std::to_string(m))).reply == "DUNNO");
  // Third message: its first RCPT is over the message limit, and so is every later RCPT of it.
  for (int r = 0; r < 3; ++r) {
    auto v = h.ask(rcpt("alice", "m2"));
    CHECK(v.act == action::defer);
    CHECK(v.hit->limit.what == unit::messages);
    CHECK(v.repeated == (r > 0));
  }
  harness k(snapshot("sasl_username * rcpt:5/1h defer\n"));
  int ok = 0;
  for (int r = 0; r < 7; ++r) ok += k.ask(rcpt("bob", "one-message")).reply == "DUNNO";
  CHECK(ok == 5);
}

TEST_CASE("a hold covers the whole message and is logged again once the queue ID is known", "[engine]") {
  harness h(snapshot("sasl_username * 1/1h hold\n"));
  REQUIRE(h.message().reply == "DUNNO");
  auto first = h.ask(rcpt("alice", "held"));
  CHECK(first.act == action::hold);
  CHECK(first.reply.rfind("HOLD ", 0) == 0);
  CHECK(first.log);
  auto second = h.ask(rcpt("alice", "held", "4F2A1B3C"));
  CHECK(second.act == action::hold);
  CHECK(second.log);  // now with the queue ID
  auto third = h.ask(rcpt("alice", "held", "4F2A1B3C"));
  CHECK(third.act == action::hold);
  CHECK_FALSE(third.log);
  auto eom = rcpt("alice", "held", "4F2A1B3C");
  eom.set(attr::protocol_state) = "END-OF-MESSAGE";
  CHECK_FALSE(h.ask(eom).log);
}

TEST_CASE("END-OF-MESSAGE logs a held single-recipient message with its queue ID and counts nothing",
          "[engine]") {
  harness h(snapshot("sasl_username * 1/1h hold\n"));
  REQUIRE(h.message().reply == "DUNNO");
  REQUIRE(h.ask(rcpt("alice", "single")).act == action::hold);
  auto eom = rcpt("alice", "single", "8E891A72062");
  eom.set(attr::protocol_state) = "END-OF-MESSAGE";
  auto v = h.ask(eom);
  CHECK(v.log);
  CHECK(v.act == action::hold);
  auto line = format_decision(v, eom, log_format::text);
  CHECK(line.rfind("8E891A72062: hold: key=sasl_username:alice ", 0) == 0);
  // END-OF-MESSAGE of an ordinary message is not counted: a new user's message still passes its limit.
  auto eom2 = rcpt("carol", "plain", "ABC");
  eom2.set(attr::protocol_state) = "END-OF-MESSAGE";
  for (int i = 0; i < 5; ++i) CHECK(h.ask(eom2).reply == "DUNNO");
  CHECK(h.message("carol").reply == "DUNNO");
}

TEST_CASE("most specific selector wins - none exempts - the most severe exceeded limit decides", "[engine]") {
  harness h(snapshot("sasl_username * 2/1h defer\n"
                     "sasl_username newsletter@example.com 5/1h defer\n"
                     "sasl_username vip none\n"
                     "sasl_username @example.org 1/1h warn\n"
                     "sasl_username @example.org 3/1h reject\n"));
  int ok = 0;
  for (int i = 0; i < 8; ++i) ok += h.message("newsletter@example.com").reply == "DUNNO";
  CHECK(ok == 5);
  for (int i = 0; i < 50; ++i) REQUIRE(h.message("vip").reply == "DUNNO");
  CHECK(h.message("x@example.org").reply == "DUNNO");
  auto w = h.message("x@example.org");
  CHECK(w.act == action::warn);
  CHECK(w.reply.rfind("WARN ", 0) == 0);
  CHECK(h.message("x@example.org").act == action::warn);
  auto r = h.message("x@example.org");
  CHECK(r.act == action::reject);
  CHECK(r.reply.rfind("550 5.7.1 ", 0) == 0);
}

TEST_CASE("sender - sender_domain and client_address keys - IPv6 counted per /64", "[engine]") {
  harness h(snapshot("client_address * 2/1h defer\nsender_domain example.com 100/1h defer\n"));
  CHECK(h.ask(rcpt("", "a", "", "2001:db8:1:2::1")).reply == "DUNNO");
  CHECK(h.ask(rcpt("", "b", "", "2001:db8:1:2:ffff::9")).reply == "DUNNO");
  auto v = h.ask(rcpt("", "c", "", "2001:db8:1:2::77"));
  CHECK(v.act == action::defer);
  CHECK(v.hit->key == "2001:db8:1:2::/64");
  CHECK(h.ask(rcpt("", "d", "", "2001:db8:1:3::1")).reply == "DUNNO");

  harness s(snapshot("sender_domain example.com 2/1h defer\n"));
  CHECK(s.ask(rcpt("", "a", "", "192.0.2.1", "A@Example.COM")).reply == "DUNNO");
  CHECK(s.ask(rcpt("", "b", "", "192.0.2.2", "b@example.com")).reply == "DUNNO");
  auto d = s.ask(rcpt("", "c", "", "192.0.2.3", "c@example.com"));
  CHECK(d.act == action::defer);
  CHECK(d.hit->key == "example.com");
  CHECK(s.ask(rcpt("", "e", "", "192.0.2.3", "c@other.example")).reply == "DUNNO");
}

TEST_CASE("dry-run answers DUNNO and reports what it would have done", "[engine]") {
  harness h(snapshot("sasl_username * 1/1h defer\n", run_mode::dry_run));
  REQUIRE(h.message().reply == "DUNNO");
  auto v = h.message();
  CHECK(v.reply == "DUNNO");
  CHECK(v.act == action::defer);
  CHECK(v.dry_run);
  CHECK(format_decision(v, rcpt("alice", "x"), log_format::text).find("NOQUEUE: would-defer: ") == 0);
}

TEST_CASE("a limit of 0 refuses everything and charges nothing", "[engine]") {
  harness h(snapshot("sasl_username * 0/1h reject\nsasl_username * rcpt:100/1h defer\n"));
  for (int i = 0; i < 5; ++i) CHECK(h.message().act == action::reject);
  store_request probe;
  probe.charge = false;
  probe.now_ms = h.now;
  probe.counters.push_back({counter_identity(key_kind::sasl_username, "alice"), 'r', 3600, 1, 0});
  auto res = h.store.check(probe);
  REQUIRE(res.ok);
  CHECK(res.counts[0] == 0);
}

TEST_CASE("a store failure answers with on_store_error", "[engine]") {
  for (auto mode : {store_error_action::dunno, store_error_action::defer}) {
    auto snap = snapshot("sasl_username * 1/1h defer\n", run_mode::enforce, mode);
    message_tracker t;
    auto req = rcpt("alice", "i");
    auto p = t.prepare(snap, req, 1);
    REQUIRE(p.needs_store);
    store_result failed;
    failed.error = "redis timeout";
    auto v = t.finish(snap, req, p, failed);
    CHECK(v.store_failed);
    CHECK(v.log);
    CHECK(v.reply == (mode == store_error_action::dunno ? "DUNNO" : v.reply));
    if (mode == store_error_action::defer) CHECK(v.reply.rfind("451 4.3.0 ", 0) == 0);
    CHECK(format_decision(v, req, log_format::text).find("store-error: error=\"redis timeout\"") !=
          std::string::npos);
  }
}

TEST_CASE("decision lines escape what the client sent and stay one line", "[engine][log]") {
  harness h(snapshot("sender * 0/1h defer\n"));
  auto r = rcpt("", "i\n2", "", "127.0.0.1", "evil\n\x1b[31m@example.com");
  auto v = h.ask(r);
  REQUIRE(v.log);
  auto text = format_decision(v, r, log_format::text);
  CHECK(text.find('\n') == std::string::npos);
  CHECK(text.find('\x1b') == std::string::npos);
  CHECK(text.find("sender=<evil\\x0a\\x1b[31m@example.com>") != std::string::npos);
  auto json = format_decision(v, r, log_format::json);
  CHECK(json.find('\n') == std::string::npos);
  CHECK(json.find("\"sender\":\"evil\\u000a\\u001b[31m@example.com\"") != std::string::npos);
  // Huge values do not make huge keys.
  const std::string long_sender(10000, 'a');
  auto id = counter_identity(key_kind::sender, long_sender + "@x");
  CHECK(id.size() < 100);
  CHECK(id != counter_identity(key_kind::sender, long_sender + "@y"));
}

TEST_CASE("a realm mismatch between rules and what Postfix sends is detected", "[engine]") {
  auto snap_of = [](const std::string& text) {
    auto parsed = parse_limits(text, "limits.conf");
    REQUIRE(parsed.rules);
    return make_snapshot(std::move(*parsed.rules), {});
  };
  auto plain = snap_of("sasl_username * 10/1h defer\nsasl_username alice 20/1h defer\n");
  CHECK(realm_mismatch(plain, "alice@example.com").find("limits.conf:2") != std::string::npos);
  CHECK(realm_mismatch(plain, "alice").empty());
  auto realm = snap_of("sasl_username @example.com 20/1h defer\n");
  CHECK(realm_mismatch(realm, "alice").find("limits.conf:1") != std::string::npos);
  CHECK(realm_mismatch(realm, "alice@example.com").empty());
  auto both = snap_of("sasl_username alice 1/1h defer\nsasl_username bob@example.com 1/1h defer\n");
  CHECK(realm_mismatch(both, "carol").empty());
  CHECK(realm_mismatch(both, "carol@example.com").empty());
  CHECK(realm_mismatch(snap_of("sasl_username * 1/1h defer\n"), "x@y").empty());
}

TEST_CASE("an IPv4-mapped IPv6 client is counted with its IPv4 address", "[engine]") {
  harness h(snapshot("client_address * 2/1h defer\n"));
  CHECK(h.ask(rcpt("", "a", "", "192.0.2.1")).reply == "DUNNO");
  CHECK(h.ask(rcpt("", "b", "", "::ffff:192.0.2.1")).reply == "DUNNO");
  auto v = h.ask(rcpt("", "c", "", "192.0.2.1"));
  CHECK(v.act == action::defer);
  CHECK(v.hit->key == "192.0.2.1");
}
