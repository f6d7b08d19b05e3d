// Faults under sustained load, with real processes: Redis killed, paused and slowed while many policy
// connections keep asking; SIGHUP storms; SIGTERM with requests in flight. Each test prints a RELIABILITY
// row (docs/reliability.md). Hostile input is in test_hostile.cpp.
#include <signal.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "daemon_fixture.hpp"
#include "load_driver.hpp"
#include "redis_fixture.hpp"
#include "timing.hpp"

using namespace rg::test;
using namespace std::chrono_literals;

namespace {

constexpr auto redis_timeout = 100ms;
// Answers may come this much later than redis_timeout: the daemon's timer, then the reply through the
// kernel to a client thread, on a shared 2-core machine (and under ASan in CI).
constexpr auto answer_margin = 400ms;
const double answer_bound_ms =
    std::chrono::duration<double, std::milli>(redis_timeout + answer_margin).count();

const std::string store_error_word = "451";  // on_store_error = defer: "451 4.3.0 ..."

// Load identities are practically unlimited, so every answer is DUNNO (store ok) or 451 (store failed);
// "probe" has a small limit that shows whether limits and counters are back.
const std::string limits = "sasl_username * 1000000/1h defer\nsasl_username probe 5/1h defer\n";

std::string redis_settings(const redis_server& r, const std::string& extra = "") {
  return r.daemon_settings() + "redis_timeout = " + std::to_string(redis_timeout.count()) +
         "ms\non_store_error = defer\n" + extra;
}

template <typename Pred>
bool wait_until(Pred done, std::chrono::milliseconds limit) {
  const auto until = load_clock::now() + limit;
  while (!done()) {
    if (load_clock::now() >= until) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

// Three "probe" requests before the load: the daemon and the store answer, and probe's count is 3.
void probe_before_load(const daemon_process& d) {
  policy_client c(d.socket_path());
  for (int i = 0; i < 3; ++i) REQUIRE(c.ask(rcpt_request("probe", "pre-" + std::to_string(i))) == "DUNNO");
}

// The load of a test: `connections` users asking on the daemon's socket for `duration`, `pause` between an
// answer and the next request.
load_options load_on(const daemon_process& d, int connections, std::chrono::milliseconds duration,
                     std::chrono::milliseconds pause) {
  load_options o;
  o.socket_path = d.socket_path();
  o.connections = connections;
  o.duration = duration;
  o.pause = pause;
  return o;
}

// The load is under way: `n` answers within 5 s.
void wait_answered(const load_driver& load, std::size_t n) {
  REQUIRE(wait_until([&] { return load.answered_so_far() >= n; }, 5000ms));
}

// Asks for "probe" until the first deferral (at most 10 times); returns how many passed before it.
int probe_passes(const daemon_process& d, const std::string& tag) {
  policy_client c(d.socket_path());
  for (int i = 0; i < 10; ++i) {
    const auto a = c.ask(rcpt_request("probe", tag + std::to_string(i)));
    if (a.starts_with("450 4.7.1 ")) return i;
    if (a != "DUNNO") FAIL("probe: unexpected answer " << a);
  }
  return 10;
}

double ms_between(load_clock::time_point a, load_clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

std::string fmt_ms(double ms) { return std::to_string(static_cast<long>(ms + 0.5)) + " ms"; }

// When the store was back: the first DUNNO answer after `t`, and the answers to requests sent after that.
struct recovery {
  std::optional<load_clock::time_point> at;
  std::size_t answers_after = 0, errors_after = 0;
};

recovery recovery_after(const std::vector<load_sample>& samples, load_clock::time_point t) {
  recovery r;
  for (const auto& s : samples)
    if (s.action == "DUNNO" && s.done >= t && (!r.at || s.done < *r.at)) r.at = s.done;
  if (r.at)
    for (const auto& s : samples) {
      if (s.sent <= *r.at) continue;
      ++r.answers_after;
      if (s.action.starts_with(store_error_word)) ++r.errors_after;
    }
  return r;
}

// Once back, the store stays back. A store error after that can only be a round trip that missed
// redis_timeout because this shared 2-core machine stalled a process for over 100 ms (seen while others
// compile); allow those up to 2 % of the answers: a reconnect loop or a backlog would fail far more.
// In the slow trees (timing.hpp) the 2 % is a figure; a reconnect loop or a backlog still fails there, as
// errors after recovery on most answers.
void check_stays_back(const recovery& r) {
  INFO("store errors after recovery: " << r.errors_after << " of " << r.answers_after);
  CHECK(r.answers_after > 0);
  CHECK(r.errors_after * 2 <= r.answers_after);
  RG_CHECK_TIMING(r.errors_after * 50 <= r.answers_after);
}

void check_answers(const load_summary& s) {
  INFO(s.text());
  CHECK(s.errors == 0);  // every request answered, no connection dropped
  CHECK(s.answered == s.count("DUNNO") + s.count(store_error_word));
  // No answer waited for the fault to end: each came by redis_timeout (the daemon's deadline) + a margin.
  // The faults last 0.7 to 1.5 s, so a missing deadline shows as answers of a second and more; how close to
  // 100 ms they come depends on the machine.
  RG_CHECK_TIMING(s.max_ms <= answer_bound_ms);
  CHECK(s.count(store_error_word) > 0);  // the fault was seen
}

void kill_and_restart_under_load(bool persistence, const std::string& test) {
  redis_server_options so;
  so.persistence = persistence;
  redis_server redis(so);
  daemon_process d(limits, redis_settings(redis));
  probe_before_load(d);

  const load_options o = load_on(d, 16, 3500ms, 2ms);
  load_driver load(o);
  wait_answered(load, 200);
  std::this_thread::sleep_for(300ms);
  const auto killed_at = load_clock::now();
  redis.kill();
  std::this_thread::sleep_for(700ms);
  redis.start();  // returns when it answers PING
  const auto back_at = load_clock::now();
  load.wait();

  const auto& samples = load.samples();
  const auto s = load.summary();
  check_answers(s);
  const auto rec = recovery_after(samples, back_at);
  REQUIRE(rec.at.has_value());
  const double reconnect_ms = ms_between(back_at, *rec.at);
  INFO("back " << reconnect_ms << " ms after Redis");
  RG_CHECK_TIMING(reconnect_ms <= 1000);
  check_stays_back(rec);
  CHECK(d.wait_for_log("connection restored"));
  CHECK(d.log_count(": connection lost: ") == 1);  // one outage, one reconnect

  // Limits apply again; with persistence the 3 charged before the crash still count.
  const int passes = probe_passes(d, "after-");
  CHECK(passes == (persistence ? 2 : 5));

  // Every accepted (DUNNO) request was charged in Redis. With persistence all of them survive the crash (a
  // request may also be charged and then answered 451, when Redis died between its AOF write and the
  // reply); without, only those charged by the new Redis exist.
  std::uint64_t in_redis = 0;
  for (int i = 0; i < o.connections; ++i) in_redis += redis_count(redis, "load" + std::to_string(i));
  std::uint64_t accepted = 0, accepted_after_kill = 0;
  for (const auto& x : samples) {
    if (x.action != "DUNNO") continue;
    ++accepted;
    if (x.sent > killed_at) ++accepted_after_kill;
  }
  if (persistence) {
    CHECK(in_redis >= accepted);
    CHECK(in_redis <= accepted + s.count(store_error_word));
  } else {
    CHECK(in_redis == accepted_after_kill);
  }
  const int rc = d.stop();
  CHECK(rc == 0);
  print_reliability(std::string("Redis killed (SIGKILL) for 0.7 s under 16 connections, persistence ") +
                        (persistence ? "on (AOF, appendfsync always)" : "off"),
                    s, rc == 0 ? 0 : 1,
                    "back " + fmt_ms(reconnect_ms) + " after Redis; " +
                        (persistence ? "counters kept: " + std::to_string(in_redis) + " counted for " +
                                           std::to_string(accepted) + " accepted, probe 3/5 then 2 more"
                                     : "counters lost: " + std::to_string(accepted - accepted_after_kill) +
                                           " accepted before the crash forgotten, probe 5 more"),
                    test);
}

}  // namespace

TEST_CASE("fault: Redis killed and restarted under load - persistence on keeps the counters", "[faults]") {
  kill_and_restart_under_load(true, Catch::getResultCapture().getCurrentTestName());
}

TEST_CASE("fault: Redis killed and restarted under load - persistence off loses the counters", "[faults]") {
  kill_and_restart_under_load(false, Catch::getResultCapture().getCurrentTestName());
}

TEST_CASE("fault: Redis paused with SIGSTOP for 1.5 s under load then resumed", "[faults]") {
  redis_server redis;
  daemon_process d(limits, redis_settings(redis));
  probe_before_load(d);
  const load_options o = load_on(d, 16, 4000ms, 2ms);
  load_driver load(o);
  wait_answered(load, 200);
  std::this_thread::sleep_for(300ms);
  redis.pause();
  std::this_thread::sleep_for(1500ms);  // past the stall limit (1 s): the daemon drops the connection
  redis.resume();
  const auto resumed_at = load_clock::now();
  load.wait();

  const auto s = load.summary();
  check_answers(s);
  const auto rec = recovery_after(load.samples(), resumed_at);
  REQUIRE(rec.at.has_value());
  const double reconnect_ms = ms_between(resumed_at, *rec.at);
  INFO("back " << reconnect_ms << " ms after SIGCONT");
  RG_CHECK_TIMING(reconnect_ms <= 1000);
  check_stays_back(rec);
  CHECK(d.log_count("connection lost: no reply for 1000 ms") == 1);
  CHECK(d.log_count(": connection lost: ") == 1);
  CHECK(d.wait_for_log("connection restored"));
  CHECK(probe_passes(d, "after-") == 2);
  const int rc = d.stop();
  CHECK(rc == 0);
  print_reliability("Redis paused (SIGSTOP) for 1.5 s under 16 connections, then resumed", s, rc == 0 ? 0 : 1,
                    "back " + fmt_ms(reconnect_ms) + " after SIGCONT; probe limit exact after",
                    Catch::getResultCapture().getCurrentTestName());
}

namespace {

std::uint64_t check_calls(redis_server& r) {
  const auto stats = r.command({"INFO", "commandstats"});
  const std::string key = "cmdstat_fcall:calls=";
  const auto p = stats.find(key);
  return p == std::string::npos ? 0 : std::stoull(stats.substr(p + key.size()));
}

}  // namespace

TEST_CASE("fault: Redis slow (DEBUG SLEEP) under load - deadlines hold and redis_max_pending caps the queue",
          "[faults]") {
  redis_server_options so;
  so.extra_args = {"--enable-debug-command", "yes"};
  redis_server redis(so);
  // 32 connections keep at most 32 requests in flight while Redis is healthy; while it sleeps, each
  // connection adds one every redis_timeout (up to 32 x 5 per sleep): the cap sits between the two.
  constexpr int connections = 32;
  constexpr int max_pending = 40;
  constexpr int sleeps = 3;
  daemon_process d(limits,
                   redis_settings(redis, "redis_max_pending = " + std::to_string(max_pending) + "\n"));
  const load_options o = load_on(d, connections, 3000ms, 5ms);
  load_driver load(o);
  wait_answered(load, 200);
  std::this_thread::sleep_for(200ms);
  const long rss_before = rss_kb(d.pid());
  // Redis answers nothing for 500 ms at a time (5 x redis_timeout, half the stall limit), three times.
  const auto slow_from = load_clock::now();
  for (int i = 0; i < sleeps; ++i) REQUIRE(redis.command({"DEBUG", "SLEEP", "0.5"}) == "OK");
  const auto slow_until = load_clock::now();
  const long rss_after = rss_kb(d.pid());
  load.wait();

  const auto s = load.summary();
  check_answers(s);
  const auto rec = recovery_after(load.samples(), slow_until);
  REQUIRE(rec.at.has_value());
  const double recovered_ms = ms_between(slow_until, *rec.at);
  INFO("normal " << recovered_ms << " ms after the last sleep");
  RG_CHECK_TIMING(recovered_ms <= 1000);  // no backlog to work off
  check_stays_back(rec);
  CHECK(d.log_count(": connection lost: ") == 0);  // slow, never stalled past the stall limit
  // What Redis executed beyond the accepted requests were requests that timed out: while it slept at most
  // redis_max_pending per sleep (about 5 x 32 without the cap), plus one per store error clearly outside
  // the slow spell (a stalled machine, see check_stays_back).
  std::uint64_t stray = 0;
  for (const auto& x : load.samples())
    if (x.action.starts_with(store_error_word) && (x.done < slow_from || x.sent > slow_until + redis_timeout))
      ++stray;
  const std::uint64_t executed = check_calls(redis);
  const std::uint64_t timed_out_but_run = executed - s.count("DUNNO");
  CHECK(executed >= s.count("DUNNO"));
  CHECK(timed_out_but_run <= static_cast<std::uint64_t>(max_pending * sleeps) + stray);
  if (rss_is_meaningful) CHECK(rss_after - rss_before < 16 * 1024);
  const int rc = d.stop();
  CHECK(rc == 0);
  print_reliability(
      "Redis slow: `DEBUG SLEEP 0.5` x3 (5 x redis_timeout each) under 32 connections, "
      "redis_max_pending 40",
      s, rc == 0 ? 0 : 1,
      std::to_string(timed_out_but_run) + " timed-out requests still ran in Redis (the cap allows " +
          std::to_string(max_pending) + " per sleep; about 5 x 32 without it); normal " +
          fmt_ms(recovered_ms) + " after; daemon RSS +" + std::to_string(rss_after - rss_before) + " kB",
      Catch::getResultCapture().getCurrentTestName());
}

namespace {

// Generation g of the limits file: ~2000 lines (about 80 kB); the answer names the generation and can only
// be "550 5.7.1 gen-g last" when the whole file is loaded (the first line alone would answer 450).
std::string generation(int g, bool broken) {
  std::string f = "# generation " + std::to_string(g) + "\nsasl_username * 0/1h defer gen-" +
                  std::to_string(g) + " first\n";
  for (int i = 0; i < 2000; ++i) {
    f += "sender user" + std::to_string(i) + "@filler.example 10/1h defer\n";
    if (broken && i == 1000) f += "sender broken@filler.example 10/1x defer\n";
  }
  return f + "client_address 127.0.0.1 0/1h reject gen-" + std::to_string(g) + " last\n";
}

std::optional<int> generation_of(const std::string& action) {
  const std::string head = "550 5.7.1 gen-";
  if (!action.starts_with(head) || !action.ends_with(" last")) return std::nullopt;
  return std::stoi(action.substr(head.size()));
}

}  // namespace

TEST_CASE(
    "fault: SIGHUP 40 times under load with broken files - no dropped connection and no half-loaded rules",
    "[faults]") {
  daemon_process d(generation(0, false));
  const load_options o = load_on(d, 16, 20s, 2ms);  // 20 s: stopped below, when the reloads are done
  load_driver load(o);
  wait_answered(load, 100);

  policy_client watcher(d.socket_path());
  int good = 0, broken = 0, last_good = 0, asked = 0;
  // A new message each time: a message keeps the answer of its first RCPT, even across a reload.
  const auto watch = [&] {
    return generation_of(watcher.ask(rcpt_request("w", "w" + std::to_string(++asked))));
  };
  for (int g = 1; g <= 40; ++g) {
    const bool bad = g % 5 == 0;
    d.write_limits(generation(g, bad));
    d.signal(SIGHUP);
    if (bad) {
      ++broken;
      REQUIRE(wait_until(
          [&] { return d.log_count("reload refused: keeping") == static_cast<std::size_t>(broken); },
          10000ms));
    } else {
      ++good;
      last_good = g;
      // Applied when a new request sees it (bounded).
      REQUIRE(wait_until([&] { return watch() == g; }, 10000ms));
    }
  }
  load.stop();

  const auto s = load.summary();
  INFO(s.text());
  CHECK(s.errors == 0);
  // Every answer is the last line of a whole good generation, never of a refused one, and on each
  // connection generations only move forward.
  std::vector<int> last(static_cast<std::size_t>(o.connections), 0);
  std::size_t half = 0, refused_seen = 0, backwards = 0;
  std::set<int> seen;
  for (const auto& x : load.samples()) {
    const auto g = generation_of(x.action);
    if (!g) {
      ++half;
      continue;
    }
    if (*g % 5 == 0 && *g != 0) ++refused_seen;
    if (*g < last[static_cast<std::size_t>(x.conn)]) ++backwards;
    last[static_cast<std::size_t>(x.conn)] = *g;
    seen.insert(*g);
  }
  CHECK(half == 0);
  CHECK(refused_seen == 0);
  CHECK(backwards == 0);
  CHECK(seen.size() >= 10);  // the load really ran across the reloads
  CHECK(d.log_count("reload: ") == static_cast<std::size_t>(good));
  CHECK(d.log_count("reload refused: keeping") == static_cast<std::size_t>(broken));
  CHECK(watch() == last_good);
  const int rc = d.stop();
  CHECK(rc == 0);
  print_reliability("SIGHUP x40 (2000-line limits file, every 5th broken) under 16 connections", s,
                    rc == 0 ? 0 : 1,
                    std::to_string(good) + " reloads applied, " + std::to_string(broken) +
                        " refused (old rules kept); 0 answers from a half-loaded or refused file",
                    Catch::getResultCapture().getCurrentTestName());
}

TEST_CASE("fault: SIGTERM under load - requests in flight are answered then exit 0", "[faults]") {
  redis_server redis;
  // A long store deadline, so requests stay in flight while Redis is paused.
  daemon_process d(limits, redis.daemon_settings() + "redis_timeout = 3s\n");
  const load_options o = load_on(d, 16, 20s, 1ms);  // 20 s: ends when the daemon closes the connections
  load_driver load(o);
  wait_answered(load, 200);
  redis.pause();
  // Every connection now sends a request that waits on Redis: the answers stop. Waited for until no answer
  // came for 200 ms (a connection pauses 1 ms between requests), not for a fixed time that a slow machine
  // might not reach.
  {
    auto seen = load.answered_so_far();
    auto quiet_since = load_clock::now();
    const auto limit = load_clock::now() + 10s;
    while (load_clock::now() - quiet_since < 200ms && load_clock::now() < limit) {
      std::this_thread::sleep_for(5ms);
      if (const auto now = load.answered_so_far(); now != seen) {
        seen = now;
        quiet_since = load_clock::now();
      }
    }
  }
  const auto answered_before = load.answered_so_far();
  const auto term_at = load_clock::now();
  d.signal(SIGTERM);
  std::this_thread::sleep_for(300ms);
  redis.resume();
  const int rc = d.wait_exit(10000);
  const auto exited_at = load_clock::now();
  load.wait();

  const auto s = load.summary();
  INFO(s.text());
  std::size_t in_flight = 0, in_flight_answered = 0;
  std::vector<load_sample> before_term;  // requests sent before SIGTERM
  for (const auto& x : load.samples()) {
    if (x.sent >= term_at) continue;
    before_term.push_back(x);
    if (x.done > term_at) {
      ++in_flight;
      if (x.action == "DUNNO") ++in_flight_answered;
    }
  }
  const auto before = summarize(before_term);
  CHECK(load.answered_so_far() == answered_before + in_flight_answered);
  CHECK(in_flight == static_cast<std::size_t>(o.connections));  // one each, waiting on the paused Redis
  CHECK(in_flight_answered == in_flight);
  CHECK(before.errors == 0);
  // Each connection ends with one request the daemon never read (sent after its last answer).
  CHECK(s.errors <= static_cast<std::size_t>(o.connections));
  CHECK(rc == 0);
  // Exits once the requests in flight are answered (Redis resumes 0.3 s after SIGTERM), not at their 3 s
  // store deadline; the log line below says shutdown_timeout never cut it short.
  RG_CHECK_TIMING(ms_between(term_at, exited_at) < 3000);
  CHECK(d.log().find("shutdown_timeout reached") == std::string::npos);
  print_reliability("SIGTERM under 16 connections, each with a request in flight (Redis paused 0.5 s)",
                    before, rc == 0 ? 0 : 1,
                    std::to_string(in_flight_answered) + "/" + std::to_string(in_flight) +
                        " in flight answered (the max answer is the Redis pause), then exit " +
                        std::to_string(rc) + " after " + fmt_ms(ms_between(term_at, exited_at)),
                    Catch::getResultCapture().getCurrentTestName());
}
