// Daemon settings from /etc/rateguard/rateguard.conf (INI style, Boost.Program_options): one table of
// options with name, default, unit and bounds; parsing with file:line errors; the postconf -n style dump.
// The limits file is not read here (see rules.hpp).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace rg {

enum class store_kind : std::uint8_t { memory, redis };
enum class run_mode : std::uint8_t { enforce, dry_run };
enum class store_error_action : std::uint8_t { dunno, defer };

struct daemon_config {
  std::string file;  // where it was read from ("" for built-in defaults)

  std::vector<std::string> listen{"inet:127.0.0.1:10033"};
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
  run_mode mode = run_mode::enforce;
  unsigned ipv6_prefix = 64;
  // A tripped hold rule locks its key this long (every later message of the key is held); 0: no locks.
  std::chrono::milliseconds lock_time{std::chrono::hours(24)};
  // Burst rules (burst:Kx:F/W): how fast a key's baseline forgets, and how much history it needs first.
  std::chrono::milliseconds baseline_half_life{std::chrono::hours(7 * 24)};
  std::chrono::milliseconds baseline_warmup{std::chrono::hours(24)};
  // rateguardctl's unix socket (mode 0600); empty: no control socket.
  std::string control_socket = "/run/rateguard/control";

  store_kind store = store_kind::memory;
  std::string redis = "127.0.0.1:6379";
  std::string redis_username;
  std::string redis_password_file;
  int redis_db = 0;
  std::chrono::milliseconds redis_timeout{100};
  std::size_t redis_max_pending = 4096;
  std::string redis_prefix = "rg:";
  store_error_action on_store_error = store_error_action::dunno;
  // Worst case with the sample limits (a login: 4 windows, all widened, a baseline, a signal with one value per
  // quarter, a 203-byte key) about 1350 bytes an identity: 250 000 x 1350 B = 337 MB, a third of a 1 GB VPS.
  // An ordinary login takes about 330 bytes (tests/bench/rss_per_login.sh). README "Memory store footprint".
  std::size_t memory_max_keys = 250000;
  // The hold journal's caps (both stores): entries kept at most, and their age at most.
  std::size_t hold_journal_max = 10000;
  std::chrono::milliseconds hold_journal_age{std::chrono::hours(24 * 7)};

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

// "100ms", "10s", "5m", "1h", "2d"; a bare number is seconds (Postfix time convention).
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);
std::string format_duration(std::chrono::milliseconds d);

}  // namespace rg
