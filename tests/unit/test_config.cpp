// rateguard.conf loading: every bad line reported with file:line, values checked against their bounds,
// relative paths resolved against the file's directory, and the postconf -n style dump.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <sstream>
#include <string>
#include <system_error>

#include <unistd.h>

#include "config.hpp"
#include "setting_examples.hpp"

using namespace rg;

namespace {
// One directory per process, removed at exit: ctest runs each test case as its own process, several at once, and
// a shared file would be rewritten by one test while another reads it.
struct conf_dir {
  std::filesystem::path path =
      std::filesystem::temp_directory_path() / ("rg-config-test-" + std::to_string(::getpid()));
  conf_dir() { std::filesystem::create_directories(path); }
  ~conf_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

std::string write_conf(const std::string& text) {
  static const conf_dir dir;
  auto path = (dir.path / "rateguard.conf").string();
  std::ofstream(path) << text;
  return path;
}
}  // namespace

TEST_CASE("bad settings are all reported with file and line", "[config]") {
  auto path = write_conf("# comment\nlisten = inet:127.0.0.1:10033\nbogus = 1\n\nredis_timeout = 5 parsecs\n"
                         "allow_clients = 127.0.0.1, not-an-ip\nmode = enforce\nmax_connections = 0\n");
  auto r = load_config(path);
  CHECK_FALSE(r.config);
  REQUIRE(r.errors.size() == 4);
  CHECK(r.errors[0].text.find(path + ":3: unknown setting \"bogus\"") == 0);
  CHECK(r.errors[1].text.find(path + ":5: redis_timeout: ") == 0);
  CHECK(r.errors[2].text.find(path + ":6: allow_clients: \"not-an-ip\"") == 0);
  CHECK(r.errors[3].text.find(path + ":8: max_connections: ") == 0);
}

TEST_CASE("good settings are applied and only the changed ones are printed by -n", "[config]") {
  auto path = write_conf("listen = unix:/tmp/x.sock\nlisten = inet:[::1]:10033\nlimits = rules/limits.conf\n"
                         "redis_timeout = 250ms\nallow_clients = 10.0.0.0/8 ::1\non_store_error = defer\n");
  auto r = load_config(path);
  REQUIRE(r.config);
  const auto& c = *r.config;
  CHECK(c.listen == std::vector<std::string>{"unix:/tmp/x.sock", "inet:[::1]:10033"});
  CHECK(c.limits == (std::filesystem::path(path).parent_path() / "rules/limits.conf").string());
  CHECK(c.redis_timeout == std::chrono::milliseconds(250));
  CHECK(c.allow_clients == std::vector<std::string>{"10.0.0.0/8", "::1"});
  CHECK(c.on_store_error == store_error_action::defer);
  auto n = non_default_settings(c);
  CHECK(std::find(n.begin(), n.end(), "redis_timeout = 250ms") != n.end());
  CHECK(std::find(n.begin(), n.end(), "on_store_error = defer") != n.end());
  CHECK(std::none_of(n.begin(), n.end(), [](const std::string& s) { return s.rfind("store =", 0) == 0; }));
}

TEST_CASE("listen: each bad endpoint reported with file, line and why (rules/net_addr's parser)", "[config]") {
  auto path = write_conf("listen = inet:127.0.0.1:0\nlisten = inet:::1:10033\nlisten = 127.0.0.1:10033\n"
                         "listen = inet::10033\nlisten = unix:relative.sock\nlisten = inet:[::1]:99999\n");
  auto r = load_config(path);
  CHECK_FALSE(r.config);
  REQUIRE(r.errors.size() == 5);
  CHECK(r.errors[0].text.find(path + ":2: listen: bad listen address \"inet:::1:10033\": IPv6 addresses need "
                              "brackets") == 0);
  CHECK(r.errors[1].text.find(path + ":3: listen: bad listen address \"127.0.0.1:10033\": expected inet: or "
                              "unix:") == 0);
  CHECK(r.errors[2].text.find(path + ":4: listen: bad listen address \"inet::10033\": empty host") == 0);
  CHECK(r.errors[3].text.find(path + ":5: listen: bad listen address \"unix:relative.sock\": unix socket path "
                              "must be absolute") == 0);
  CHECK(r.errors[4].text.find(path + ":6: listen: bad listen address \"inet:[::1]:99999\": bad port") == 0);
}

TEST_CASE("the defaults shared with lower layers are theirs", "[config]") {
  const daemon_config c;
  const engine_settings e;
  CHECK(c.mode == e.mode);
  CHECK(c.ipv6_prefix == e.ipv6_prefix);
  CHECK(c.on_store_error == e.on_store_error);
  CHECK(c.baseline_half_life == e.baseline_half_life);
  CHECK(c.baseline_warmup == e.baseline_warmup);
  CHECK(c.hold_journal_max == journal_caps{}.max_entries);
  CHECK(c.hold_journal_age == journal_caps{}.max_age);
  CHECK(c.redis == redis_defaults::address);
  CHECK(c.redis_timeout == redis_defaults::timeout);
  CHECK(c.redis_max_pending == redis_defaults::max_pending);
  CHECK(c.redis_prefix == redis_defaults::key_prefix);
  CHECK(c.memory_max_keys == default_memory_max_keys);
  CHECK(store_request{}.half_life_ms == e.baseline_half_life.count());
}

TEST_CASE("durations follow Postfix: a bare number is seconds", "[config]") {
  CHECK(parse_duration("30") == std::chrono::milliseconds(30000));
  CHECK(parse_duration("100ms") == std::chrono::milliseconds(100));
  CHECK(parse_duration("2h") == std::chrono::milliseconds(7200000));
  CHECK_FALSE(parse_duration("h"));
  CHECK_FALSE(parse_duration("-1s"));
  // Beyond what milliseconds hold: refused, never wrapped into a small or negative value that passes a bound.
  CHECK_FALSE(parse_duration("200000000000d"));
  CHECK(parse_duration("106751991168d") == std::nullopt);
  CHECK(parse_duration("106751991d") == std::chrono::milliseconds(106751991LL * 86400000));
  CHECK(format_duration(std::chrono::milliseconds(600000)) == "10m");
  CHECK(format_duration(std::chrono::milliseconds(1500)) == "1500ms");
}

TEST_CASE("user group and allow_root are read and printed by -n and listed by --help", "[config]") {
  auto r = load_config(write_conf("user = rateguard\ngroup = postfix\nallow_root = yes\n"));
  REQUIRE(r.config);
  CHECK(r.config->user == "rateguard");
  CHECK(r.config->group == "postfix");
  CHECK(r.config->allow_root);
  auto n = non_default_settings(*r.config);
  for (const char* line : {"user = rateguard", "group = postfix", "allow_root = yes"})
    CHECK(std::find(n.begin(), n.end(), line) != n.end());
  CHECK_FALSE(daemon_config{}.allow_root);
  const auto help = config_help();
  for (const char* name : {"  user = \n", "  group = \n", "  allow_root = no\n"})
    CHECK(help.find(name) != std::string::npos);
}

TEST_CASE("settings that only make sense together are refused alone", "[config]") {
  auto path = write_conf("allow_root = maybe\ngroup = mail\nredis_username = rateguard\n");
  auto r = load_config(path);
  CHECK_FALSE(r.config);
  REQUIRE(r.errors.size() == 3);
  CHECK(r.errors[0].text == path + ":1: allow_root: \"maybe\" must be yes or no");
  CHECK(r.errors[1].text == path + ": group is set but user is not");
  CHECK(r.errors[2].text == path + ": redis_username is set but redis_password_file is not");
}

TEST_CASE("sentinel and TLS settings - addresses checked with file and line and pairs refused alone", "[config]") {
  auto path = write_conf("sentinels = 127.0.0.1:26379, [::1]:26380, localhost\nredis_tls_cert_file = c.pem\n");
  auto r = load_config(path);
  CHECK_FALSE(r.config);
  REQUIRE(r.errors.size() == 2);
  CHECK(r.errors[0].text == path + ": sentinels is set but sentinel_master is not");
  CHECK(r.errors[1].text == path + ": redis_tls_cert_file and redis_tls_key_file go together");
  path = write_conf("sentinels = 127.0.0.1:26379 /run/s.sock\nredis_tls = yes\n");
  r = load_config(path);
  REQUIRE(r.errors.size() == 2);
  CHECK(r.errors[0].text.starts_with(path + ":1: sentinels: bad sentinel address \"/run/s.sock\""));
  CHECK(r.errors[1].text == path + ": redis_tls = yes needs redis_tls_ca_file");
  path = write_conf("sentinels = 127.0.0.1, [::1]:26380\nsentinel_master = m\nredis_tls_ca_file = ca.pem\n");
  r = load_config(path);
  REQUIRE(r.config);
  CHECK(r.config->sentinels == std::vector<std::string>{"127.0.0.1", "[::1]:26380"});
  CHECK(r.config->redis_tls_ca_file == (std::filesystem::path(path).parent_path() / "ca.pem").string());
}

TEST_CASE("hold journal caps: defaults and bounds", "[config]") {
  const daemon_config d;
  CHECK(d.hold_journal_max == 10000);
  CHECK(d.hold_journal_age == std::chrono::hours(24 * 7));
  auto good = load_config(write_conf("hold_journal_max = 500\nhold_journal_age = 2d\n"));
  REQUIRE(good.config);
  CHECK(good.config->hold_journal_max == 500);
  CHECK(good.config->hold_journal_age == std::chrono::hours(48));
  auto n = non_default_settings(*good.config);
  CHECK(std::find(n.begin(), n.end(), "hold_journal_age = 2d") != n.end());
  auto path = write_conf("hold_journal_max = 0\nhold_journal_age = 10s\n");
  auto bad = load_config(path);
  CHECK_FALSE(bad.config);
  REQUIRE(bad.errors.size() == 2);
  CHECK(bad.errors[0].text.find(path + ":1: hold_journal_max: ") == 0);
  CHECK(bad.errors[1].text.find(path + ":2: hold_journal_age: ") == 0);
}

TEST_CASE("metrics, stats and notify settings: defaults, and bad values refused with file:line", "[config]") {
  const daemon_config d;
  CHECK(d.metrics.empty());
  CHECK(d.stats_interval == std::chrono::hours(1));
  CHECK(d.notify.empty());
  CHECK(d.sendmail_path == "/usr/sbin/sendmail");
  auto good = load_config(write_conf("metrics = inet:127.0.0.1:9133\nstats_interval = 0\nnotify = postmaster@example.com\n"
                                     "hold_queue_dir = /var/spool/postfix/hold\n"));
  REQUIRE(good.config);
  CHECK(good.config->metrics == "inet:127.0.0.1:9133");
  CHECK(good.config->stats_interval.count() == 0);
  auto path = write_conf("metrics = unix:/run/m.sock\nmetrics = 127.0.0.1\nnotify = -oi\nnotify = a@b, c@d\n"
                         "notify_command = bin/notify\nsendmail_path =\nnotify_rate_limit = 0\n");
  auto bad = load_config(path);
  CHECK_FALSE(bad.config);
  REQUIRE(bad.errors.size() == 7);
  CHECK(bad.errors[0].text == path + ":1: metrics: \"unix:/run/m.sock\": Prometheus scrapes over TCP: use inet:HOST:PORT");
  CHECK(bad.errors[1].text.find(path + ":2: metrics: bad metrics address \"127.0.0.1\"") == 0);
  CHECK(bad.errors[2].text == path + ":3: notify: \"-oi\" is not one mail address (user@domain)");
  CHECK(bad.errors[3].text == path + ":4: notify: \"a@b, c@d\" is not one mail address (user@domain)");
  CHECK(bad.errors[4].text == path + ":5: notify_command: \"bin/notify\" must be an absolute path or empty");
  CHECK(bad.errors[5].text == path + ":6: sendmail_path: \"\" must be an absolute path");
  CHECK(bad.errors[6].text.find(path + ":7: notify_rate_limit: ") == 0);
  auto both = write_conf("notify = postmaster@example.com\nnotify_command = /usr/local/bin/page\n");
  auto r = load_config(both);
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].text == both + ": notify and notify_command are both set: set one of them");
}

TEST_CASE("one declaration per setting: a reload applies exactly the reloadable ones", "[config][reload]") {
  const auto examples = test::setting_examples("/etc/rateguard/other-limits.conf");
  const auto docs = settings_doc();
  const auto base = write_conf("listen = unix:/tmp/x.sock\n");
  const auto running = load_config(base);
  REQUIRE(running.config);
  std::size_t reloadable = 0, restart_only = 0;
  for (const auto& d : docs) {
    INFO(d.name);
    REQUIRE(examples.count(d.name) == 1);  // every setting has an example value to change it with
    const auto& ex = examples.at(d.name);
    const auto fresh = load_config(write_conf("listen = unix:/tmp/x.sock\n" + d.name + " = " + ex.value + "\n" + ex.also));
    for (const auto& e : fresh.errors) INFO(e.text);
    REQUIRE(fresh.config);
    const auto applied = changed_settings(*running.config, *fresh.config, true);
    const auto restart = changed_settings(*running.config, *fresh.config, false);
    const auto& named = d.reloadable ? applied : restart;
    const auto& other = d.reloadable ? restart : applied;
    CHECK(std::find(named.begin(), named.end(), d.name) != named.end());
    CHECK(std::find(other.begin(), other.end(), d.name) == other.end());
    // What the reload runs with: the new value of a reloadable setting, the running value of the others.
    const daemon_config next = apply_reloadable(*running.config, *fresh.config);
    CHECK(changed_settings(next, *fresh.config, true).empty());
    CHECK(changed_settings(next, *running.config, false).empty());
    (d.reloadable ? reloadable : restart_only)++;
  }
  CHECK(examples.size() == docs.size());
  CHECK(reloadable >= 15);
  CHECK(restart_only >= 15);
}

TEST_CASE("README's settings table is the one the daemon's table generates", "[config][readme]") {
  std::ifstream f(std::string(RG_SOURCE_DIR) + "/README.md");
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string readme = ss.str();
  const std::string open = "<!-- settings-table: rateguardd --settings-doc=markdown -->\n", close = "<!-- /settings-table -->";
  const auto a = readme.find(open), b = readme.find(close);
  REQUIRE(a != std::string::npos);
  REQUIRE(b != std::string::npos);
  // On a difference: rateguardd --settings-doc=markdown prints the table to paste.
  CHECK(readme.substr(a + open.size(), b - a - open.size()) == settings_markdown());
  // Every setting once, with the way a reload treats it.
  for (const auto& d : settings_doc()) {
    INFO(d.name);
    CHECK(readme.find("| `" + d.name + "` |") != std::string::npos);
  }
}

TEST_CASE("the roff settings list names every setting with its default and whether a reload applies it",
          "[config]") {
  const std::string r = settings_roff();
  for (const auto& d : settings_doc()) {
    INFO(d.name);
    CHECK(r.find(".B " + d.name + "\n") != std::string::npos);
  }
  CHECK(r.find("request_timeout") != std::string::npos);
  CHECK(r.find("a reload applies it.") != std::string::npos);
  CHECK(r.find("needs a restart.") != std::string::npos);
  CHECK(r.find("\n.") != std::string::npos);
  // No line of text starts with a dot or a quote, which roff would read as a request.
  std::istringstream in(r);
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && (line[0] == '.' || line[0] == '\''))
      CHECK((line.rfind(".TP", 0) == 0 || line.rfind(".B ", 0) == 0 || line == ".br"));
}
