// policy_bench: closed-loop load generator for the Postfix policy protocol (issue 6). C persistent
// connections, each behaving like one smtpd process: send one full Postfix 3.7 RCPT request, wait for the
// whole reply, send the next. Also: --new-keys (a stream of logins never seen before, the memory store past
// memory_max_keys) with --watch (one login sent at a steady pace whose answers must switch from DUNNO to 450
// exactly at its limit), --order (the answers of one connection in sequence, run-length: peers.sh's correctness
// check), --warmup (seconds on the same connections before the measurement), --idle-connections (hold N idle
// connections for the RSS measurement), --print-lua and --print-function (the daemon's Redis function library and
// its check's name, for the redis-benchmark reference). Not a ctest test.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "policy_wire.hpp"
#include "redis_store.hpp"

// g++ 12 reports Asio's coroutine frame allocation (awaitable_frame_base's own operator new/delete pair) as
// mismatched when it inlines a coroutine's start into its caller: a false positive (as in redis_store.cpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using clock_type = std::chrono::steady_clock;
using socket_type = asio::generic::stream_protocol::socket;
constexpr auto tuple_awaitable = asio::as_tuple(use_awaitable);

namespace {

struct options {
  std::string connect;           // inet:HOST:PORT or unix:/path
  socket_type::endpoint_type endpoint;
  std::size_t concurrency = 8;
  std::uint64_t requests = 0;    // 0: no request bound (then --seconds bounds the run)
  double seconds = 3;            // 0: no time bound (then --requests bounds the run)
  double warmup = 0;             // seconds on the same connections before the measured --seconds (not counted)
  std::size_t users = 1000;
  double zipf_s = 1.1;
  double anon_share = 0.05;
  std::size_t max_rcpts = 3;     // messages have 1..max_rcpts recipients
  bool sequential = false;       // users 0,1,2,... in order instead of Zipf (memory per key measurement)
  double new_keys = 0;           // share of messages from a login never used before ("new<seed>.<client>.<n>")
  bool client_per_user = false;  // client_address 10.x.y.z from the user number instead of 127.0.0.1
  std::string watch;             // a login sent --watch-messages single-RCPT messages evenly over --seconds,
  std::size_t watch_messages = 0;  // on its own connection; exactly the first --watch-limit must be DUNNO and
  std::size_t watch_limit = 0;     // the rest 450 (the limit the daemon's rules give that login)
  std::uint64_t seed = 1;
  std::uint32_t timeout_ms = 5000;  // a reply later than this is an error and closes the connection
  std::size_t idle_connections = 0;
  bool csv = false;
  bool order = false;            // also report the answers in the order they came (run-length), for -c 1
  std::string label = "bench";
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "policy_bench: " << why << "\n"
            << "usage: policy_bench --connect inet:127.0.0.1:PORT|unix:/path [-c C] [--requests N] [--seconds S]\n"
            << "         [--users U] [--zipf S] [--anon-share F] [--max-rcpts K] [--sequential] [--seed N]\n"
            << "         [--timeout-ms MS] [--label NAME] [--csv] [--new-keys F] [--client-per-user]\n"
            << "         [--watch LOGIN --watch-messages M --watch-limit N] [--order] [--warmup S]\n"
            << "       policy_bench --connect ADDR --idle-connections N --seconds S\n"
            << "       policy_bench --print-lua | --print-function\n";
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
      else if (a == "--requests") o.requests = std::stoull(value());
      else if (a == "--seconds") o.seconds = std::stod(value());
      else if (a == "--warmup") o.warmup = std::stod(value());
      else if (a == "--users") o.users = std::stoul(value());
      else if (a == "--zipf") o.zipf_s = std::stod(value());
      else if (a == "--anon-share") o.anon_share = std::stod(value());
      else if (a == "--max-rcpts") o.max_rcpts = std::stoul(value());
      else if (a == "--sequential") o.sequential = true;
      else if (a == "--new-keys") o.new_keys = std::stod(value());
      else if (a == "--client-per-user") o.client_per_user = true;
      else if (a == "--watch") o.watch = value();
      else if (a == "--watch-messages") o.watch_messages = std::stoul(value());
      else if (a == "--watch-limit") o.watch_limit = std::stoul(value());
      else if (a == "--seed") o.seed = std::stoull(value());
      else if (a == "--timeout-ms") o.timeout_ms = static_cast<std::uint32_t>(std::stoul(value()));
      else if (a == "--idle-connections") o.idle_connections = std::stoul(value());
      else if (a == "--label") o.label = value();
      else if (a == "--csv") o.csv = true;
      else if (a == "--order") o.order = true;
      else if (a == "--print-lua") {
        std::cout << rg::redis_store::lua_script();
        std::exit(0);
      } else if (a == "--print-function") {
        std::cout << rg::redis_store::lua_function() << "\n";
        std::exit(0);
      } else usage("unknown option " + a);
    } catch (const std::logic_error&) {
      usage("bad value for " + a);
    }
  }
  if (o.connect.empty()) usage("--connect is required");
  try {
    o.endpoint = rg::test::parse_endpoint(o.connect);
  } catch (const std::invalid_argument& e) {
    usage(e.what());
  }
  if (o.concurrency == 0 || o.concurrency > 10000) usage("-c must be 1..10000");
  if (o.users == 0) usage("--users must be > 0");
  if (o.max_rcpts == 0) usage("--max-rcpts must be > 0");
  if (o.requests == 0 && o.seconds <= 0) usage("give --requests or --seconds (every run is bounded)");
  if (o.new_keys < 0 || o.new_keys > 1) usage("--new-keys must be 0..1");
  if (!o.watch.empty() && (o.watch_messages == 0 || o.seconds <= 0 || o.requests != 0))
    usage("--watch needs --watch-messages > 0 and a --seconds bound (no --requests)");
  if (o.warmup < 0 || o.warmup > 60) usage("--warmup must be 0..60 seconds");
  if (o.warmup > 0 && (o.requests != 0 || o.seconds <= 0 || !o.watch.empty()))
    usage("--warmup needs a --seconds bound (no --requests, no --watch)");
  if (o.order && o.concurrency != 1) usage("--order needs -c 1 (one connection: answers in the order sent)");
  if (o.seconds <= 0 || o.seconds > 3600) o.seconds = 3600;  // hard bound even with --requests only
  return o;
}

// Zipf over ranks 1..n by inverse CDF (binary search); rank r has weight 1/r^s.
class zipf_table {
 public:
  zipf_table(std::size_t n, double s) : cdf_(n) {
    double sum = 0;
    for (std::size_t r = 0; r < n; ++r) {
      sum += 1.0 / std::pow(static_cast<double>(r + 1), s);
      cdf_[r] = sum;
    }
    for (auto& c : cdf_) c /= sum;
  }
  std::size_t draw(std::mt19937_64& rng) const {
    const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
    auto it = std::lower_bound(cdf_.begin(), cdf_.end(), u);
    if (it == cdf_.end()) --it;
    return static_cast<std::size_t>(it - cdf_.begin());
  }

 private:
  std::vector<double> cdf_;
};

// What every client shares: the bounds, the counters, the latencies.
struct shared_state {
  shared_state(const options& o, socket_type::endpoint_type ep) : opt(o), endpoint(ep), zipf(o.users, o.zipf_s) {}
  const options& opt;
  socket_type::endpoint_type endpoint;
  zipf_table zipf;
  clock_type::time_point start, end;
  clock_type::time_point measure_from;  // start + --warmup: requests sent before are not counted
  clock_type::time_point last_counted;  // when the last counted reply came
  std::uint64_t issued = 0;     // requests started (the --requests bound)
  std::uint64_t completed = 0;  // requests with a valid reply
  std::uint64_t errors = 0;     // bad replies, timeouts, connection failures
  std::uint64_t next_sequential_user = 0;
  std::map<std::string, std::uint64_t> actions;
  std::vector<std::pair<std::string, std::uint64_t>> order;  // --order: runs of equal answers, in order
  std::vector<std::string> watch_actions;  // the watched login's answers, in order
  std::vector<std::uint32_t> latencies_us;
  bool stopping = false;

  bool may_issue() const {
    if (stopping) return false;
    if (opt.requests != 0 && issued >= opt.requests) return false;
    return clock_type::now() < end;
  }
};

// One smtpd process: its socket and, for the watchdog, when its current request began (0: idle).
struct client_slot {
  std::unique_ptr<socket_type> sock;
  clock_type::time_point busy_since{};
  bool busy = false;
};

// The full Postfix 3.7 RCPT request as in tests/data/postfix-requests/rcpt_submission.txt.
// `name`: the login ("user<user>" when empty).
void build_request(std::string& out, bool anon, std::size_t user, std::size_t rcpt_no, std::string_view instance,
                   unsigned client_port, std::string_view name = {}, bool client_per_user = false) {
  const std::string u = name.empty() ? std::to_string(user) : std::string(name);
  const std::string sender = anon ? "web" + u + "@local.test" : "user" + u + "@bench.test";
  const std::string recipient = "rcpt" + std::to_string(rcpt_no) + "-" + u + "@example.net";
  const std::string login = anon ? std::string() : name.empty() ? "user" + u : std::string(name);
  char client[32] = "127.0.0.1";
  if (client_per_user)
    std::snprintf(client, sizeof client, "10.%zu.%zu.%zu", (user >> 16) & 255, (user >> 8) & 255, user & 255);
  rg::test::postfix_request r;
  r.client_address = client;
  r.client_port = client_port;
  r.server_port = anon ? 25 : 587;
  r.helo_name = "client.bench.test";
  r.sender = sender;
  r.recipient = recipient;
  r.instance = instance;
  r.sasl_method = anon ? "" : "PLAIN";
  r.sasl_username = login;
  r.policy_context = anon ? "" : "submission";
  out.clear();
  rg::test::append_request(out, r);
}

awaitable<void> run_client(shared_state& st, client_slot& slot, std::size_t id) {
  std::mt19937_64 rng(st.opt.seed * 1000003u + id);
  std::string req, rbuf;
  std::uint64_t msg_no = 0;
  while (st.may_issue()) {
    if (!slot.sock || !slot.sock->is_open()) {
      slot.sock = std::make_unique<socket_type>(co_await asio::this_coro::executor);
      auto [ec] = co_await slot.sock->async_connect(st.endpoint, tuple_awaitable);
      if (ec) {
        ++st.errors;
        asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(50));
        co_await t.async_wait(tuple_awaitable);
        continue;
      }
      rbuf.clear();
    }
    // One message: a user (or an anonymous local sender), 1..max_rcpts recipients, one instance.
    const bool anon = !st.opt.sequential && std::uniform_real_distribution<double>(0, 1)(rng) < st.opt.anon_share;
    std::size_t user;
    if (st.opt.sequential) user = static_cast<std::size_t>(st.next_sequential_user++ % st.opt.users);
    else user = st.zipf.draw(rng);
    char fresh[64] = "";
    if (!anon && st.opt.new_keys > 0 && std::uniform_real_distribution<double>(0, 1)(rng) < st.opt.new_keys)
      std::snprintf(fresh, sizeof fresh, "new%llu.%zu.%llu", static_cast<unsigned long long>(st.opt.seed), id,
                    static_cast<unsigned long long>(msg_no + 1));
    const std::size_t rcpts = std::uniform_int_distribution<std::size_t>(1, st.opt.max_rcpts)(rng);
    char instance[48];
    std::snprintf(instance, sizeof instance, "%zx.%llx.%llx.0", id, static_cast<unsigned long long>(st.opt.seed),
                  static_cast<unsigned long long>(++msg_no));
    const auto port = static_cast<unsigned>(30000 + id % 30000);
    for (std::size_t r = 1; r <= rcpts && st.may_issue(); ++r) {
      build_request(req, anon, user, r, instance, port, fresh, st.opt.client_per_user);
      ++st.issued;
      const auto t0 = clock_type::now();
      slot.busy_since = t0;
      slot.busy = true;
      auto [wec, wn] = co_await asio::async_write(*slot.sock, asio::buffer(req), tuple_awaitable);
      std::size_t n = 0;
      boost::system::error_code rec = wec;
      if (!wec) std::tie(rec, n) = co_await asio::async_read_until(*slot.sock, asio::dynamic_buffer(rbuf), "\n\n",
                                                                   tuple_awaitable);
      slot.busy = false;
      if (rec) {
        ++st.errors;
        boost::system::error_code ignored;
        slot.sock->close(ignored);
        break;  // the message is lost with its connection; start a new one
      }
      const auto done = clock_type::now();
      const auto us = std::chrono::duration_cast<std::chrono::microseconds>(done - t0).count();
      std::string act = rg::test::action_of(std::string_view(rbuf).substr(0, n));
      rbuf.erase(0, n);
      if (act.empty() || !rbuf.empty()) {  // malformed, or bytes nobody asked for
        ++st.errors;
        boost::system::error_code ignored;
        slot.sock->close(ignored);
        break;
      }
      if (t0 < st.measure_from) continue;  // warm-up
      st.last_counted = done;
      ++st.completed;
      ++st.actions[act];
      if (st.opt.order) {
        if (st.order.empty() || st.order.back().first != act) st.order.emplace_back(act, 0);
        ++st.order.back().second;
      }
      st.latencies_us.push_back(static_cast<std::uint32_t>(std::min<long long>(us, UINT32_MAX)));
    }
  }
  if (slot.sock) {
    boost::system::error_code ignored;
    slot.sock->close(ignored);
  }
}

// The watched login: --watch-messages single-RCPT messages evenly over the run on one connection of its own.
awaitable<void> run_watch(shared_state& st) {
  socket_type sock(co_await asio::this_coro::executor);
  auto [cec] = co_await sock.async_connect(st.endpoint, tuple_awaitable);
  if (cec) {
    ++st.errors;
    co_return;
  }
  const auto step = (st.end - st.start) / static_cast<long>(st.opt.watch_messages + 1);
  asio::steady_timer t(co_await asio::this_coro::executor);
  std::string req, rbuf;
  for (std::size_t m = 1; m <= st.opt.watch_messages; ++m) {
    t.expires_at(st.start + step * static_cast<long>(m));
    co_await t.async_wait(tuple_awaitable);
    char instance[48];
    std::snprintf(instance, sizeof instance, "watch.%zu", m);
    build_request(req, false, 0, 1, instance, 29999, st.opt.watch);
    auto [wec, wn] = co_await asio::async_write(sock, asio::buffer(req), tuple_awaitable);
    std::size_t n = 0;
    boost::system::error_code rec = wec;
    if (!wec) std::tie(rec, n) = co_await asio::async_read_until(sock, asio::dynamic_buffer(rbuf), "\n\n", tuple_awaitable);
    if (rec) {
      ++st.errors;
      co_return;
    }
    st.watch_actions.push_back(rg::test::action_of(std::string_view(rbuf).substr(0, n)));
    rbuf.erase(0, n);
  }
}

// Closes the socket of a client whose reply is overdue, and ends everything at the hard deadline.
awaitable<void> watchdog(shared_state& st, std::vector<client_slot>& slots, std::size_t& running) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  const auto timeout = std::chrono::milliseconds(st.opt.timeout_ms);
  const auto hard_end = st.end + timeout + std::chrono::seconds(1);
  while (running > 0) {
    t.expires_after(std::chrono::milliseconds(50));
    co_await t.async_wait(tuple_awaitable);
    const auto now = clock_type::now();
    if (now >= st.end) st.stopping = true;
    for (auto& s : slots) {
      if (s.sock && s.busy && (now - s.busy_since > timeout || now > hard_end)) {
        boost::system::error_code ignored;
        s.sock->close(ignored);
      }
    }
  }
}

std::uint32_t percentile(const std::vector<std::uint32_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  auto idx = static_cast<std::size_t>(p * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(idx, sorted.size() - 1)];
}

int run_load(const options& opt) {
  asio::io_context io(1);
  shared_state st(opt, opt.endpoint);
  st.latencies_us.reserve(1 << 20);
  std::vector<client_slot> slots(opt.concurrency);
  std::size_t running = opt.concurrency;
  st.start = clock_type::now();
  st.measure_from =
      st.start + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(opt.warmup));
  st.last_counted = st.measure_from;
  st.end = st.measure_from +
           std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(opt.seconds));
  clock_type::time_point last_done = st.start;
  for (std::size_t i = 0; i < opt.concurrency; ++i) {
    asio::co_spawn(io, run_client(st, slots[i], i), [&](std::exception_ptr e) {
      if (e) ++st.errors;
      last_done = clock_type::now();
      --running;
    });
  }
  if (!opt.watch.empty()) {
    ++running;
    asio::co_spawn(io, run_watch(st), [&](std::exception_ptr e) {
      if (e) ++st.errors;
      --running;
    });
  }
  asio::co_spawn(io, watchdog(st, slots, running), asio::detached);
  io.run();
  // With a warm-up, the measured time ends at the last counted reply: a request of the warm-up still waiting (a
  // connection the server has not accepted yet) must not stretch it.
  const double secs = opt.warmup > 0 ? std::chrono::duration<double>(st.last_counted - st.measure_from).count()
                                     : std::chrono::duration<double>(last_done - st.start).count();
  auto& lat = st.latencies_us;
  std::sort(lat.begin(), lat.end());
  const double rps = secs > 0 ? static_cast<double>(st.completed) / secs : 0;
  std::string acts;
  for (auto& [a, n] : st.actions) acts += (acts.empty() ? "" : ";") + a + ":" + std::to_string(n);
  // --order: "order:DUNNO*100/450*50" (first 100 answers DUNNO, then 50 answers 450).
  if (opt.order) {
    acts += ";order:";
    for (std::size_t i = 0; i < st.order.size(); ++i)
      acts += (i ? "/" : "") + st.order[i].first + "*" + std::to_string(st.order[i].second);
  }
  // The watched login counts exactly when its first watch_limit answers are DUNNO and every later one is 450.
  bool watch_exact = true;
  if (!opt.watch.empty()) {
    std::size_t dunno = 0, deferred = 0;
    watch_exact = st.watch_actions.size() == opt.watch_messages;
    for (std::size_t i = 0; i < st.watch_actions.size(); ++i) {
      const bool want_dunno = i < opt.watch_limit;
      const bool ok = want_dunno ? st.watch_actions[i] == "DUNNO" : st.watch_actions[i] == "450";
      watch_exact = watch_exact && ok;
      (st.watch_actions[i] == "DUNNO" ? dunno : deferred) += 1;
    }
    acts += ";watch-" + std::string(watch_exact ? "exact" : "WRONG") + ":" + std::to_string(dunno) + "+" +
            std::to_string(deferred);
  }
  if (opt.csv) {
    // label,concurrency,users,requests,errors,seconds,req_per_s,p50_us,p90_us,p99_us,max_us,actions
    std::printf("%s,%zu,%zu,%llu,%llu,%.3f,%.0f,%u,%u,%u,%u,%s\n", opt.label.c_str(), opt.concurrency, opt.users,
                static_cast<unsigned long long>(st.completed), static_cast<unsigned long long>(st.errors), secs, rps,
                percentile(lat, 0.50), percentile(lat, 0.90), percentile(lat, 0.99), lat.empty() ? 0u : lat.back(),
                acts.c_str());
  } else {
    std::printf("%s: %s, %zu connections, %zu users\n", opt.label.c_str(), opt.connect.c_str(), opt.concurrency,
                opt.users);
    std::printf("  requests   %llu\n  errors     %llu\n  seconds    %.3f\n  req/s      %.0f\n",
                static_cast<unsigned long long>(st.completed), static_cast<unsigned long long>(st.errors), secs, rps);
    std::printf("  latency us p50 %u  p90 %u  p99 %u  max %u\n", percentile(lat, 0.50), percentile(lat, 0.90),
                percentile(lat, 0.99), lat.empty() ? 0u : lat.back());
    std::printf("  actions   ");
    for (auto& [a, n] : st.actions) std::printf(" %s=%llu", a.c_str(), static_cast<unsigned long long>(n));
    std::printf("\n");
    if (opt.order) {
      std::printf("  order     ");
      for (auto& [a, n] : st.order) std::printf(" %s*%llu", a.c_str(), static_cast<unsigned long long>(n));
      std::printf("\n");
    }
  }
  return st.errors == 0 && st.completed > 0 && watch_exact ? 0 : 1;
}

// Opens N connections, keeps them idle for --seconds (the daemon's RSS is read meanwhile), closes them.
int run_idle(const options& opt) {
  asio::io_context io(1);
  const auto& ep = opt.endpoint;
  std::vector<socket_type> socks;
  socks.reserve(opt.idle_connections);
  std::size_t ok = 0;
  for (std::size_t i = 0; i < opt.idle_connections; ++i) {
    socks.emplace_back(io);
    boost::system::error_code ec;
    socks.back().connect(ep, ec);
    if (!ec) ++ok;
  }
  std::printf("idle connections open: %zu of %zu\n", ok, opt.idle_connections);
  std::fflush(stdout);
  asio::steady_timer t(io, std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(opt.seconds)));
  t.wait();
  return ok == opt.idle_connections ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const options opt = parse_args(argc, argv);
  try {
    return opt.idle_connections > 0 ? run_idle(opt) : run_load(opt);
  } catch (const std::exception& e) {
    std::cerr << "policy_bench: " << e.what() << "\n";
    return 1;
  }
}
