// Daemon settings: the option table, INI parsing through Boost.Program_options, validation with
// file:line messages, and the postconf -n style dump. Values are checked here once, so the rest of the
// daemon trusts daemon_config.
#include "config.hpp"

#include "net_addr.hpp"

#include <algorithm>
#include <boost/program_options.hpp>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

namespace rg {
namespace po = boost::program_options;

namespace {

// One setting: the single declaration its parsing, printing, --help, the documentation (rateguard.conf(5),
// README) and the reload's apply-or-restart decision all come from.
struct option_def {
  const char* name;
  std::string type;    // "duration", "number", "endpoint, repeatable", ...
  std::string bounds;  // what values are allowed, as a reader writes them ("1s..1d", "text | json"); may be empty
  bool reload;         // a reload (SIGHUP) applies it; otherwise it needs a restart
  const char* help;
  // Returns an empty string on success, else why the value is bad.
  std::function<std::string(daemon_config&, const std::string&)> set;
  std::function<std::string(const daemon_config&)> get;
};

constexpr bool reload = true, restart = false;

std::string set_duration(std::chrono::milliseconds& out, const std::string& v, std::chrono::milliseconds lo,
                         std::chrono::milliseconds hi) {
  auto d = parse_duration(v);
  if (!d) return "bad duration \"" + v + "\" (use e.g. 100ms, 10s, 5m, 1h)";
  if (*d < lo || *d > hi) return "\"" + v + "\" out of range " + format_duration(lo) + ".." + format_duration(hi);
  out = *d;
  return {};
}

template <typename T>
std::string set_number(T& out, const std::string& v, T lo, T hi) {
  auto n = parse_number<T>(v);
  if (!n || *n < lo || *n > hi) return "\"" + v + "\" must be a number from " + std::to_string(lo) + " to " + std::to_string(hi);
  out = *n;
  return {};
}

// The words of a setting that selects one of a few values; both parsing and printing use the one table.
template <typename E>
using enum_names = std::initializer_list<std::pair<const char*, E>>;

template <typename E>
std::string set_enum(E& out, const std::string& v, enum_names<E> names) {
  std::string list;
  for (auto& [word, value] : names) {
    if (v == word) { out = value; return {}; }
    list += list.empty() ? word : std::string(" or ") + word;
  }
  return "\"" + v + "\" must be " + list;
}

template <typename E>
std::string enum_name(E value, enum_names<E> names) {
  for (auto& [word, e] : names)
    if (e == value) return word;
  return "?";
}

const enum_names<run_mode> mode_names = {{"enforce", run_mode::enforce}, {"dry-run", run_mode::dry_run}};
const enum_names<store_kind> store_names = {{"memory", store_kind::memory}, {"redis", store_kind::redis}};
const enum_names<bool> yes_no = {{"yes", true}, {"no", false}};
const enum_names<store_error_action> store_error_names = {{"dunno", store_error_action::dunno},
                                                          {"defer", store_error_action::defer}};

std::string set_choice(std::string& out, const std::string& v, const std::vector<std::string>& allowed) {
  std::string list;
  for (const std::string& a : allowed) {
    if (v == a) { out = v; return {}; }
    list += list.empty() ? a : " | " + a;
  }
  return "\"" + v + "\" must be one of: " + list;
}

using ms = std::chrono::milliseconds;

option_def duration_opt(const char* name, ms daemon_config::*m, ms lo, ms hi, bool applies, const char* help) {
  return {name, "duration", format_duration(lo) + ".." + format_duration(hi), applies, help,
          [=](daemon_config& c, const std::string& v) { return set_duration(c.*m, v, lo, hi); },
          [=](const daemon_config& c) { return format_duration(c.*m); }};
}

template <typename T>
option_def number_opt(const char* name, T daemon_config::*m, T lo, T hi, bool applies, const char* help) {
  return {name, "number", std::to_string(lo) + ".." + std::to_string(hi), applies, help,
          [=](daemon_config& c, const std::string& v) { return set_number<T>(c.*m, v, lo, hi); },
          [=](const daemon_config& c) { return std::to_string(c.*m); }};
}

template <typename E>
option_def enum_opt(const char* name, E daemon_config::*m, enum_names<E> names, bool applies, const char* help) {
  std::string words;
  for (auto& [word, value] : names) words += (words.empty() ? "" : " | ") + std::string(word);
  return {name, "choice", words, applies, help,
          [=](daemon_config& c, const std::string& v) { return set_enum(c.*m, v, names); },
          [=](const daemon_config& c) { return enum_name(c.*m, names); }};
}

option_def choice_opt(const char* name, std::string daemon_config::*m, std::vector<std::string> allowed,
                      bool applies, const char* help) {
  std::string words;
  for (const std::string& a : allowed) words += (words.empty() ? "" : " | ") + a;
  return {name, "choice", words, applies, help,
          [=](daemon_config& c, const std::string& v) { return set_choice(c.*m, v, allowed); },
          [=](const daemon_config& c) { return c.*m; }};
}

option_def text_opt(const char* name, std::string daemon_config::*m, bool applies, const char* help,
                    const char* type = "text") {
  return {name, type, "", applies, help,
          [=](daemon_config& c, const std::string& v) { c.*m = v; return std::string(); },
          [=](const daemon_config& c) { return c.*m; }};
}

// A list: items separated by commas or white space, each checked by `check` ("" when fine). `empty`: why an
// empty list is refused ("": allowed, the default list being empty).
option_def list_opt(const char* name, std::vector<std::string> daemon_config::*m, const char* bounds, bool applies,
                    const char* help, std::string (*check)(const std::string&), std::string empty) {
  return {name, "address list", bounds, applies, help,
          [=](daemon_config& c, const std::string& v) -> std::string {
            std::vector<std::string> list;
            std::string item;
            for (std::size_t i = 0; i <= v.size(); ++i) {
              if (i == v.size() || v[i] == ',' || v[i] == ' ' || v[i] == '\t') {
                if (item.empty()) continue;
                if (auto why = check(item); !why.empty()) return why;
                list.push_back(std::move(item));
                item.clear();
              } else {
                item += v[i];
              }
            }
            if (list.empty() && !empty.empty()) return empty;
            c.*m = std::move(list);
            return {};
          },
          [=](const daemon_config& c) {
            std::string s;
            for (auto& a : c.*m) s += (s.empty() ? "" : ", ") + a;
            return s;
          }};
}

// A path setting that must be absolute (or empty where `empty_ok`).
option_def path_opt(const char* name, std::string daemon_config::*m, bool empty_ok, bool applies, const char* help) {
  return {name, "path", empty_ok ? "absolute, or empty" : "absolute", applies, help,
          [=](daemon_config& c, const std::string& v) -> std::string {
            if (v.empty() ? !empty_ok : v.front() != '/')
              return "\"" + v + "\" must be an absolute path" + (empty_ok ? " or empty" : "");
            c.*m = v;
            return {};
          },
          [=](const daemon_config& c) { return c.*m; }};
}

std::string check_listen(const std::string& v) {
  std::string why;
  if (parse_endpoint(v, listen_syntax, &why)) return {};
  return "bad listen address \"" + v + "\": " + why + " (use inet:HOST:PORT, inet:[::1]:PORT or unix:/path)";
}

std::string check_sentinel(const std::string& v) {
  std::string why;
  if (parse_sentinel(v, &why)) return {};
  return "bad sentinel address \"" + v + "\": " + why;
}

const std::vector<option_def>& options() {
  static const std::vector<option_def> table = {
      {"listen", "endpoint, repeatable", "inet:HOST:PORT | inet:[V6]:PORT | unix:/path", restart,
       "Policy endpoint to serve (the first listen line replaces the default)",
       [](daemon_config& c, const std::string& v) {
         auto e = check_listen(v);
         if (e.empty()) c.listen.push_back(v);
         return e;
       },
       [](const daemon_config& c) {
         std::string s;
         for (auto& l : c.listen) s += (s.empty() ? "" : " ") + l;
         return s;
       }},
      {"milter", "endpoint, repeatable", "inet:HOST:PORT | inet:[V6]:PORT | unix:/path", restart,
       "Milter endpoint for sendmail and PHP mail() (non_smtpd_milters) or smtpd_milters; none by default",
       [](daemon_config& c, const std::string& v) {
         auto e = check_listen(v);
         if (e.empty()) c.milter.push_back(v);
         return e;
       },
       [](const daemon_config& c) {
         std::string s;
         for (auto& l : c.milter) s += (s.empty() ? "" : " ") + l;
         return s;
       }},
      text_opt("milter_local_daemon_name", &daemon_config::milter_local_daemon_name, reload,
               "The {daemon_name} (milter_macro_daemon_name) of the pickup-only cleanup: only there is the "
               "X-RG-Submitter uid trusted"),
      {"unix_socket_mode", "octal mode", "0..0777", restart, "Permission bits of unix listen and milter sockets",
       [](daemon_config& c, const std::string& v) -> std::string {
         unsigned m = 0;
         auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), m, 8);
         if (ec != std::errc() || p != v.data() + v.size() || m > 0777) return "\"" + v + "\" is not an octal mode";
         c.unix_socket_mode = v;
         return {};
       },
       [](const daemon_config& c) { return c.unix_socket_mode; }},
      text_opt("unix_socket_owner", &daemon_config::unix_socket_owner, restart,
               "user[:group] that owns unix sockets, set before privileges are dropped (empty: the starting user)",
               "user[:group]"),
      text_opt("user", &daemon_config::user, restart,
               "Unprivileged account to become once listeners are bound (empty: stay as started; root only with "
               "allow_root)",
               "account"),
      text_opt("group", &daemon_config::group, restart,
               "Group to run as (empty: the user's login group); the user's other groups are kept", "group"),
      enum_opt("allow_root", &daemon_config::allow_root, yes_no, restart,
               "yes: keep running as root when no user is set (refused otherwise)"),
      list_opt("allow_clients", &daemon_config::allow_clients, "addresses or networks, comma or space separated",
               reload, "Clients allowed on inet listeners (policy and milter); others are logged and closed",
               [](const std::string& item) -> std::string {
                 return parse_cidr(item) ? std::string() : "\"" + item + "\" is not an address or network";
               },
               "empty list: no client could connect over inet"),
      number_opt<std::size_t>("max_connections", &daemon_config::max_connections, 1, 100000, reload,
                              "Connections served at once; more are closed at accept"),
      duration_opt("idle_timeout", &daemon_config::idle_timeout, ms(1000), ms(86400000), reload,
                   "Close a connection idle this long (keep above smtpd_policy_service_max_idle, 300s)"),
      duration_opt("request_timeout", &daemon_config::request_timeout, ms(100), ms(3600000), reload,
                   "Time allowed to send one whole request or milter packet once it has begun (stops slow senders)"),
      duration_opt("shutdown_timeout", &daemon_config::shutdown_timeout, ms(0), ms(600000), reload,
                   "On SIGTERM, time to finish in-flight requests before exiting anyway"),
      text_opt("limits", &daemon_config::limits, reload,
               "The limits file (relative: to rateguard.conf's directory)", "path"),
      enum_opt("mode", &daemon_config::mode, mode_names, reload,
               "dry-run: answer DUNNO to everything and log what enforce would have done"),
      number_opt<unsigned>("ipv6_prefix", &daemon_config::ipv6_prefix, 16, 128, reload,
                           "IPv6 clients are counted per network of this prefix length"),
      duration_opt("lock_time", &daemon_config::lock_time, ms(0), ms(30LL * 86400000), reload,
                   "A tripped hold rule locks its key this long: every later message of the key is held (0: no "
                   "lock); also rateguardctl lock's default"),
      duration_opt("baseline_half_life", &daemon_config::baseline_half_life, ms(60000), ms(365LL * 86400000), reload,
                   "Burst rules: the half-life of a key's baseline (its exponentially weighted average per window)"),
      duration_opt("baseline_warmup", &daemon_config::baseline_warmup, ms(0), ms(365LL * 86400000), reload,
                   "Burst and novelty rules apply to a key only once it has this much history"),
      duration_opt("familiar_time", &daemon_config::familiar_time, ms(60000), ms(365LL * 86400000), reload,
                   "Novelty rules: a client network or recipient domain a key used stays familiar to it this long "
                   "(up to twice as long)"),
      number_opt<unsigned>("network_ipv4_prefix", &daemon_config::network_ipv4_prefix, 8, 32, reload,
                           "new_networks: an IPv4 client's network is its first N bits (16: roughly a provider's "
                           "block, so a mobile carrier's address pool is one network)"),
      number_opt<unsigned>("network_ipv6_prefix", &daemon_config::network_ipv6_prefix, 16, 128, reload,
                           "new_networks: an IPv6 client's network is its first N bits (32: a provider's allocation)"),
      path_opt("control_socket", &daemon_config::control_socket, true, restart,
               "Unix socket for rateguardctl, mode 0600 (empty: none)"),
      enum_opt("store", &daemon_config::store, store_names, restart,
               "memory: this process only; redis: shared by every node on the same Redis"),
      text_opt("redis", &daemon_config::redis, restart,
               "Redis server (7.0 or later): HOST:PORT, [IPv6]:PORT or /path/to/redis.sock", "address"),
      text_opt("redis_username", &daemon_config::redis_username, restart,
               "Redis ACL user for AUTH (empty: the default user); needs redis_password_file", "name"),
      text_opt("redis_password_file", &daemon_config::redis_password_file, restart,
               "File whose first line is the Redis password; read as root at start-up, so it may be root-only "
               "(0600); never logged",
               "path"),
      number_opt<int>("redis_db", &daemon_config::redis_db, 0, 1000, restart,
                      "Redis database number (SELECT on every connection)"),
      duration_opt("redis_timeout", &daemon_config::redis_timeout, ms(1), ms(10000), restart,
                   "Deadline of one request to Redis; past it on_store_error answers"),
      number_opt<std::size_t>("redis_max_pending", &daemon_config::redis_max_pending, 1, 1000000, restart,
                              "Requests in flight to Redis; beyond, on_store_error answers at once"),
      text_opt("redis_prefix", &daemon_config::redis_prefix, restart, "Prefix of every Redis key"),
      list_opt("sentinels", &daemon_config::sentinels, "HOST:PORT, comma or space separated (port 26379 when none)",
               restart,
               "Redis Sentinels to ask for the master (replaces redis; needs sentinel_master); asked in turn at every "
               "reconnect",
               check_sentinel, ""),
      text_opt("sentinel_master", &daemon_config::sentinel_master, restart,
               "The master's name in the sentinels' configuration (sentinel monitor NAME ...)", "name"),
      text_opt("sentinel_username", &daemon_config::sentinel_username, restart,
               "ACL user for AUTH to the sentinels (empty: the default user); needs sentinel_password_file", "name"),
      text_opt("sentinel_password_file", &daemon_config::sentinel_password_file, restart,
               "File whose first line is the sentinels' password (their requirepass); read as root at start-up; "
               "never logged",
               "path"),
      enum_opt("redis_tls", &daemon_config::redis_tls, yes_no, restart,
               "yes: TLS to Redis and to the sentinels, the server's certificate and name always verified"),
      text_opt("redis_tls_ca_file", &daemon_config::redis_tls_ca_file, restart,
               "PEM file of the CA certificates that sign the Redis servers' (and sentinels') certificates", "path"),
      text_opt("redis_tls_cert_file", &daemon_config::redis_tls_cert_file, restart,
               "Client certificate (PEM) for servers with tls-auth-clients; needs redis_tls_key_file", "path"),
      text_opt("redis_tls_key_file", &daemon_config::redis_tls_key_file, restart,
               "The client certificate's private key (PEM); read as root at start-up, so it may be root-only",
               "path"),
      text_opt("redis_tls_server_name", &daemon_config::redis_tls_server_name, restart,
               "The name every server's certificate must carry (empty: the host as written in redis, or as the "
               "sentinels name the master)",
               "name"),
      enum_opt("on_store_error", &daemon_config::on_store_error, store_error_names, reload,
               "When the store cannot answer: dunno (fail open) or defer (451 4.3.0, fail closed)"),
      number_opt<std::size_t>("memory_max_keys", &daemon_config::memory_max_keys, 1000, 100000000, restart,
                              "Identities the memory store keeps at most (about 710 bytes each, 2000 at worst); past "
                              "it a new key evicts the least recently used identity without a lock in force"),
      number_opt<std::size_t>("hold_journal_max", &daemon_config::hold_journal_max, 1, 10000000, restart,
                              "Held messages the hold journal keeps at most (older ones are dropped first)"),
      duration_opt("hold_journal_age", &daemon_config::hold_journal_age, ms(60000), ms(365LL * 86400000), restart,
                   "Held messages older than this are dropped from the hold journal"),
      {"metrics", "endpoint", "inet:HOST:PORT | inet:[V6]:PORT, or empty", restart,
       "Prometheus /metrics and /healthz over HTTP, for allow_clients only (empty: off)",
       [](daemon_config& c, const std::string& v) -> std::string {
         if (v.empty()) { c.metrics.clear(); return {}; }
         std::string why;
         const auto e = parse_endpoint(v, listen_syntax, &why);
         if (!e) return "bad metrics address \"" + v + "\": " + why + " (use inet:HOST:PORT)";
         if (e->is_unix) return "\"" + v + "\": Prometheus scrapes over TCP: use inet:HOST:PORT";
         c.metrics = v;
         return {};
       },
       [](const daemon_config& c) { return c.metrics; }},
      path_opt("hold_queue_dir", &daemon_config::hold_queue_dir, true, restart,
               "Postfix's hold queue (/var/spool/postfix/hold), counted once a minute for the hold queue "
               "metrics if the daemon's user can read it (empty: not counted)"),
      duration_opt("stats_interval", &daemon_config::stats_interval, ms(0), ms(86400000), reload,
                   "Log a summary line (requests, decisions per action, peak connections, store p99, top keys) "
                   "this often (0: never)"),
      {"notify", "address", "user@domain, or empty", reload,
       "Mail this address once per new lock, through sendmail_path (empty: no mail)",
       [](daemon_config& c, const std::string& v) -> std::string {
         // Given to sendmail as an argument: no option, no white space, no control character.
         const bool bad = !v.empty() && (v.front() == '-' || std::any_of(v.begin(), v.end(), [](unsigned char ch) {
                                           return ch <= ' ' || ch == 0x7f || ch == ',' || ch == '<' || ch == '>';
                                         }));
         if (bad) return "\"" + v + "\" is not one mail address (user@domain)";
         c.notify = v;
         return {};
       },
       [](const daemon_config& c) { return c.notify; }},
      path_opt("notify_command", &daemon_config::notify_command, true, reload,
               "Instead of notify: run this program once per new lock, with the facts in RG_* environment "
               "variables (empty: none)"),
      path_opt("sendmail_path", &daemon_config::sendmail_path, false, reload,
               "Postfix's sendmail, which notify mails go through"),
      number_opt<std::size_t>("notify_rate_limit", &daemon_config::notify_rate_limit, 1, 10000, reload,
                              "Notifications per hour at most; locks beyond it are logged only"),
      duration_opt("notify_delay", &daemon_config::notify_delay, ms(0), ms(3600000), reload,
                   "Wait this long after a lock before notifying, so the notification names the messages held "
                   "meanwhile"),
      {"log_target", "choice", "stderr | syslog | file:/path", restart,
       "Where the log goes (stderr: journald under systemd)",
       [](daemon_config& c, const std::string& v) -> std::string {
         if (v == "stderr" || v == "syslog" || (v.rfind("file:/", 0) == 0 && v.size() > 6)) { c.log_target = v; return {}; }
         return "\"" + v + "\" must be stderr, syslog or file:/path";
       },
       [](const daemon_config& c) { return c.log_target; }},
      choice_opt("log_format", &daemon_config::log_format, {"text", "json"}, reload,
                 "text: Postfix style lines; json: one JSON object per line"),
      choice_opt("log_level", &daemon_config::log_level, {"debug", "info", "warning"}, reload,
                 "debug logs one line per request"),
      choice_opt("syslog_facility", &daemon_config::syslog_facility,
                 {"mail", "daemon", "user", "local0", "local1", "local2", "local3", "local4", "local5", "local6",
                  "local7"},
                 restart, "Syslog facility (mail puts our lines in mail.log beside Postfix's)"),
      text_opt("syslog_name", &daemon_config::syslog_name, restart, "Program name in log lines"),
  };
  return table;
}

const option_def* find_option(const std::string& name) {
  for (auto& o : options())
    if (name == o.name) return &o;
  return nullptr;
}

// Line numbers of the "name = value" lines, in file order, so Program_options' parsed options (also in
// file order) can be reported with file:line.
std::vector<unsigned> setting_lines(const std::string& text) {
  std::vector<unsigned> lines;
  std::istringstream in(text);
  std::string line;
  unsigned n = 0;
  while (std::getline(in, line)) {
    ++n;
    auto p = line.find_first_not_of(" \t\r");
    if (p == std::string::npos || line[p] == '#' || line[p] == ';' || line[p] == '[') continue;
    lines.push_back(n);
  }
  return lines;
}

}  // namespace

config_result load_config(const std::string& path) {
  config_result r;
  std::ifstream f(path);
  if (!f) {
    r.errors.push_back({path + ": cannot open: " + std::strerror(errno)});
    return r;
  }
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string text = ss.str();
  const auto lines = setting_lines(text);

  po::parsed_options parsed(nullptr);
  try {
    std::istringstream in(text);
    po::options_description none;
    parsed = po::parse_config_file(in, none, /*allow_unregistered=*/true);
  } catch (const po::error& e) {
    r.errors.push_back({path + ": " + e.what()});
    return r;
  }

  daemon_config c;
  c.file = path;
  bool listen_seen = false;
  for (std::size_t i = 0; i < parsed.options.size(); ++i) {
    const auto& o = parsed.options[i];
    const std::string where = path + ":" + (i < lines.size() ? std::to_string(lines[i]) : std::string("?"));
    const option_def* def = find_option(o.string_key);
    if (!def) {
      r.errors.push_back({where + ": unknown setting \"" + o.string_key + "\" (rateguardd --help lists them)"});
      continue;
    }
    const std::string value = o.value.empty() ? std::string() : o.value.front();
    if (def->name == std::string_view("listen") && !listen_seen) {
      c.listen.clear();  // the first listen line replaces the default endpoint
      listen_seen = true;
    }
    if (auto why = def->set(c, value); !why.empty()) r.errors.push_back({where + ": " + o.string_key + ": " + why});
  }
  if (c.listen.empty()) r.errors.push_back({path + ": no listen endpoint"});
  if (!c.group.empty() && c.user.empty()) r.errors.push_back({path + ": group is set but user is not"});
  if (!c.notify.empty() && !c.notify_command.empty())
    r.errors.push_back({path + ": notify and notify_command are both set: set one of them"});
  if (!c.redis_username.empty() && c.redis_password_file.empty())
    r.errors.push_back({path + ": redis_username is set but redis_password_file is not"});
  if (!c.sentinel_username.empty() && c.sentinel_password_file.empty())
    r.errors.push_back({path + ": sentinel_username is set but sentinel_password_file is not"});
  if (!c.sentinels.empty() && c.sentinel_master.empty())
    r.errors.push_back({path + ": sentinels is set but sentinel_master is not"});
  if (c.redis_tls && c.redis_tls_ca_file.empty())
    r.errors.push_back({path + ": redis_tls = yes needs redis_tls_ca_file"});
  if (c.redis_tls_cert_file.empty() != c.redis_tls_key_file.empty())
    r.errors.push_back({path + ": redis_tls_cert_file and redis_tls_key_file go together"});
  // Relative file names are relative to the configuration file, like Postfix's $config_directory.
  const auto dir = std::filesystem::path(path).parent_path();
  for (std::string* file : {&c.limits, &c.redis_password_file, &c.sentinel_password_file, &c.redis_tls_ca_file,
                            &c.redis_tls_cert_file, &c.redis_tls_key_file})
    if (!file->empty() && std::filesystem::path(*file).is_relative())
      *file = (dir / *file).lexically_normal().string();
  if (r.errors.empty()) r.config = std::move(c);
  return r;
}

std::vector<std::string> non_default_settings(const daemon_config& c) {
  const daemon_config d;
  std::vector<std::string> out;
  for (auto& o : options()) {
    auto v = o.get(c);
    if (v != o.get(d)) out.push_back(std::string(o.name) + " = " + v);
  }
  return out;
}

std::string config_help() {
  const daemon_config d;
  std::string s;
  for (auto& o : options()) {
    s += "  ";
    s += o.name;
    s += " = ";
    s += o.get(d);
    s += "\n      ";
    s += o.help;
    s += "\n      (" + o.type + (o.bounds.empty() ? "" : ": " + o.bounds) + "; " +
         (o.reload ? "a reload applies it" : "needs a restart") + ")\n";
  }
  return s;
}

std::vector<setting_doc> settings_doc() {
  const daemon_config d;
  std::vector<setting_doc> out;
  for (auto& o : options()) out.push_back({o.name, o.type, o.get(d), o.bounds, o.help, o.reload});
  return out;
}

namespace {
// Markdown table cells: a '|' would split the cell.
std::string cell(const std::string& s) {
  std::string out;
  for (char c : s) out += c == '|' ? std::string("\\|") : std::string(1, c);
  return out;
}
// roff text: a leading '.' or '\'' would be a request, '\\' an escape, '-' a hyphen.
std::string roff(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\') out += "\\e";
    else if (c == '-') out += "\\-";
    else out += c;
  }
  if (!out.empty() && (out.front() == '.' || out.front() == '\'')) out.insert(0, "\\&");
  return out;
}
}  // namespace

std::string settings_markdown() {
  std::string s = "| setting | default | values | on reload | meaning |\n|---|---|---|---|---|\n";
  for (const auto& d : settings_doc())
    s += "| `" + d.name + "` | " + (d.default_value.empty() ? "(none)" : "`" + cell(d.default_value) + "`") + " | " +
         cell(d.type + (d.bounds.empty() ? "" : ": " + d.bounds)) + " | " + (d.reloadable ? "applied" : "restart") +
         " | " + cell(d.meaning) + " |\n";
  return s;
}

std::string settings_roff() {
  std::string s;
  for (const auto& d : settings_doc()) {
    s += ".TP\n.B " + roff(d.name) + "\n";
    s += roff(d.meaning) + ".\n.br\n";
    s += "Default: " + (d.default_value.empty() ? std::string("(none)") : roff(d.default_value)) + "; " +
         roff(d.type + (d.bounds.empty() ? "" : ": " + d.bounds)) + "; " +
         (d.reloadable ? "a reload applies it." : "needs a restart.") + "\n";
  }
  return s;
}

std::vector<std::string> changed_settings(const daemon_config& a, const daemon_config& b, bool reloadable) {
  std::vector<std::string> out;
  for (auto& o : options())
    if (o.reload == reloadable && o.get(a) != o.get(b)) out.push_back(o.name);
  return out;
}

daemon_config apply_reloadable(const daemon_config& running, const daemon_config& fresh) {
  daemon_config next = running;
  for (auto& o : options())
    if (o.reload) o.set(next, o.get(fresh));  // every reloadable setting is a single value: set(get()) copies it
  return next;
}

}  // namespace rg
