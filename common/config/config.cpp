// Daemon settings: the option table, INI parsing through Boost.Program_options, validation with
// file:line messages, and the postconf -n style dump. Values are checked here once, so the rest of the
// daemon trusts daemon_config.
#include "config.hpp"

#include "net_addr.hpp"

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

struct option_def {
  const char* name;
  const char* help;
  // Returns an empty string on success, else why the value is bad.
  std::function<std::string(daemon_config&, const std::string&)> set;
  std::function<std::string(const daemon_config&)> get;
};

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

std::string set_choice(std::string& out, const std::string& v, std::initializer_list<const char*> allowed) {
  std::string list;
  for (const char* a : allowed) {
    if (v == a) { out = v; return {}; }
    list += list.empty() ? a : std::string(" | ") + a;
  }
  return "\"" + v + "\" must be one of: " + list;
}

std::string check_listen(const std::string& v) {
  std::string why;
  if (parse_endpoint(v, listen_syntax, &why)) return {};
  return "bad listen address \"" + v + "\": " + why + " (use inet:HOST:PORT, inet:[::1]:PORT or unix:/path)";
}

const std::vector<option_def>& options() {
  using ms = std::chrono::milliseconds;
  static const std::vector<option_def> table = {
      {"listen", "Endpoint to serve, repeatable: inet:HOST:PORT, inet:[::1]:PORT or unix:/path",
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
      {"milter", "Milter endpoint, repeatable (none by default): inet:HOST:PORT, inet:[::1]:PORT or unix:/path",
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
      {"milter_local_daemon_name",
       "The {daemon_name} of the pickup-only cleanup (its milter_macro_daemon_name): only there is the "
       "X-RG-Submitter uid trusted",
       [](daemon_config& c, const std::string& v) { c.milter_local_daemon_name = v; return std::string(); },
       [](const daemon_config& c) { return c.milter_local_daemon_name; }},
      {"unix_socket_mode", "Octal permission bits of unix listen sockets",
       [](daemon_config& c, const std::string& v) -> std::string {
         unsigned m = 0;
         auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), m, 8);
         if (ec != std::errc() || p != v.data() + v.size() || m > 0777) return "\"" + v + "\" is not an octal mode";
         c.unix_socket_mode = v;
         return {};
       },
       [](const daemon_config& c) { return c.unix_socket_mode; }},
      {"unix_socket_owner",
       "user[:group] that owns unix listen sockets, set before privileges are dropped (empty: the starting user)",
       [](daemon_config& c, const std::string& v) { c.unix_socket_owner = v; return std::string(); },
       [](const daemon_config& c) { return c.unix_socket_owner; }},
      {"user",
       "Unprivileged account to become once listeners are bound (empty: stay as started; root only with "
       "allow_root)",
       [](daemon_config& c, const std::string& v) { c.user = v; return std::string(); },
       [](const daemon_config& c) { return c.user; }},
      {"group", "Group to run as (empty: the user's login group); the user's other groups are kept",
       [](daemon_config& c, const std::string& v) { c.group = v; return std::string(); },
       [](const daemon_config& c) { return c.group; }},
      {"allow_root", "yes: keep running as root when no user is set (refused otherwise)",
       [](daemon_config& c, const std::string& v) { return set_enum(c.allow_root, v, yes_no); },
       [](const daemon_config& c) { return enum_name(c.allow_root, yes_no); }},
      {"allow_clients", "Clients allowed on inet listeners: addresses or networks, separated by commas or spaces",
       [](daemon_config& c, const std::string& v) -> std::string {
         std::vector<std::string> list;
         std::string item;
         for (std::size_t i = 0; i <= v.size(); ++i) {
           if (i == v.size() || v[i] == ',' || v[i] == ' ' || v[i] == '\t') {
             if (!item.empty() && !parse_cidr(item)) return "\"" + item + "\" is not an address or network";
             if (!item.empty()) list.push_back(item);
             item.clear();
           } else {
             item += v[i];
           }
         }
         if (list.empty()) return "empty list: no client could connect over inet";
         c.allow_clients = std::move(list);
         return {};
       },
       [](const daemon_config& c) {
         std::string s;
         for (auto& a : c.allow_clients) s += (s.empty() ? "" : ", ") + a;
         return s;
       }},
      {"max_connections", "Policy connections served at once; more are closed at accept",
       [](daemon_config& c, const std::string& v) { return set_number<std::size_t>(c.max_connections, v, 1, 100000); },
       [](const daemon_config& c) { return std::to_string(c.max_connections); }},
      {"idle_timeout", "Close a connection idle this long (keep above smtpd_policy_service_max_idle, 300s)",
       [](daemon_config& c, const std::string& v) { return set_duration(c.idle_timeout, v, ms(1000), ms(86400000)); },
       [](const daemon_config& c) { return format_duration(c.idle_timeout); }},
      {"request_timeout", "Time allowed to send one whole request once it has begun (stops slow senders)",
       [](daemon_config& c, const std::string& v) { return set_duration(c.request_timeout, v, ms(100), ms(3600000)); },
       [](const daemon_config& c) { return format_duration(c.request_timeout); }},
      {"shutdown_timeout", "On SIGTERM, time to finish in-flight requests before exiting anyway",
       [](daemon_config& c, const std::string& v) { return set_duration(c.shutdown_timeout, v, ms(0), ms(600000)); },
       [](const daemon_config& c) { return format_duration(c.shutdown_timeout); }},
      {"limits", "The limits file",
       [](daemon_config& c, const std::string& v) { c.limits = v; return std::string(); },
       [](const daemon_config& c) { return c.limits; }},
      {"mode", "enforce | dry-run (answer DUNNO, log what would have been done)",
       [](daemon_config& c, const std::string& v) { return set_enum(c.mode, v, mode_names); },
       [](const daemon_config& c) { return enum_name(c.mode, mode_names); }},
      {"ipv6_prefix", "IPv6 clients are counted per network of this prefix length",
       [](daemon_config& c, const std::string& v) { return set_number<unsigned>(c.ipv6_prefix, v, 16, 128); },
       [](const daemon_config& c) { return std::to_string(c.ipv6_prefix); }},
      {"lock_time", "A tripped hold rule locks its key this long: every later message of the key is held (0: no lock)",
       [](daemon_config& c, const std::string& v) { return set_duration(c.lock_time, v, ms(0), ms(30LL * 86400000)); },
       [](const daemon_config& c) { return format_duration(c.lock_time); }},
      {"baseline_half_life",
       "Burst rules: the half-life of a key's baseline (its exponentially weighted average per window)",
       [](daemon_config& c, const std::string& v) {
         return set_duration(c.baseline_half_life, v, ms(60000), ms(365LL * 86400000));
       },
       [](const daemon_config& c) { return format_duration(c.baseline_half_life); }},
      {"baseline_warmup", "Burst rules apply to a key only once its baseline has learned this long",
       [](daemon_config& c, const std::string& v) {
         return set_duration(c.baseline_warmup, v, ms(0), ms(365LL * 86400000));
       },
       [](const daemon_config& c) { return format_duration(c.baseline_warmup); }},
      {"control_socket", "Unix socket for rateguardctl, mode 0600 (empty: none)",
       [](daemon_config& c, const std::string& v) -> std::string {
         if (!v.empty() && v.front() != '/') return "\"" + v + "\" must be an absolute path or empty";
         c.control_socket = v;
         return {};
       },
       [](const daemon_config& c) { return c.control_socket; }},
      {"store", "memory (this process only) | redis (shared by every node on the same Redis)",
       [](daemon_config& c, const std::string& v) { return set_enum(c.store, v, store_names); },
       [](const daemon_config& c) { return enum_name(c.store, store_names); }},
      {"redis", "Redis server: HOST:PORT, [IPv6]:PORT or /path/to/redis.sock",
       [](daemon_config& c, const std::string& v) { c.redis = v; return std::string(); },
       [](const daemon_config& c) { return c.redis; }},
      {"redis_username", "Redis ACL user for AUTH (empty: the default user); needs redis_password_file",
       [](daemon_config& c, const std::string& v) { c.redis_username = v; return std::string(); },
       [](const daemon_config& c) { return c.redis_username; }},
      {"redis_password_file",
       "File whose first line is the Redis password; read as root at start-up, so it may be root-only (0600); "
       "never logged",
       [](daemon_config& c, const std::string& v) { c.redis_password_file = v; return std::string(); },
       [](const daemon_config& c) { return c.redis_password_file; }},
      {"redis_db", "Redis database number (SELECT on every connection)",
       [](daemon_config& c, const std::string& v) { return set_number<int>(c.redis_db, v, 0, 1000); },
       [](const daemon_config& c) { return std::to_string(c.redis_db); }},
      {"redis_timeout", "Deadline of one request to Redis; past it on_store_error answers",
       [](daemon_config& c, const std::string& v) { return set_duration(c.redis_timeout, v, ms(1), ms(10000)); },
       [](const daemon_config& c) { return format_duration(c.redis_timeout); }},
      {"redis_max_pending", "Requests in flight to Redis; beyond, on_store_error answers at once",
       [](daemon_config& c, const std::string& v) { return set_number<std::size_t>(c.redis_max_pending, v, 1, 1000000); },
       [](const daemon_config& c) { return std::to_string(c.redis_max_pending); }},
      {"redis_prefix", "Prefix of every Redis key",
       [](daemon_config& c, const std::string& v) { c.redis_prefix = v; return std::string(); },
       [](const daemon_config& c) { return c.redis_prefix; }},
      {"on_store_error", "dunno (fail open) | defer (451 4.3.0, fail closed) when the store cannot answer",
       [](daemon_config& c, const std::string& v) { return set_enum(c.on_store_error, v, store_error_names); },
       [](const daemon_config& c) { return enum_name(c.on_store_error, store_error_names); }},
      {"memory_max_keys",
       "Identities the memory store keeps at most (about 330 bytes each, 1350 at worst); past it a new key evicts the "
       "least recently used identity without a lock in force",
       [](daemon_config& c, const std::string& v) { return set_number<std::size_t>(c.memory_max_keys, v, 1000, 100000000); },
       [](const daemon_config& c) { return std::to_string(c.memory_max_keys); }},
      {"hold_journal_max", "Held messages the hold journal keeps at most (older ones are dropped first)",
       [](daemon_config& c, const std::string& v) { return set_number<std::size_t>(c.hold_journal_max, v, 1, 10000000); },
       [](const daemon_config& c) { return std::to_string(c.hold_journal_max); }},
      {"hold_journal_age", "Held messages older than this are dropped from the hold journal",
       [](daemon_config& c, const std::string& v) { return set_duration(c.hold_journal_age, v, ms(60000), ms(365LL * 86400000)); },
       [](const daemon_config& c) { return format_duration(c.hold_journal_age); }},
      {"log_target", "stderr (journald) | syslog | file:/path",
       [](daemon_config& c, const std::string& v) -> std::string {
         if (v == "stderr" || v == "syslog" || (v.rfind("file:/", 0) == 0 && v.size() > 6)) { c.log_target = v; return {}; }
         return "\"" + v + "\" must be stderr, syslog or file:/path";
       },
       [](const daemon_config& c) { return c.log_target; }},
      {"log_format", "text (Postfix style lines) | json (one JSON object per line)",
       [](daemon_config& c, const std::string& v) { return set_choice(c.log_format, v, {"text", "json"}); },
       [](const daemon_config& c) { return c.log_format; }},
      {"log_level", "debug (one line per request) | info | warning",
       [](daemon_config& c, const std::string& v) { return set_choice(c.log_level, v, {"debug", "info", "warning"}); },
       [](const daemon_config& c) { return c.log_level; }},
      {"syslog_facility", "Syslog facility (mail puts our lines in mail.log beside Postfix's)",
       [](daemon_config& c, const std::string& v) {
         return set_choice(c.syslog_facility, v, {"mail", "daemon", "user", "local0", "local1", "local2", "local3",
                                                  "local4", "local5", "local6", "local7"});
       },
       [](const daemon_config& c) { return c.syslog_facility; }},
      {"syslog_name", "Program name in log lines",
       [](daemon_config& c, const std::string& v) { c.syslog_name = v; return std::string(); },
       [](const daemon_config& c) { return c.syslog_name; }},
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
  if (!c.redis_username.empty() && c.redis_password_file.empty())
    r.errors.push_back({path + ": redis_username is set but redis_password_file is not"});
  // Relative file names are relative to the configuration file, like Postfix's $config_directory.
  const auto dir = std::filesystem::path(path).parent_path();
  for (std::string* file : {&c.limits, &c.redis_password_file})
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
    s += "\n";
  }
  return s;
}

}  // namespace rg
