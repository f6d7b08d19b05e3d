// milter_bench: closed-loop load generator for a milter (rateguardd's milter front, or trivial_responder --milter).
// C threads, each one blocking milter_client (tests/support), each sending whole messages as Postfix does: by
// default as cleanup sends sendmail mail (a connection per message: negotiate, CONNECT, HELO, MAIL, one RCPT,
// DATA, five headers, EOH, body, EOM, QUIT); with --per-connection N, N messages on one connection with an ABORT
// after each, as smtpd does. Prints messages/s and latency per message in policy_bench's format. Not a ctest test.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "milter_client.hpp"

using clock_type = std::chrono::steady_clock;
using rg::test::milter_client;

namespace {

struct options {
  std::string connect;  // inet:127.0.0.1:PORT or unix:/path
  std::size_t concurrency = 8;
  std::size_t per_connection = 1;  // messages per milter connection (1: cleanup; more: smtpd)
  std::uint64_t messages = 0;      // 0: no message bound (then --seconds bounds the run)
  double seconds = 3;
  std::size_t users = 1000;        // senders user0..user<U-1>@bench.test, uniformly at random
  bool smtpd = false;              // smtpd's shape: real client port, SASL login, <bracketed> addresses
  std::uint64_t seed = 1;
  std::uint32_t timeout_ms = 5000;
  bool csv = false;
  std::string label = "milter";
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "milter_bench: " << why << "\n"
            << "usage: milter_bench --connect inet:127.0.0.1:PORT|unix:/path [-c C] [--per-connection N]\n"
            << "         [--messages N] [--seconds S] [--users U] [--smtpd] [--seed N] [--timeout-ms MS]\n"
            << "         [--label NAME] [--csv]\n";
  std::exit(2);
}

options parse_args(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(a + " needs a value");
      return argv[++i];
    };
    try {
      if (a == "--connect") o.connect = value();
      else if (a == "-c" || a == "--concurrency") o.concurrency = std::stoul(value());
      else if (a == "--per-connection") o.per_connection = std::stoul(value());
      else if (a == "--messages") o.messages = std::stoull(value());
      else if (a == "--seconds") o.seconds = std::stod(value());
      else if (a == "--users") o.users = std::stoul(value());
      else if (a == "--smtpd") o.smtpd = true;
      else if (a == "--seed") o.seed = std::stoull(value());
      else if (a == "--timeout-ms") o.timeout_ms = static_cast<std::uint32_t>(std::stoul(value()));
      else if (a == "--label") o.label = value();
      else if (a == "--csv") o.csv = true;
      else usage("unknown option " + a);
    } catch (const std::logic_error&) {
      usage("bad value for " + a);
    }
  }
  if (o.connect.empty()) usage("--connect is required");
  if (o.concurrency == 0 || o.concurrency > 1000) usage("-c must be 1..1000 (one thread each)");
  if (o.per_connection == 0) usage("--per-connection must be > 0");
  if (o.users == 0) usage("--users must be > 0");
  if (o.messages == 0 && o.seconds <= 0) usage("give --messages or --seconds (every run is bounded)");
  if (o.seconds <= 0 || o.seconds > 3600) o.seconds = 3600;  // hard bound even with --messages only
  return o;
}

// What one thread saw; merged after the join.
struct thread_result {
  std::vector<std::uint32_t> latencies_us;
  std::map<std::string, std::uint64_t> replies;
  std::uint64_t errors = 0;
  std::string first_error;
  std::optional<rg::milter::negotiation> filter;  // what the filter answered at the first negotiation
};

struct shared_state {
  const options& opt;
  clock_type::time_point end;
  std::atomic<std::uint64_t> issued{0};
  bool may_issue() {
    if (clock_type::now() >= end) return false;
    return opt.messages == 0 || issued.fetch_add(1) < opt.messages;
  }
};

// The EOM answer in one word: continue, quarantine, accept, discard, reject, tempfail, or the 'y' code ("451").
std::string reply_word(const rg::test::milter_outcome& o) {
  if (const auto* s = o.stopped())
    return "stopped-at-" + std::string(rg::test::stage_name(s->stage)) + ":" + std::string(1, s->final_command());
  if (o.quarantined()) return "quarantine";
  switch (o.final_command()) {
    case 'c': return "continue";
    case 'a': return "accept";
    case 'd': return "discard";
    case 'r': return "reject";
    case 't': return "tempfail";
    case 'y': return o.eom.back().data.substr(0, 3);
    default: return std::string("eom:") + o.final_command();
  }
}

rg::test::milter_connection connection_of(const options& opt, std::size_t id) {
  rg::test::milter_connection c;  // cleanup's fake localhost
  if (opt.smtpd) {
    c.host = "[127.0.0.1]";
    c.port = static_cast<std::uint16_t>(30000 + id % 30000);
    c.macros = {{"j", "mx.bench.test"}, {"{daemon_name}", "mx.bench.test"}, {"v", "Postfix 3.7.11"},
                {"_", "unknown [127.0.0.1]"}};
    c.helo = "client.bench.test";
  }
  return c;
}

rg::test::milter_message message_of(const options& opt, std::size_t user, const std::string& queue_id) {
  const std::string u = std::to_string(user);
  const std::string sender = "user" + u + "@bench.test", rcpt = "rcpt-" + u + "@example.net";
  auto msg = rg::test::sendmail_message(queue_id, sender, {rcpt});
  if (opt.smtpd) {
    // smtpd: the login at MAIL, no queue ID before the first accepted RCPT, addresses in angle brackets.
    msg.mail_macros = {{"{auth_type}", "PLAIN"}, {"{auth_authen}", "user" + u}, {"{mail_addr}", sender}};
    msg.mail_args = {"<" + sender + ">"};
    msg.rcpts = {{{"<" + rcpt + ">"}, {{"{rcpt_addr}", rcpt}}}};
  }
  return msg;
}

void run_client(shared_state& st, std::size_t id, thread_result& out) {
  const options& opt = st.opt;
  std::mt19937_64 rng(opt.seed * 1000003u + id);
  rg::test::milter_client_options copt;
  copt.timeout = std::chrono::milliseconds(opt.timeout_ms);
  const auto conn = connection_of(opt, id);
  std::unique_ptr<milter_client> c;
  std::size_t on_this_connection = 0;
  std::uint64_t n = 0;
  auto error = [&](const std::string& why) {
    ++out.errors;
    if (out.first_error.empty()) out.first_error = why;
    c.reset();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // a refused connection must not spin
  };
  while (st.may_issue()) {
    char queue_id[32];
    std::snprintf(queue_id, sizeof queue_id, "%zX%06llX", id, static_cast<unsigned long long>(++n));
    const auto msg = message_of(opt, std::uniform_int_distribution<std::size_t>(0, opt.users - 1)(rng), queue_id);
    const auto t0 = clock_type::now();
    if (!c) {
      try {
        c = std::make_unique<milter_client>(opt.connect, copt);
      } catch (const std::exception& e) {
        error(e.what());
        continue;
      }
      const auto neg = c->negotiate();
      if (!neg) {
        error("negotiate: " + c->error());
        continue;
      }
      if (!out.filter) out.filter = neg;
      const auto o = c->open(conn);
      if (!o.ok() || o.stopped()) {
        error(o.ok() ? "connection refused at " + std::string(rg::test::stage_name(o.stopped()->stage)) : o.error);
        continue;
      }
      on_this_connection = 0;
    }
    const auto o = c->send(msg);
    if (!o.ok()) {
      error(o.error);
      continue;
    }
    if (++on_this_connection >= opt.per_connection) {
      c->quit();  // cleanup's end of every message; smtpd's at disconnect
      c.reset();
    } else if (!c->abort()) {  // smtpd's end of a message on a connection that goes on
      error("abort: " + c->error());
      continue;
    }
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(clock_type::now() - t0).count();
    out.latencies_us.push_back(static_cast<std::uint32_t>(std::min<long long>(us, UINT32_MAX)));
    ++out.replies[reply_word(o)];
  }
  if (c) c->quit();
}

std::uint32_t percentile(const std::vector<std::uint32_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  auto idx = static_cast<std::size_t>(p * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(idx, sorted.size() - 1)];
}

}  // namespace

int main(int argc, char** argv) {
  const options opt = parse_args(argc, argv);
  shared_state st{opt, {}};
  const auto start = clock_type::now();
  st.end = start + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(opt.seconds));
  std::vector<thread_result> results(opt.concurrency);
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < opt.concurrency; ++i)
    threads.emplace_back([&st, &results, i] { run_client(st, i, results[i]); });
  for (auto& t : threads) t.join();
  const double secs = std::chrono::duration<double>(clock_type::now() - start).count();

  std::vector<std::uint32_t> lat;
  std::map<std::string, std::uint64_t> replies;
  std::uint64_t errors = 0;
  for (auto& r : results) {
    lat.insert(lat.end(), r.latencies_us.begin(), r.latencies_us.end());
    for (auto& [w, k] : r.replies) replies[w] += k;
    errors += r.errors;
    if (!r.first_error.empty() && errors == r.errors) std::cerr << "milter_bench: first error: " << r.first_error << "\n";
  }
  std::sort(lat.begin(), lat.end());
  const double rate = secs > 0 ? static_cast<double>(lat.size()) / secs : 0;
  std::string acts;
  for (auto& [w, k] : replies) acts += (acts.empty() ? "" : ";") + w + ":" + std::to_string(k);
  if (opt.csv) {
    // label,concurrency,users,messages,errors,seconds,msg_per_s,p50_us,p90_us,p99_us,max_us,replies
    // (policy_bench's columns, so tests/bench/run.sh tables both)
    std::printf("%s,%zu,%zu,%zu,%llu,%.3f,%.0f,%u,%u,%u,%u,%s\n", opt.label.c_str(), opt.concurrency, opt.users,
                lat.size(), static_cast<unsigned long long>(errors), secs, rate, percentile(lat, 0.50),
                percentile(lat, 0.90), percentile(lat, 0.99), lat.empty() ? 0u : lat.back(), acts.c_str());
  } else {
    std::printf("%s: %s, %zu connections, %zu messages per connection, %zu users%s\n", opt.label.c_str(),
                opt.connect.c_str(), opt.concurrency, opt.per_connection, opt.users, opt.smtpd ? ", smtpd shape" : "");
    std::printf("  messages   %zu\n  errors     %llu\n  seconds    %.3f\n  msg/s      %.0f\n", lat.size(),
                static_cast<unsigned long long>(errors), secs, rate);
    std::printf("  latency us p50 %u  p90 %u  p99 %u  max %u\n", percentile(lat, 0.50), percentile(lat, 0.90),
                percentile(lat, 0.99), lat.empty() ? 0u : lat.back());
    if (results[0].filter)
      std::printf("  filter     version %u actions 0x%x protocol 0x%x\n", results[0].filter->version,
                  results[0].filter->actions, results[0].filter->protocol);
    std::printf("  replies   ");
    for (auto& [w, k] : replies) std::printf(" %s=%llu", w.c_str(), static_cast<unsigned long long>(k));
    std::printf("\n");
  }
  return errors == 0 && !lat.empty() ? 0 : 1;
}
