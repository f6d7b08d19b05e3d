// The metrics front against the real daemon: /metrics and /healthz over HTTP, promtool's check of a real
// scrape, allow_clients, the hold queue gauges, and Debian's real prometheus scraping the daemon during a
// load and finding the load driver's exact totals per action through its HTTP API. The alert rules and the
// Grafana dashboard name only metrics that a real scrape shows.
#include <catch2/catch.hpp>
#include <sys/stat.h>
#include <utime.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "daemon_fixture.hpp"
#include "load_driver.hpp"
#include "prometheus_fixture.hpp"
#include "redis_fixture.hpp"

using namespace rg::test;

namespace {

const std::string source_dir = RG_SOURCE_DIR;

// The port the daemon's metrics listener got (metrics = inet:127.0.0.1:0), from its start line.
unsigned short metrics_port(const daemon_process& d) {
  const std::string log = d.log();
  const std::string marker = "metrics on http://127.0.0.1:";
  const auto at = log.find(marker);
  REQUIRE(at != std::string::npos);
  return static_cast<unsigned short>(std::stoul(log.substr(at + marker.size())));
}

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Metric names of a scrape: the first word of every sample line.
std::set<std::string> scraped_names(const std::string& body) {
  std::set<std::string> names;
  std::istringstream in(body);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    names.insert(line.substr(0, line.find_first_of("{ ")));
  }
  return names;
}

// Every rateguard_* name an expression mentions.
std::set<std::string> named_metrics(const std::string& text) {
  std::set<std::string> names;
  const std::regex name(R"(rateguard_[a-z_]+)");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), name); it != std::sregex_iterator(); ++it)
    names.insert(it->str());
  return names;
}

// A scrape with the hold queue sampled: every metric the daemon can expose is in it.
struct metrics_daemon {
  std::string hold_dir;
  daemon_process d;
  explicit metrics_daemon(const std::string& limits, const std::string& extra = "")
      : hold_dir(make_hold_dir()),
        d(limits, "metrics = inet:127.0.0.1:0\nhold_queue_dir = " + hold_dir + "\n" + extra) {}
  ~metrics_daemon() {
    std::error_code ec;
    std::filesystem::remove_all(hold_dir, ec);
  }
  static std::string make_hold_dir() {
    char tmpl[] = "/tmp/rg-hold-XXXXXX";
    REQUIRE(mkdtemp(tmpl));
    return tmpl;
  }
};

}  // namespace

TEST_CASE("metrics: /metrics, /healthz, promtool check metrics, 404 and 405", "[metrics]") {
  metrics_daemon m("sasl_username * 2/1h defer\n");
  const auto port = metrics_port(m.d);
  policy_client c(m.d.socket_path());
  CHECK(c.ask(rcpt_request("alice", "a1")) == "DUNNO");
  CHECK(c.ask(rcpt_request("alice", "a2")) == "DUNNO");
  CHECK(c.ask(rcpt_request("alice", "a3")).starts_with("450"));

  const auto r = http_get(port, "/metrics");
  REQUIRE(r.status == 200);
  CHECK(r.content_type == "text/plain; version=0.0.4; charset=utf-8");
  CHECK(r.body.find("rateguard_requests_total{front=\"policy\",protocol_state=\"RCPT\"} 3\n") != std::string::npos);
  CHECK(r.body.find("rateguard_decisions_total{action=\"none\",rule=\"none\"} 2\n") != std::string::npos);
  INFO(r.body);
  // rule: file:line as the decision log writes it (the limits file's path as rateguard.conf resolves it).
  CHECK(r.body.find("rateguard_decisions_total{action=\"defer\",rule=\"" + m.d.dir() + "/limits.conf:1\"} 1\n") !=
        std::string::npos);
  CHECK(r.body.find("rateguard_store_request_duration_seconds_count 3\n") != std::string::npos);
  CHECK(r.body.find("rateguard_connections_open{front=\"policy\"} 1\n") != std::string::npos);
  CHECK(r.body.find("rateguard_build_info{version=\"" RG_VERSION "\"} 1\n") != std::string::npos);
  CHECK(r.body.find("rateguard_store_up 1\n") != std::string::npos);

  // promtool's own check of the exposition (names, types, help, units).
  const std::string file = m.d.dir() + "/scrape.txt";
  std::ofstream(file) << r.body;
  std::string out;
  CHECK(run_command({"sh", "-c", "promtool check metrics < " + file}, &out) == 0);
  INFO(out);
  CHECK(out.find("error") == std::string::npos);

  const auto h = http_get(port, "/healthz");
  CHECK(h.status == 200);
  CHECK(h.body == "ok\n");
  CHECK(http_get(port, "/other").status == 404);
  CHECK(http_get(port, "/metrics?x=1").status == 200);
}

TEST_CASE("metrics: the hold queue gauges count the files of hold_queue_dir and the oldest's age", "[metrics]") {
  const std::string dir = metrics_daemon::make_hold_dir();
  std::filesystem::create_directories(dir + "/A");
  for (const char* name : {"4F2A1B3C", "5B6C7D8E", "A/9F0E1D2C"}) std::ofstream(dir + "/" + name) << "x";
  // The oldest held two hours ago.
  const auto two_hours_ago = std::chrono::system_clock::now() - std::chrono::hours(2);
  const struct utimbuf t{std::chrono::system_clock::to_time_t(two_hours_ago), std::chrono::system_clock::to_time_t(two_hours_ago)};
  REQUIRE(utime((dir + "/5B6C7D8E").c_str(), &t) == 0);
  {
    daemon_process d("sasl_username * 2/1h defer\n", "metrics = inet:127.0.0.1:0\nhold_queue_dir = " + dir + "\n");
    const auto port = metrics_port(d);
    std::string body;
    // The first sample is taken at start, on the sampler's thread: wait for it (bounded).
    for (int i = 0; i < 200 && body.find("rateguard_hold_queue_messages 3\n") == std::string::npos; ++i) {
      body = http_get(port, "/metrics").body;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    INFO(body);
    CHECK(body.find("rateguard_hold_queue_messages 3\n") != std::string::npos);
    const auto at = body.find("\nrateguard_hold_queue_oldest_age_seconds ");
    REQUIRE(at != std::string::npos);
    const double age = std::stod(body.substr(at + 41));
    CHECK(age >= 7200);
    CHECK(age < 7200 + 3600);
  }
  {
    // Unreadable (missing here; mode 0700 postfix in real life): -1 and a warning, the daemon serves on.
    daemon_process d("sasl_username * 2/1h defer\n",
                     "metrics = inet:127.0.0.1:0\nhold_queue_dir = " + dir + "/missing\n");
    CHECK(d.wait_for_log("hold_queue_dir " + dir + "/missing: cannot read it"));
    CHECK(http_get(metrics_port(d), "/metrics").body.find("rateguard_hold_queue_messages -1\n") != std::string::npos);
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("metrics: a client outside allow_clients is refused, and /healthz says 503 when the store is down", "[metrics]") {
  {
    daemon_process d("sasl_username * 2/1h defer\n", "metrics = inet:127.0.0.1:0\nallow_clients = 192.0.2.0/24\n");
    CHECK(http_get(metrics_port(d), "/metrics", std::chrono::seconds(5)).status == 0);
    CHECK(d.wait_for_log("metrics: connection from 127.0.0.1 refused: not in allow_clients"));
  }
  {
    // Redis on a port nothing listens on.
    const auto dead = free_loopback_port();
    daemon_process d("sasl_username * 2/1h defer\n", "metrics = inet:127.0.0.1:0\nstore = redis\nredis = 127.0.0.1:" +
                                                         std::to_string(dead) + "\nredis_timeout = 200ms\n");
    const auto h = http_get(metrics_port(d), "/healthz");
    CHECK(h.status == 503);
    CHECK(h.body == "store unreachable: redis 127.0.0.1:" + std::to_string(dead) + "\n");
    policy_client c(d.socket_path());
    CHECK(c.ask(rcpt_request("alice", "a1")) == "DUNNO");  // on_store_error = dunno
    const auto body = http_get(metrics_port(d), "/metrics").body;
    CHECK(body.find("rateguard_store_up 0\n") != std::string::npos);
    CHECK(body.find("rateguard_store_error_answers_total{answer=\"dunno\"} 1\n") != std::string::npos);
    CHECK(body.find("rateguard_decisions_total{action=\"store_error\",rule=\"none\"} 1\n") != std::string::npos);
  }
}

TEST_CASE("metrics: a real prometheus scraping during a load finds the load's exact totals per action",
          "[metrics][prometheus]") {
  // load0..load3 pass 40 messages each, then are deferred; load4 is held from its 21st message on (a lock
  // holds the rest). Each connection sends exactly 100 requests.
  metrics_daemon m("sasl_username load4 20/1h hold\nsasl_username * 40/1h defer\n");
  const auto port = metrics_port(m.d);
  prometheus_process prom({"127.0.0.1:" + std::to_string(port)}, {source_dir + "/contrib/prometheus/rateguard.rules.yml"});

  load_options o;
  o.socket_path = m.d.socket_path();
  o.connections = 5;
  o.max_requests = 100;
  o.duration = std::chrono::seconds(120);  // bounded; 500 requests take well under a second
  o.pause = std::chrono::milliseconds(5);  // spread over a few scrapes
  load_driver load(o);
  load.wait();
  const auto s = load.summary();
  INFO(s.text());
  REQUIRE(s.sent == 500);
  REQUIRE(s.errors == 0);
  const std::map<std::string, double> expected{
      {"none", static_cast<double>(s.count("DUNNO"))},
      {"defer", static_cast<double>(s.count("450"))},
      {"hold", static_cast<double>(s.count("HOLD"))}};
  CHECK(expected.at("none") == 4 * 40 + 20);
  CHECK(expected.at("defer") == 4 * 60);
  CHECK(expected.at("hold") == 80);

  // Prometheus scrapes every second: poll its API (bounded) until its view matches the load's.
  std::map<std::string, double> seen;
  double requests = 0;
  for (int i = 0; i < 600; ++i) {
    seen.clear();
    for (const auto& [labels, v] : prom.query("sum by (action) (rateguard_decisions_total)")) {
      const auto q = labels.find('"');
      seen[labels.substr(q + 1, labels.rfind('"') - q - 1)] = v;
    }
    const auto r = prom.query("sum(rateguard_requests_total)");
    requests = r.empty() ? 0 : r.front().second;
    if (seen == expected && requests == 500) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  INFO(prom.log());
  CHECK(seen == expected);
  CHECK(requests == 500);
  const auto locks = prom.query("rateguard_locks_set_total");
  REQUIRE(locks.size() == 1);
  CHECK(locks.front().second == 1);
  // The rules file loaded into this Prometheus without error, all six alerts.
  const auto rules = http_get(prom.port(), "/api/v1/rules");
  CHECK(rules.status == 200);
  CHECK(named_metrics(rules.body).size() >= 6);
  for (const char* alert : {"RateguardStoreUnreachable", "RateguardStoreErrorAnswers", "RateguardLoginLocked",
                            "RateguardHoldStorm", "RateguardHeldMailOld", "RateguardReloadRefused"})
    CHECK(rules.body.find(alert) != std::string::npos);

  // Every metric the alert rules and the Grafana dashboard name is one this daemon exposes.
  const auto names = scraped_names(http_get(port, "/metrics").body);
  std::set<std::string> used = named_metrics(read_file(source_dir + "/contrib/prometheus/rateguard.rules.yml"));
  boost::system::error_code ec;
  const auto dashboard = boost::json::parse(read_file(source_dir + "/contrib/grafana/rateguard.json"), ec);
  REQUIRE_FALSE(ec);
  std::size_t exprs = 0;
  for (const auto& panel : dashboard.at("panels").as_array())
    for (const auto& target : panel.at("targets").as_array()) {
      ++exprs;
      for (const auto& n : named_metrics(std::string(target.at("expr").as_string()))) used.insert(n);
    }
  CHECK(exprs >= 10);
  for (const auto& n : used) {
    INFO(n);
    CHECK(names.count(n) == 1);
  }
}

TEST_CASE("notify_command: one run per new lock with the facts in its environment, failures logged, rate-limited",
          "[metrics][notify]") {
  char tmpl[] = "/tmp/rg-notify-XXXXXX";
  REQUIRE(mkdtemp(tmpl));
  const std::string dir = tmpl;
  // Writes its environment and input per key; fails (exit 3, with a message) for bob.
  std::ofstream(dir + "/notify.sh") << "#!/bin/sh\n"
                                       "env | grep '^RG_' | sort > \"" << dir << "/env.$RG_KEY\"\n"
                                       "cat > \"" << dir << "/mail.$RG_KEY\"\n"
                                       "case $RG_KEY in *bob) echo 'no route to pager'; exit 3 ;; esac\n";
  chmod((dir + "/notify.sh").c_str(), 0755);
  {
    daemon_process d("sasl_username * 1/1h hold\n", "metrics = inet:127.0.0.1:0\nnotify_command = " + dir +
                                                        "/notify.sh\nnotify_delay = 3s\nnotify_rate_limit = 2\n");
    policy_client c(d.socket_path());
    for (const char* user : {"alice", "bob", "carol"}) {
      CHECK(c.ask(rcpt_request(user, std::string(user) + "1", "1A2B3C")) == "DUNNO");
      CHECK(c.ask(rcpt_request(user, std::string(user) + "2", "4D5E6F")).starts_with("HOLD"));
      CHECK(c.ask(rcpt_request(user, std::string(user) + "3", "7A8B9C")).starts_with("HOLD"));  // locked: no new lock
    }
    CHECK(d.wait_for_log("notify: " + dir + "/notify.sh about the lock of sasl_username:alice: sent"));
    CHECK(d.wait_for_log("notify: " + dir + "/notify.sh about the lock of sasl_username:bob failed: " + dir +
                         "/notify.sh exited with status 3: no route to pager"));
    CHECK(d.wait_for_log("notify: 2 notifications in the last hour (notify_rate_limit): none sent for the lock of "
                         "sasl_username:carol"));
    std::string body;
    for (int i = 0; i < 100 && body.find("result=\"failed\"} 1") == std::string::npos; ++i) {
      body = http_get(metrics_port(d), "/metrics").body;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    CHECK(body.find("rateguard_notifications_total{result=\"sent\"} 1\n") != std::string::npos);
    CHECK(body.find("rateguard_notifications_total{result=\"failed\"} 1\n") != std::string::npos);
    CHECK(body.find("rateguard_notifications_total{result=\"rate_limited\"} 1\n") != std::string::npos);
    CHECK(body.find("rateguard_locks_set_total 3\n") != std::string::npos);
    CHECK(body.find("rateguard_locks_in_force 3\n") != std::string::npos);
    CHECK(d.log_count("notify: ") == 3);
    // Locks in force follow rateguardctl: a release removes one, a lock by hand adds one (and notifies nobody).
    CHECK(d.ctl({"release", "sasl_username:alice"}) == 0);
    CHECK(d.ctl({"lock", "sasl_username:dave"}) == 0);
    CHECK(d.ctl({"reset", "sasl_username:bob"}) == 0);
    body = http_get(metrics_port(d), "/metrics").body;
    CHECK(body.find("rateguard_locks_in_force 2\n") != std::string::npos);
    CHECK(body.find("rateguard_locks_set_total 3\n") != std::string::npos);
  }
  const std::string env = read_file(dir + "/env.sasl_username:alice");
  CHECK(env.find("RG_KEY=sasl_username:alice\n") != std::string::npos);
  // Both held messages: each was journaled when the next request on the connection began a new message,
  // milliseconds after the lock, long before notify_delay (3 s) ran out.
  CHECK(env.find("RG_QUEUE_IDS=4D5E6F 7A8B9C\n") != std::string::npos);
  CHECK(env.find("RG_RELEASE_COMMAND=rateguardctl release 'sasl_username:alice'\n") != std::string::npos);
  CHECK(env.find("RG_RULE=") != std::string::npos);
  CHECK(env.find("RG_UNTIL=") != std::string::npos);
  const std::string mail = read_file(dir + "/mail.sasl_username:alice");
  CHECK(mail.find("  postsuper -H 4D5E6F\n") != std::string::npos);
  CHECK(mail.find("  postsuper -d 4D5E6F\n") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(dir + "/env.sasl_username:carol"));
  std::filesystem::remove_all(dir);
}
