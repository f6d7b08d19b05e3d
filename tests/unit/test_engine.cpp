// Engine semantics with an injected clock and the in-process store: bursts, window edges, refusals not
// charged, one message counted once across its RCPTs, whole-message decisions, precedence, dry-run,
// store failure, and the decision log line.
#include <catch2/catch.hpp>

#include "decision_log.hpp"
#include "engine.hpp"
#include "memory_store.hpp"
#include "policy_requests.hpp"

#include <cstdio>

using namespace rg;

namespace {

// FNV-1a 64, written out here as the reference the engine's hashes must keep to (they name Redis keys and tokens).
std::uint64_t fnv1a_ref(std::string_view s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

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

using test::rcpt;

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
  for (int r = 0; r < 7; ++r) {
    auto req = rcpt("bob", "one-message");
    req.set(attr::recipient, "rcpt" + std::to_string(r) + "@example.net");
    ok += k.ask(req).reply == "DUNNO";
  }
  CHECK(ok == 5);
}

TEST_CASE("a RCPT Postfix resends on a new connection is charged once - the same charge token", "[engine]") {
  harness h(snapshot("sasl_username * 2/1h defer\nsasl_username * rcpt:10/1h defer\n"));
  const auto first = rcpt("alice", "m1");
  REQUIRE(h.ask(first).reply == "DUNNO");
  for (int resend = 0; resend < 2; ++resend) {
    h.tracker = message_tracker{};  // Postfix closed the timed-out connection and sends it again on a new one
    const auto v = h.ask(first);
    CHECK(v.reply == "DUNNO");  // answered as the first was
  }
  CHECK(h.message().reply == "DUNNO");  // the second message: the resends did not count
  CHECK(h.message().act == action::defer);

  auto other = first;
  other.set(attr::recipient, "Other@example.net");
  auto same_other = first;
  same_other.set(attr::recipient, "other@EXAMPLE.net");
  auto no_instance = first;
  no_instance.set(attr::instance, "");
  CHECK(charge_token(first) == charge_token(rcpt("alice", "m1")));
  CHECK(charge_token(first).size() == 32);
  CHECK(charge_token(other) != charge_token(first));
  CHECK(charge_token(other) == charge_token(same_other));
  CHECK(charge_token(rcpt("alice", "m2")) != charge_token(first));
  CHECK(charge_token(no_instance).empty());
  // Every node of a Redis must make the same token, whatever its version: two FNV-1a 64 in hex, of the instance and
  // of recipient (lower case), sender and client with a '\0' between.
  char want[33];
  std::snprintf(want, sizeof want, "%016llx%016llx", static_cast<unsigned long long>(fnv1a_ref(first.get(attr::instance))),
                static_cast<unsigned long long>(fnv1a_ref("other@example.net" + std::string(1, '\0') +
                                                          std::string(first.get(attr::sender)) + std::string(1, '\0') +
                                                          std::string(first.get(attr::client_address)))));
  CHECK(charge_token(same_other) == want);
}

TEST_CASE("memory store: a repeat of a charged request only reads and is answered as the first", "[engine]") {
  memory_store store{1000, [] { return std::int64_t{1'000'000'000}; }};
  store_request req;
  counter_spec c;
  c.identity = "u:alice";
  c.window_s = 3600;
  c.refuse_limit = 2;
  req.counters.push_back(c);
  req.once = "token-1";
  for (int i = 0; i < 2; ++i) {
    const auto first = store.check(req);
    REQUIRE(first.ok);
    CHECK(first.charged);
    CHECK(first.counts == std::vector<std::uint64_t>{static_cast<std::uint64_t>(i)});
    const auto repeat = store.check(req);  // same token: read, not charged, reported as the first
    CHECK(repeat.charged);
    CHECK(repeat.counts == first.counts);
    req.once = "token-2";
  }
  const auto refused = store.check(req);  // token-2 again: a repeat still; a new token is refused at the limit
  CHECK(refused.charged);
  req.once = "token-3";
  CHECK_FALSE(store.check(req).charged);
  req.once = "token-3";
  CHECK_FALSE(store.check(req).charged);  // not charged the first time: the repeat is a new check, refused again
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
  eom.set(attr::protocol_state, "END-OF-MESSAGE");
  CHECK_FALSE(h.ask(eom).log);
}

TEST_CASE("END-OF-MESSAGE logs a held single-recipient message with its queue ID and counts nothing",
          "[engine]") {
  harness h(snapshot("sasl_username * 1/1h hold\n"));
  REQUIRE(h.message().reply == "DUNNO");
  REQUIRE(h.ask(rcpt("alice", "single")).act == action::hold);
  auto eom = rcpt("alice", "single", "8E891A72062");
  eom.set(attr::protocol_state, "END-OF-MESSAGE");
  auto v = h.ask(eom);
  CHECK(v.log);
  CHECK(v.act == action::hold);
  auto line = format_decision(v, eom, log_format::text);
  CHECK(line.rfind("8E891A72062: hold: key=sasl_username:alice ", 0) == 0);
  // END-OF-MESSAGE of an ordinary message is not counted: a new user's message still passes its limit.
  auto eom2 = rcpt("carol", "plain", "ABC");
  eom2.set(attr::protocol_state, "END-OF-MESSAGE");
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
  counter_spec rcpts;
  rcpts.identity = counter_identity(key_kind::sasl_username, "alice");
  rcpts.unit_tag = 'r';
  rcpts.window_s = 3600;
  probe.counters.push_back(rcpts);
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
  char tail[17];
  std::snprintf(tail, sizeof tail, "%016llx", static_cast<unsigned long long>(fnv1a_ref(long_sender + "@x")));
  CHECK(id == "s:" + long_sender.substr(0, 64) + "#" + tail);
  // A familiarity bit (Redis keeps the filters of every node) likewise: FNV-1a of the kind and the value.
  CHECK(familiar_bit('D', "example.com") == fnv1a_ref("Dexample.com") % familiar_bits);
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

// ---- locks, lock requests and the hold journal, driven with fake store results ----

namespace {

// Runs one request through prepare and finish with a made-up store answer: every counter at `count`, and
// the given identities locked.
verdict with_store(const policy_snapshot& snap, message_tracker& t, const policy_request& r, std::uint64_t count,
                   const std::vector<std::string>& locked = {}) {
  auto p = t.prepare(snap, r, 1);
  if (!p.needs_store) return p.immediate;
  store_result res;
  res.ok = true;
  res.counts.assign(p.counters, count);
  res.baselines.resize(p.counters);  // no burst limits here: every baseline absent
  for (auto& id : locked) res.locks.push_back(lock_info{id, 1000, 2000, "limits.conf:9 7 messages in 1m, limit 6"});
  return t.finish(snap, r, p, res);
}

policy_request eom(const std::string& instance, const std::string& queue_id, const std::string& rcpts) {
  auto r = rcpt("alice", instance, queue_id);
  r.set(attr::protocol_state, "END-OF-MESSAGE");
  r.set(attr::recipient_count, rcpts);
  return r;
}

}  // namespace

TEST_CASE("a locked key holds the message unless a limit refuses it", "[engine][lock]") {
  struct row {
    const char* limits;
    std::uint64_t count;  // every counter's count before the request
    bool locked;
    run_mode mode;
    action act;
    const char* reply_prefix;
  };
  const row rows[] = {
      {"sasl_username * 100/1h defer\n", 0, true, run_mode::enforce, action::hold, "HOLD rateguard: this sasl_username is locked"},
      {"sasl_username * 100/1h defer\n", 100, true, run_mode::enforce, action::defer, "450 4.7.1 "},
      {"sasl_username * 100/1h reject\n", 100, true, run_mode::enforce, action::reject, "550 5.7.1 "},
      {"sasl_username * 100/1h warn\n", 100, true, run_mode::enforce, action::hold, "HOLD rateguard: this sasl_username is locked"},
      {"sasl_username * 100/1h hold\n", 100, true, run_mode::enforce, action::hold, "HOLD rateguard: this sasl_username is locked"},
      {"sasl_username * 100/1h defer\n", 0, false, run_mode::enforce, action::none, "DUNNO"},
      {"sasl_username * 100/1h defer\n", 0, true, run_mode::dry_run, action::hold, "DUNNO"},
  };
  for (const row& w : rows) {
    INFO(w.limits << " count=" << w.count << " locked=" << w.locked);
    auto snap = snapshot(w.limits, w.mode);
    message_tracker t;
    auto v = with_store(snap, t, rcpt("alice", "m1"), w.count,
                        w.locked ? std::vector<std::string>{"u:alice"} : std::vector<std::string>{});
    CHECK(v.act == w.act);
    CHECK(v.reply.rfind(w.reply_prefix, 0) == 0);
    const bool lock_applies = w.locked && !refuses(w.act);
    CHECK(v.lock.has_value() == lock_applies);
    if (lock_applies) {
      CHECK(v.lock_key == "sasl_username:alice");
      CHECK(v.log);
      CHECK(format_decision(v, rcpt("alice", "m1"), log_format::text)
                .find(" locked=sasl_username:alice lock_until=1970-01-01T00:00:02Z lock_reason=\"limits.conf:9 7 "
                      "messages in 1m, limit 6\"") != std::string::npos);
    }
    // The whole message is held: a later RCPT gets the same answer without asking the store.
    if (w.act == action::hold && w.mode == run_mode::enforce) {
      auto p = t.prepare(snap, rcpt("alice", "m1"), 1);
      CHECK_FALSE(p.needs_store);
      CHECK(p.immediate.act == action::hold);
    }
  }
}

TEST_CASE("a tripped hold rule asks for a lock of its key - once and only in enforce mode", "[engine][lock]") {
  struct row {
    const char* limits;
    std::chrono::milliseconds lock_time;
    run_mode mode;
    std::vector<std::string> locked;
    std::int64_t want;
  };
  const std::chrono::milliseconds day = std::chrono::hours(24);
  const row rows[] = {
      {"sasl_username * 5/1h hold\n", day, run_mode::enforce, {}, day.count()},
      {"sasl_username * 5/1h hold\n", day, run_mode::enforce, {"u:alice"}, 0},  // locked already
      {"sasl_username * 5/1h hold\n", day, run_mode::enforce, {"ip:127.0.0.1"}, day.count()},  // another key's lock
      {"sasl_username * 5/1h hold\n", std::chrono::milliseconds(0), run_mode::enforce, {}, 0},  // locks off
      {"sasl_username * 5/1h hold\n", day, run_mode::dry_run, {}, 0},
      {"sasl_username * 5/1h defer\n", day, run_mode::enforce, {}, 0},  // only hold rules lock
      {"sasl_username * 5/1h warn\n", day, run_mode::enforce, {}, 0},
  };
  for (const row& w : rows) {
    INFO(w.limits << " lock_time=" << w.lock_time.count() << " locked=" << w.locked.size());
    auto snap = snapshot(w.limits, w.mode);
    snap.settings.lock_time = w.lock_time;
    message_tracker t;
    auto v = with_store(snap, t, rcpt("alice", "m1"), 5, w.locked);
    CHECK(v.set_lock_ms == w.want);
    if (w.want > 0) {
      REQUIRE(v.hit);
      CHECK(counter_identity(v.hit->kind, v.hit->key) == "u:alice");
      CHECK(lock_reason(*v.hit) == "limits.conf:1 6 messages in 1h, limit 5");
      // The message's later RCPTs repeat the hold but do not ask again.
      CHECK(t.prepare(snap, rcpt("alice", "m1", "Q1"), 1).immediate.set_lock_ms == 0);
    }
  }
}

TEST_CASE("one journal record per held message - when the message is finished", "[engine][journal]") {
  auto snap = snapshot("sasl_username * 5/1h hold\n");
  SECTION("END-OF-MESSAGE finishes it: queue ID and Postfix's recipient count") {
    message_tracker t;
    REQUIRE(with_store(snap, t, rcpt("alice", "m1"), 5).act == action::hold);
    CHECK(with_store(snap, t, rcpt("alice", "m1", "8E891A72062"), 5).act == action::hold);
    CHECK(with_store(snap, t, rcpt("alice", "m1", "8E891A72062"), 5).act == action::hold);
    CHECK(t.take_finished().empty());  // not finished yet
    with_store(snap, t, eom("m1", "8E891A72062", "2"), 5);
    auto recs = t.take_finished();
    REQUIRE(recs.size() == 1);
    CHECK(recs[0].queue_id == "8E891A72062");
    CHECK(recs[0].recipients == 2);  // END-OF-MESSAGE's count wins over the 3 RCPTs seen
    CHECK(recs[0].instance == "m1");
    CHECK(recs[0].key == "sasl_username:alice");
    CHECK(recs[0].rule == "limits.conf:1");
    CHECK(recs[0].reason == "6 messages in 1h, limit 5");
    CHECK(recs[0].client == "127.0.0.1");
    CHECK(recs[0].sender == "alice@example.com");
    // A resent END-OF-MESSAGE and the connection's end add nothing.
    with_store(snap, t, eom("m1", "8E891A72062", "2"), 5);
    t.end_connection();
    CHECK(t.take_finished().empty());
  }
  SECTION("a new instance finishes it: the RCPTs seen, the queue ID of a later RCPT") {
    message_tracker t;
    REQUIRE(with_store(snap, t, rcpt("alice", "m1"), 5).act == action::hold);
    with_store(snap, t, rcpt("alice", "m1", "4F2A1B3C"), 5);
    with_store(snap, t, rcpt("alice", "m2"), 0);  // the next message is not held
    auto recs = t.take_finished();
    REQUIRE(recs.size() == 1);
    CHECK(recs[0].queue_id == "4F2A1B3C");
    CHECK(recs[0].recipients == 2);
    t.end_connection();
    CHECK(t.take_finished().empty());
  }
  SECTION("the connection's end finishes it, without a queue ID if Postfix never sent one") {
    message_tracker t;
    REQUIRE(with_store(snap, t, rcpt("alice", "m1"), 5).act == action::hold);
    t.end_connection();
    auto recs = t.take_finished();
    REQUIRE(recs.size() == 1);
    CHECK(recs[0].queue_id.empty());
    CHECK(recs[0].recipients == 1);
  }
  SECTION("a message held by a lock names the lock") {
    message_tracker t;
    REQUIRE(with_store(snap, t, rcpt("alice", "m1", "Q9"), 0, {"u:alice"}).act == action::hold);
    with_store(snap, t, eom("m1", "Q9", "1"), 0);
    auto recs = t.take_finished();
    REQUIRE(recs.size() == 1);
    CHECK(recs[0].key == "sasl_username:alice");
    CHECK(recs[0].rule.empty());
    CHECK(recs[0].reason == "locked: limits.conf:9 7 messages in 1m, limit 6");
  }
  SECTION("messages that are not held - and dry-run holds - write nothing") {
    message_tracker t;
    with_store(snap, t, rcpt("alice", "m1"), 0);
    with_store(snap, t, eom("m1", "Q1", "1"), 0);
    with_store(snap, t, rcpt("alice", "m2"), 7);  // over the limit: m2 is held
    auto dry = snapshot("sasl_username * 5/1h hold\n", run_mode::dry_run);
    message_tracker d;
    CHECK(with_store(dry, d, rcpt("alice", "m1"), 5).act == action::hold);
    d.end_connection();
    CHECK(d.take_finished().empty());
    t.end_connection();
    CHECK(t.take_finished().size() == 1);  // m2 only
  }
}

TEST_CASE("operator keys are normalized like the engine counts", "[engine][key]") {
  struct row {
    const char* text;
    const char* name;      // "" = malformed
    const char* identity;
  };
  const row rows[] = {
      {"sasl_username:Alice@Example.COM", "sasl_username:alice@example.com", "u:alice@example.com"},
      {"SASL_USERNAME:bob", "sasl_username:bob", "u:bob"},
      {"client_address:192.0.2.7", "client_address:192.0.2.7", "ip:192.0.2.7"},
      {"client_address:2001:DB8:1:2::5", "client_address:2001:db8:1:2::/64", "ip:2001:db8:1:2::/64"},
      {"client_address:2001:db8:1:2::/64", "client_address:2001:db8:1:2::/64", "ip:2001:db8:1:2::/64"},
      {"client_address:::ffff:192.0.2.7", "client_address:192.0.2.7", "ip:192.0.2.7"},
      {"sender:Bob@Example.com", "sender:bob@example.com", "s:bob@example.com"},
      {"sender_domain:Example.com", "sender_domain:example.com", "d:example.com"},
      {"alice", "", ""},
      {"user:alice", "", ""},
      {"sasl_username:", "", ""},
      {"client_address:not-an-ip", "", ""},
  };
  for (const row& w : rows) {
    INFO(w.text);
    std::string why;
    auto k = parse_key(w.text, 64, &why);
    if (std::string(w.name).empty()) {
      CHECK_FALSE(k);
      CHECK_FALSE(why.empty());
      continue;
    }
    REQUIRE(k);
    CHECK(k->name == w.name);
    CHECK(k->identity == w.identity);
    CHECK(key_of_identity(k->identity) == w.name);
  }
  // The engine counts a request's client under the same identity as the key names it.
  auto snap = snapshot("client_address * 1/1h defer\n");
  message_tracker t;
  auto p = t.prepare(snap, rcpt("", "m", "", "2001:db8:1:2::77"), 1);
  REQUIRE(p.req.counters.size() == 1);
  CHECK(p.req.counters[0].identity == parse_key("client_address:2001:db8:1:2::5", 64)->identity);
}

TEST_CASE("the lock line is one escaped line - text and JSON", "[engine][log]") {
  auto r = rcpt("alice", "i\n1", "", "127.0.0.1", "evil\n@example.com");
  auto text = format_lock("sasl_username:alice", "limits.conf:7", 86'400'000, "limits.conf:7 61 messages in 1m\n", r,
                          log_format::text);
  CHECK(text.rfind("NOQUEUE: lock: key=sasl_username:alice rule=limits.conf:7 until=1970-01-02T00:00:00Z "
                   "reason=\"limits.conf:7 61 messages in 1m\\x0a\" client=127.0.0.1 sasl_username=alice "
                   "sender=<evil\\x0a@example.com> instance=i\\x0a1",
                   0) == 0);
  auto json = format_lock("sasl_username:alice", "limits.conf:7", 86'400'000, "x", r, log_format::json);
  CHECK(json.find('\n') == std::string::npos);
  CHECK(json.find("\"action\":\"lock\",\"key\":\"sasl_username:alice\"") != std::string::npos);
  CHECK(json.find("\"until\":\"1970-01-02T00:00:00Z\"") != std::string::npos);
}

// The milter front decides a message once, at its end, with every recipient: one charge, all or nothing.
TEST_CASE("a whole message is charged once for the message and once per recipient - or not at all",
          "[engine][milter]") {
  using test::whole_message;
  harness h(snapshot("local_user * 3/1h rcpt:10/1h defer\n"));
  const auto msg = [&](int rcpts) {
    std::vector<std::string> to;
    for (int i = 0; i < rcpts; ++i) to.push_back("r" + std::to_string(i) + "@example.net");
    return h.ask(whole_message("www-data", "m" + std::to_string(++h.serial_), to));
  };
  CHECK(msg(4).reply == "DUNNO");  // 1 message, 4 recipients
  CHECK(msg(4).reply == "DUNNO");  // 2, 8
  // 3 recipients more would make 11: the whole message is refused, and none of it is charged...
  auto v = msg(3);
  CHECK(v.act == action::defer);
  REQUIRE(v.hit);
  CHECK(v.hit->key == "www-data");
  CHECK(v.hit->kind == key_kind::local_user);
  CHECK(v.hit->count == 11);
  // ... so a retry of the same size is refused the same way (a maildrop file offered again is not counted
  // twice), while what still fits passes.
  CHECK(msg(3).hit->count == 11);
  CHECK(msg(2).reply == "DUNNO");    // 3 messages, 10 recipients
  CHECK(msg(1).act == action::defer);  // the 4th message: over 3/1h
  CHECK(msg(1).hit->count == 4);
}

TEST_CASE("a whole message adds each recipient domain once to a rcpt_domains signal", "[engine][milter]") {
  using test::whole_message;
  harness h(snapshot("local_user * rcpt_domains:3/1h defer\n"));
  auto v = h.ask(whole_message("www-data", "m1", {"a@one.example", "b@two.example", "c@ONE.example"}));
  CHECK(v.reply == "DUNNO");
  // Two domains known, two new: 4 distinct > 3, refused; the domains are observations, so they stay counted.
  v = h.ask(whole_message("www-data", "m2", {"d@three.example", "e@four.example", "f@one.example"}));
  CHECK(v.act == action::defer);
  REQUIRE(v.hit);
  CHECK(v.hit->count == 4);
  // A message only to known domains... is still over (four are known now).
  CHECK(h.ask(whole_message("www-data", "m3", {"g@two.example"})).act == action::defer);
  // Another account has its own signal.
  CHECK(h.ask(whole_message("apache", "m4", {"a@one.example", "b@two.example", "c@three.example"})).reply == "DUNNO");
}

TEST_CASE("local_user rules match the submitting account by name; requests without one never match",
          "[engine][milter]") {
  using test::whole_message;
  harness h(snapshot("local_user www-data 1/1h hold\nlocal_user * 5/1h defer\n"));
  h.snap.settings.lock_time = std::chrono::hours(1);
  CHECK(h.ask(whole_message("WWW-DATA", "m1", {"a@example.net"})).reply == "DUNNO");  // names in lower case
  auto v = h.ask(whole_message("www-data", "m2", {"a@example.net"}, "QID2"));
  CHECK(v.act == action::hold);
  CHECK(v.reply.rfind("HOLD ", 0) == 0);
  CHECK(v.set_lock_ms == 3'600'000);
  // The held whole message is finished at once: its journal record is ready, with its queue ID and recipients.
  auto done = h.tracker.take_finished();
  REQUIRE(done.size() == 1);
  CHECK(done[0].queue_id == "QID2");
  CHECK(done[0].key == "local_user:www-data");
  CHECK(done[0].recipients == 1);
  // Another account falls to the * line; mail with no known account (smtpd, untrusted pickup) is not counted.
  CHECK(h.ask(whole_message("alice", "m3", {"a@example.net"})).reply == "DUNNO");
  auto p = h.tracker.prepare(h.snap, whole_message("", "m4", {"a@example.net"}), h.now);
  CHECK_FALSE(p.needs_store);
  // The decision line names the account, the recipient count and the script hint.
  auto r = whole_message("www-data", "m5", {"a@example.net", "b@example.net"}, "QID5");
  r.script = "1000:/var/www/wp-content/plugins/x.php";
  const auto line = format_decision(h.ask(r), r, log_format::text);
  CHECK(line.rfind("QID5: hold: key=local_user:www-data rule=limits.conf:1 ", 0) == 0);
  CHECK(line.find(" recipients=2 local_user=www-data script=\"1000:/var/www/wp-content/plugins/x.php\"") !=
        std::string::npos);
}
