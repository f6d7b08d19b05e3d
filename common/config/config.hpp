// Daemon settings from /etc/rateguard/rateguard.conf (INI style, Boost.Program_options): one table of
// options with name, default, unit and bounds; parsing with file:line errors; the postconf -n style dump.
// The limits file is not read here (see rules.hpp).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine.hpp"
#include "modes.hpp"
#include "net_addr.hpp"
#include "store_types.hpp"
#include "values.hpp"

namespace rg {

enum class store_kind : std::uint8_t { memory, redis };

// What a listen value may be: "inet:HOST:PORT" (port 0: the kernel chooses), "inet:[V6]:PORT" or
// "unix:/path". load_config checks it, the daemon's listeners parse it the same way.
inline constexpr endpoint_syntax listen_syntax{
    .scheme_required = true, .default_port = 0, .port_zero_ok = true};

// Where a lower layer has the same setting, the default is taken from it (engine_settings, journal_caps,
// redis_defaults, default_memory_max_keys), so each default is written once.
struct daemon_config {
  std::string file;  // where it was read from ("" for built-in defaults)

  std::vector<std::string> listen{"inet:127.0.0.1:10033"};
  // Milter endpoints (same syntax as listen), repeatable; none by default. For sendmail and PHP mail()
  // (non_smtpd_milters on a pickup-only cleanup), or smtpd_milters.
  std::vector<std::string> milter;
  // The {daemon_name} (milter_macro_daemon_name) of the pickup-only cleanup whose header_checks write
  // X-RG-Submitter from pickup's Received: header; the submitting uid is trusted only on such connections.
  std::string milter_local_daemon_name = "rg-pickup";
  std::string unix_socket_mode = "0666";  // Postfix connects as its own user; the directory guards access
  std::string unix_socket_owner;          // user[:group] for unix sockets; empty: leave as created
  // Who the daemon becomes once every listener is bound (Postfix's mail_owner spirit): names, resolved at
  // start-up. Empty user: stay as started, which as root is refused unless allow_root.
  std::string user;
  std::string group;  // empty: the user's login group
  bool allow_root = false;
  std::size_t max_connections = 1024;
  // Peers that may use inet listeners (CIDR list); others are logged and closed. Unix sockets are guarded
  // by file permissions instead.
  std::vector<std::string> allow_clients{"127.0.0.0/8", "::1"};
  std::chrono::milliseconds idle_timeout{std::chrono::seconds(600)};
  std::chrono::milliseconds request_timeout{std::chrono::seconds(10)};
  std::chrono::milliseconds shutdown_timeout{std::chrono::seconds(5)};

  std::string limits = "/etc/rateguard/limits.conf";
  run_mode mode = engine_settings{}.mode;
  unsigned ipv6_prefix = engine_settings{}.ipv6_prefix;
  // A tripped hold rule locks its key this long (every later message of the key is held); 0: no locks.
  std::chrono::milliseconds lock_time{std::chrono::hours(24)};
  // Burst rules (burst:Kx:F/W): how fast a key's baseline forgets, and how much history it needs first.
  std::chrono::milliseconds baseline_half_life{engine_settings{}.baseline_half_life};
  std::chrono::milliseconds baseline_warmup{engine_settings{}.baseline_warmup};
  // Novelty rules (new_networks, new_domains): how long a value stays familiar; what a client network is.
  std::chrono::milliseconds familiar_time{engine_settings{}.familiar_time};
  unsigned network_ipv4_prefix = engine_settings{}.network_ipv4_prefix;
  unsigned network_ipv6_prefix = engine_settings{}.network_ipv6_prefix;
  // rateguardctl's unix socket (mode 0600); empty: no control socket.
  std::string control_socket = "/run/rateguard/control";

  store_kind store = store_kind::memory;
  std::string redis{redis_defaults::address};
  std::string redis_username;
  std::string redis_password_file;
  int redis_db = redis_defaults::db;
  std::chrono::milliseconds redis_timeout{redis_defaults::timeout};
  std::size_t redis_max_pending = redis_defaults::max_pending;
  std::string redis_prefix{redis_defaults::key_prefix};
  // Sentinel (README "High availability"): non-empty `sentinels` replaces `redis`.
  std::vector<std::string> sentinels;
  std::string sentinel_master;
  std::string sentinel_username;
  std::string sentinel_password_file;
  // TLS to Redis (and to the sentinels).
  bool redis_tls = false;
  std::string redis_tls_ca_file;
  std::string redis_tls_cert_file;
  std::string redis_tls_key_file;
  std::string redis_tls_server_name;
  store_error_action on_store_error = engine_settings{}.on_store_error;
  std::size_t memory_max_keys = default_memory_max_keys;
  // The hold journal's caps (both stores): entries kept at most, and their age at most.
  std::size_t hold_journal_max = journal_caps{}.max_entries;
  std::chrono::milliseconds hold_journal_age{journal_caps{}.max_age};

  // Prometheus /metrics and /healthz over HTTP: "inet:HOST:PORT" (listen's syntax, inet only); empty: off.
  std::string metrics;
  // Postfix's hold queue directory, sampled once a minute for the hold queue gauges; empty: not sampled.
  std::string hold_queue_dir;
  // The anvil-style summary line in the log every this often; 0: none.
  std::chrono::milliseconds stats_interval{std::chrono::hours(1)};
  // A mail to this address for each new lock (through sendmail_path), or this program run with the facts in
  // its environment; neither: no notification.
  std::string notify;
  std::string notify_command;
  std::string sendmail_path = "/usr/sbin/sendmail";
  std::size_t notify_rate_limit = 10;  // notifications per hour at most; more locks are logged only
  // How long after a lock the notification waits, so it can name the messages held meanwhile.
  std::chrono::milliseconds notify_delay{std::chrono::minutes(1)};

  std::string log_target = "stderr";  // stderr | syslog | file:/path
  std::string log_format = "text";    // text | json
  std::string log_level = "info";     // debug | info | warning
  std::string syslog_facility = "mail";
  std::string syslog_name = "rateguardd";
};

struct config_error {
  std::string text;  // "file:line: why" (line omitted when unknown)
};

struct config_result {
  std::optional<daemon_config> config;
  std::vector<config_error> errors;
};

config_result load_config(const std::string& path);
// Settings that differ from the defaults, as "name = value" lines (like postconf -n).
std::vector<std::string> non_default_settings(const daemon_config& c);
// Every option with its default, for --help.
std::string config_help();

// One setting as its declaration describes it (the documentation is generated from these).
struct setting_doc {
  std::string name, type, default_value, bounds, meaning;
  bool reloadable = false;  // a reload (SIGHUP) applies it; otherwise it needs a restart
};
std::vector<setting_doc> settings_doc();
// The settings rateguard.conf(5) and README list, from settings_doc(): a Markdown table, or roff (.TP entries).
std::string settings_markdown();
std::string settings_roff();

// Names of the settings whose values differ between `a` and `b`, among the reloadable ones or the others.
std::vector<std::string> changed_settings(const daemon_config& a, const daemon_config& b, bool reloadable);
// What a reload runs with: `running`, with every reloadable setting taken from `fresh`.
daemon_config apply_reloadable(const daemon_config& running, const daemon_config& fresh);

}  // namespace rg
