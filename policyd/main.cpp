// rateguardd: command line, configuration and limits loading, store selection, binding, dropping root,
// signals, run. Runs in the foreground (systemd style, Type=notify: READY=1 once it serves). Order: config ->
// log -> bind -> drop -> Redis -> serve. Exit codes: 0 ok, 78 (EX_CONFIG) bad configuration, 71 (EX_OSERR)
// cannot bind or start.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <boost/program_options.hpp>
#include <csignal>
#include <cstring>
#include <fstream>
#include <iostream>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "config.hpp"
#include "control.hpp"
#include "ctl_format.hpp"
#include "daemon_stats.hpp"
#include "hold_queue.hpp"
#include "log_exception.hpp"
#include "logging.hpp"
#include "memory_store.hpp"
#include "metrics.hpp"
#include "metrics_http.hpp"
#include "notifier.hpp"
#include "policy_service.hpp"
#include "privileges.hpp"
#include "redis_store.hpp"
#include "rules.hpp"
#include "server.hpp"
#include "version.hpp"

namespace po = boost::program_options;
using namespace rg;

namespace {

constexpr int ex_config = 78;
constexpr int ex_oserr = 71;

struct loaded {
  std::optional<daemon_config> config;
  std::shared_ptr<const policy_snapshot> snapshot;
  std::vector<std::string> errors;
  std::vector<std::string> warnings;
};

// Reads both files; nothing is applied unless both are valid, so a reload is all or nothing.
loaded load_all(const std::string& config_path) {
  loaded out;
  auto cr = load_config(config_path);
  for (auto& e : cr.errors) out.errors.push_back(e.text);
  if (!cr.config) return out;
  auto lr = parse_limits_file(cr.config->limits);
  for (auto& e : lr.errors) out.errors.push_back(e.to_string());
  for (auto& w : lr.warnings) out.warnings.push_back(w.to_string());
  if (!lr.rules) return out;
  engine_settings settings;
  settings.mode = cr.config->mode;
  settings.ipv6_prefix = cr.config->ipv6_prefix;
  settings.on_store_error = cr.config->on_store_error;
  settings.lock_time = cr.config->lock_time;
  settings.baseline_half_life = cr.config->baseline_half_life;
  settings.baseline_warmup = cr.config->baseline_warmup;
  settings.familiar_time = cr.config->familiar_time;
  settings.network_ipv4_prefix = cr.config->network_ipv4_prefix;
  settings.network_ipv6_prefix = cr.config->network_ipv6_prefix;
  out.snapshot = std::make_shared<policy_snapshot>(make_snapshot(std::move(*lr.rules), settings));
  out.config = std::move(cr.config);
  return out;
}

// A Redis or sentinel password (`setting` names the file's setting): the file's first line, trailing white space and line ending removed. Read as root
// before privileges are dropped, so the file can stay root-only. Missing, unreadable or empty is fatal:
// an empty password would silently mean "no AUTH".
std::string read_secret(const std::string& setting, const std::string& path, std::vector<std::string>& warnings) {
  const std::string what = setting + " " + path;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw std::runtime_error(what + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw std::runtime_error(what + ": not a regular file");
  std::ifstream f(path);
  if (!f) throw std::runtime_error(what + ": cannot open: " + std::strerror(errno));
  std::string line;
  std::getline(f, line);
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
  if (line.empty()) throw std::runtime_error(what + ": the first line is empty");
  if (st.st_mode & S_IROTH)
    warnings.push_back(what + " is readable by every user: chmod 600 (it is read before privileges are dropped)");
  return line;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// The daemon's own series: build, configuration generation and reloads.
struct daemon_metrics {
  explicit daemon_metrics(metrics::registry& r)
      : generation(r.add_gauge("rateguard_config_generation",
                               "Configuration generation: 1 at start, one more per reload applied")),
        loaded(r.add_gauge("rateguard_config_load_timestamp_seconds",
                           "When the configuration in force was loaded (Unix time)")),
        reloads(r.counters("rateguard_reloads_total", "Reloads (SIGHUP) by result (ok, refused)", {{"result"}})) {
    r.gauges("rateguard_build_info", "The running rateguardd (always 1)", {{"version"}}).with({version}).set(1);
    generation.set(1);
    loaded.set(now_seconds());
    reloads.with({"ok"});
    reloads.with({"refused"});
  }
  metrics::gauge& generation;
  metrics::gauge& loaded;
  metrics::family<metrics::counter>& reloads;
};

// Every stats_interval (read anew each time: a reload applies it), the stats line; 0: checked again later.
boost::asio::awaitable<void> stats_loop(boost::asio::io_context& io, const daemon_config& cfg, policy_service& service,
                                        daemon_stats& stats) {
  boost::asio::steady_timer timer(io);
  for (;;) {
    const auto interval = cfg.stats_interval;
    timer.expires_after(interval.count() > 0 ? interval : std::chrono::milliseconds(std::chrono::minutes(1)));
    co_await timer.async_wait(boost::asio::use_awaitable);
    if (interval.count() == 0 || cfg.stats_interval != interval) continue;
    // Named, not temporaries in the co_await expression (g++ 12, see server.cpp's serve_control).
    control_env env{service.counter_store(), service.snapshot(), cfg.lock_time, [&stats] { return stats.figures(true); }};
    std::string request = "command=stats\n\n";
    const std::string answer = co_await run_control(std::move(env), std::move(request));
    boost::system::error_code ec;
    const auto o = boost::json::parse(answer, ec);
    if (!ec && o.is_object()) spdlog::info("{}", stats_line(o.as_object()));
  }
}

}  // namespace

int main(int argc, char** argv) {
  // SIGHUP, SIGTERM, SIGINT and SIGUSR1 wait (blocked, pending) until the signal_sets below take them, so a
  // reload, a stop or a log reopen sent while the daemon starts is acted on once it runs, instead of killing
  // it with the default action (SIGUSR1's too: logrotate may signal a daemon that is just starting).
  sigset_t handled;
  sigemptyset(&handled);
  for (int sig : {SIGHUP, SIGTERM, SIGINT, SIGUSR1}) sigaddset(&handled, sig);
  pthread_sigmask(SIG_BLOCK, &handled, nullptr);

  std::string config_path = "/etc/rateguard/rateguard.conf";
  po::options_description cli("Usage: rateguardd [options]\n\nOptions");
  cli.add_options()
      ("config,c", po::value(&config_path)->value_name("FILE"), "configuration file (default /etc/rateguard/rateguard.conf)")
      ("check", "validate the configuration and the limits file, then exit (0, or 78 with file:line messages)")
      ("non-default,n", "print the settings that differ from their defaults, then exit")
      ("version", "print the version and exit")
      ("settings-doc", po::value<std::string>()->value_name("FORMAT"),
       "print every setting of rateguard.conf for the documentation (markdown, or roff for rateguard.conf(5)), then exit")
      ("help,h", "this text, and every setting of rateguard.conf with its default");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, cli), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "rateguardd: fatal: " << e.what() << "\n" << cli;
    return 64;  // EX_USAGE
  }
  if (vm.count("help")) {
    std::cout << cli << "\nSettings of rateguard.conf (name = default):\n" << config_help();
    return 0;
  }
  if (vm.count("settings-doc")) {
    const std::string f = vm["settings-doc"].as<std::string>();
    if (f != "markdown" && f != "roff") {
      std::cerr << "rateguardd: fatal: --settings-doc: \"" << f << "\" is not markdown or roff\n";
      return 64;
    }
    std::cout << (f == "roff" ? settings_roff() : settings_markdown());
    return 0;
  }
  if (vm.count("version")) {
    std::cout << "rateguardd " << version << "\n";
    return 0;
  }

  auto first = load_all(config_path);
  for (auto& w : first.warnings) std::cerr << "rateguardd: warning: " << w << "\n";
  if (!first.errors.empty()) {
    for (auto& e : first.errors) std::cerr << "rateguardd: fatal: " << e << "\n";
    return ex_config;
  }
  daemon_config cfg = *first.config;
  if (vm.count("non-default")) {
    for (auto& line : non_default_settings(cfg)) std::cout << line << "\n";
    return 0;
  }
  // Checks that need the system, before anything is bound: the account to become and the Redis secret.
  // --check does them too, except whether the account it runs as could switch to `user`.
  std::optional<identity> become;
  std::string redis_password, sentinel_password;
  std::vector<std::string> startup_warnings;
  try {
    if (vm.count("check") && !cfg.user.empty())
      resolve_identity(cfg.user, cfg.group);
    else
      become = identity_to_become(cfg);
    if (cfg.store == store_kind::redis && !cfg.redis_password_file.empty())
      redis_password = read_secret("redis_password_file", cfg.redis_password_file, startup_warnings);
    if (cfg.store == store_kind::redis && !cfg.sentinel_password_file.empty())
      sentinel_password = read_secret("sentinel_password_file", cfg.sentinel_password_file, startup_warnings);
  } catch (const std::exception& e) {
    std::cerr << "rateguardd: fatal: " << config_path << ": " << e.what() << "\n";
    return ex_config;
  }
  for (auto& w : startup_warnings) std::cerr << "rateguardd: warning: " << w << "\n";
  if (vm.count("check")) {
    std::cout << config_path << ": ok; " << cfg.limits << ": " << first.snapshot->rules.rules().size()
              << " rules\n";
    return 0;
  }

  log_setup logs;
  try {
    logs = setup_logging(cfg);
  } catch (const std::exception& e) {
    std::cerr << "rateguardd: fatal: log_target " << cfg.log_target << ": " << e.what() << "\n";
    return ex_config;
  }
  for (auto& w : first.warnings) spdlog::warn("{}", w);
  for (auto& w : startup_warnings) spdlog::warn("{}", w);

  // A notify child that exits before reading its input must not kill the daemon on the write.
  std::signal(SIGPIPE, SIG_IGN);
  boost::asio::io_context io(1);
  boost::asio::signal_set signals(io, SIGHUP, SIGTERM, SIGINT);
  // SIGUSR1: reopen log_target's file (logrotate's postrotate, after it renamed the file); nothing else.
  boost::asio::signal_set reopen_signal(io, SIGUSR1);
  pthread_sigmask(SIG_UNBLOCK, &handled, nullptr);  // what arrived meanwhile waits in the signal_sets
  std::unique_ptr<store> st;
  redis_store* redis = nullptr;
  try {
    if (cfg.store == store_kind::redis) {
      redis_options ro;
      ro.address = cfg.redis;
      ro.username = cfg.redis_username;
      ro.password = std::move(redis_password);
      ro.db = cfg.redis_db;
      ro.timeout = cfg.redis_timeout;
      ro.max_pending = cfg.redis_max_pending;
      ro.key_prefix = cfg.redis_prefix;
      ro.journal = {cfg.hold_journal_max, cfg.hold_journal_age};
      ro.sentinel = {cfg.sentinels, cfg.sentinel_master, cfg.sentinel_username, std::move(sentinel_password)};
      ro.tls = {cfg.redis_tls, cfg.redis_tls_ca_file, cfg.redis_tls_cert_file, cfg.redis_tls_key_file,
                cfg.redis_tls_server_name};
      auto r = std::make_unique<redis_store>(io.get_executor(), ro);
      redis = r.get();
      st = std::move(r);
    } else {
      st = std::make_unique<memory_store>(cfg.memory_max_keys, memory_store::clock_fn{},
                                          journal_caps{cfg.hold_journal_max, cfg.hold_journal_age}, io.get_executor());
    }
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return ex_config;
  }

  metrics::registry registry;
  daemon_metrics dm(registry);
  notifier notify(io, *st, registry);
  notify.apply(cfg);
  service_settings ss;
  ss.format = cfg.log_format == "json" ? log_format::json : log_format::text;
  ss.metrics = &registry;
  ss.on_lock = [&notify](const lock_event& e) { notify.on_lock(e); };
  policy_service service(io.get_executor(), *st, first.snapshot, std::move(ss));
  server srv(io, cfg, service, registry);
  registry.add_gauge_fn("rateguard_store_up", "1 when the store answers (Redis connected; the memory store always)",
                        [redis_ptr = &redis] { return !*redis_ptr || (*redis_ptr)->connected() ? 1.0 : 0.0; });
  std::optional<hold_queue_sampler> hold_queue;  // started once privileges are dropped: it reads as the daemon's user
  daemon_stats stats(service, srv);
  srv.set_stats([&stats] { return stats.figures(false); });
  bool stopping = false;
  metrics_http metrics_front(io, {[&registry] { return registry.render(); },
                                  [&]() -> std::string {
                                    if (stopping) return "shutting down";
                                    if (redis && !redis->connected()) return "store unreachable: redis " + cfg.redis;
                                    return {};
                                  },
                                  [&srv](const boost::asio::ip::address& a) { return srv.allows(a); }});
  try {
    srv.bind();
    if (!cfg.metrics.empty()) metrics_front.bind(cfg.metrics);
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return ex_oserr;
  }
  // Bound (and the log file open): nothing else needs root. Redis is reached only after this.
  if (become) {
    try {
      drop_privileges(*become);
    } catch (const std::exception& e) {
      spdlog::critical("{}", e.what());
      return ex_oserr;
    }
    spdlog::info("running as user {} (uid {}, gid {})", become->user, become->uid, become->gid);
  } else if (geteuid() == 0) {
    spdlog::warn("running as root (allow_root = yes): a flaw in this daemon would give away the machine");
  }
  if (redis) {
    redis->start();
    // Give the first connection a moment before serving, so a fresh start does not answer its first
    // requests with on_store_error; bounded, because a Redis that is down must not keep mail waiting.
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    while (!redis->connected() && redis->refused().empty() && std::chrono::steady_clock::now() < until)
      io.run_one_for(std::chrono::milliseconds(10));
    // A Redis Cluster node: every request would fail, so the daemon does not start (the store logged why).
    if (!redis->refused().empty()) {
      spdlog::critical("fatal: {}: not starting", config_path);
      return ex_config;
    }
    if (!redis->connected())
      spdlog::warn("redis {} not reachable yet: answering with on_store_error meanwhile",
                   cfg.sentinels.empty() ? cfg.redis : "master " + cfg.sentinel_master);
  }
  if (!cfg.hold_queue_dir.empty()) hold_queue.emplace(io, cfg.hold_queue_dir, registry);
  srv.start();
  metrics_front.start();
  boost::asio::co_spawn(io, stats_loop(io, cfg, service, stats), [](std::exception_ptr e) { log_exception(e, "stats"); });
  spdlog::info("rateguardd {} started: store={} mode={} limits={} ({} rules)", version, st->name(),
               cfg.mode == run_mode::enforce ? "enforce" : "dry-run", cfg.limits,
               first.snapshot->rules.rules().size());
  // Every listener is up: `systemctl start` returns now (Type=notify). A no-op without NOTIFY_SOCKET.
  sd_notify(0, "READY=1");

  // log_target = file: opened anew (SIGUSR1, and every reload), for logrotate.
  auto reopen_log = [&] {
    if (!logs.file) return;
    if (auto error = logs.file->reopen(); error.empty())
      spdlog::info("reopened log file {}", logs.file->path());
    else
      spdlog::error("cannot reopen log file: {}: still writing to the file opened before", error);
  };
  std::function<void(boost::system::error_code, int)> on_reopen = [&](boost::system::error_code ec, int) {
    if (ec) return;
    reopen_log();
    reopen_signal.async_wait(on_reopen);
  };
  reopen_signal.async_wait(on_reopen);

  std::function<void(boost::system::error_code, int)> on_signal = [&](boost::system::error_code ec, int sig) {
    if (ec) return;
    if (sig == SIGHUP) {
      sd_notify(0, "RELOADING=1");
      reopen_log();
      auto next = load_all(config_path);
      if (!next.errors.empty()) {
        dm.reloads.with({"refused"}).inc();
        for (auto& e : next.errors) spdlog::error("reload refused: {}", e);
        spdlog::warn("reload refused: keeping the previous configuration and limits");
      } else {
        for (auto& w : next.warnings) spdlog::warn("{}", w);
        // Every setting a reload can apply is applied; the others are named, and keep their running values.
        const auto restart = changed_settings(cfg, *next.config, false);
        const auto applied = changed_settings(cfg, *next.config, true);
        cfg = apply_reloadable(cfg, *next.config);
        srv.apply(cfg);
        notify.apply(cfg);
        service.set_snapshot(next.snapshot);
        dm.reloads.with({"ok"}).inc();
        dm.generation.add(1);
        dm.loaded.set(now_seconds());
        service.set_log_format(cfg.log_format == "json" ? log_format::json : log_format::text);
        const auto names = [](const std::vector<std::string>& v) {
          std::string s;
          for (auto& n : v) s += (s.empty() ? "" : ", ") + n;
          return s;
        };
        spdlog::info("reload: {} ({} rules), mode={}; settings applied: {}", cfg.limits,
                     next.snapshot->rules.rules().size(), cfg.mode == run_mode::enforce ? "enforce" : "dry-run",
                     applied.empty() ? "none changed" : names(applied));
        if (!restart.empty())
          spdlog::warn("reload: {} changed: restart rateguardd to apply (until then the running values stay)",
                       names(restart));
        apply_log_level(cfg.log_level);  // last, so a reload to log_level = warning still logs its own summary
      }
      sd_notify(0, "READY=1");
    } else if (!stopping) {
      stopping = true;
      sd_notify(0, "STOPPING=1");
      spdlog::info("signal {}: finishing requests in flight, then exiting", sig == SIGTERM ? "TERM" : "INT");
      metrics_front.close();
      srv.shutdown([&](std::size_t cut) {
        if (cut) spdlog::warn("shutdown_timeout reached: closed {} connections with requests in flight", cut);
        if (redis) redis->stop();
        signals.cancel();
        reopen_signal.cancel();
        io.stop();
      });
    } else {
      spdlog::warn("second signal: exiting now");
      io.stop();
      return;
    }
    signals.async_wait(on_signal);
  };
  signals.async_wait(on_signal);
  io.run();
  spdlog::info("stopped");
  return 0;
}
