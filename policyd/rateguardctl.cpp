// rateguardctl: the operator's tool. Sends one command to rateguardd's control socket (found through the same
// rateguard.conf) and prints the JSON answer as tables, or as it is with --json. It never touches the store
// itself: the daemon runs every command against its store and its live rules.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <iostream>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "config.hpp"
#include "ctl_format.hpp"

namespace json = boost::json;
using rg::get;
using rg::str;

namespace {

// sysexits.h values, documented in --help and README.
constexpr int ex_ok = 0, ex_nothing = 1, ex_usage = 64, ex_unavailable = 69, ex_software = 70, ex_tempfail = 75,
              ex_protocol = 76, ex_config = 78;

const char* const usage_text = R"(Usage: rateguardctl [-c FILE] [--json] [--socket PATH] COMMAND [ARGS]

Talks to rateguardd over its control socket (control_socket in rateguard.conf). KEY is KIND:VALUE as in
the log: sasl_username:alice, client_address:192.0.2.7, client_address:2001:db8:1:2::/64,
sender:bob@example.com, sender_domain:example.com, local_user:www-data.

Commands:
  status KEY                       counters, baselines and signals per window (with the limits that
                                   apply) and the lock
  top [--by KIND] [--window W] [--unit messages|recipients] [-n N]
                                   the heaviest keys now (default: sasl_username, 1h, messages, 20)
  holds [--since T] [--key KEY] [-n N]
                                   the hold journal, oldest first, with the postsuper lines to release
                                   (-H) or delete (-d) each held message; T is 1h, 2d (ago) or an
                                   ISO time 2026-11-23T12:00:00Z (UTC)
  lock KEY [--ttl T] [--reason TEXT]
                                   hold every later message of KEY (default ttl: lock_time, else 1d)
  stats                            requests, decisions per action, peak connections and store p99 since
                                   the last stats line (stats_interval), and the busiest logins of the
                                   last hour
  release KEY                      remove KEY's lock (held mail stays held: postsuper -H releases it)
  reset KEY                        delete KEY's counters, baselines, signals and lock
  explain [NAME=VALUE ...]         which rules a policy request matches, the counts and the decision it
                                   would get, without counting it; the request is read from stdin
                                   (Postfix's name=value lines) when no NAME=VALUE is given

Options:
  -c, --config FILE   rateguard.conf (default /etc/rateguard/rateguard.conf)
  --socket PATH       the control socket (default: control_socket from the config file)
  --json              print the daemon's JSON answer as it is
  -h, --help          this text

Exit codes: 0 ok; 1 nothing found or nothing changed (status of an unknown key, lock of a locked key,
release of an unlocked key, reset of an unknown key); 64 usage error; 69 daemon unreachable; 70 internal
error; 75 store failure (try again); 76 unreadable answer; 78 configuration error.
)";

int usage(const std::string& why) {
  std::cerr << "rateguardctl: " << why << "\n(rateguardctl --help for usage)\n";
  return ex_usage;
}

// "1h" (that long ago) or "2026-11-23T12:00:00Z" / "2026-11-23T12:00" / "2026-11-23" (UTC) -> ms since epoch.
std::optional<std::int64_t> parse_time(const std::string& s) {
  const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch()).count();
  if (auto d = rg::parse_duration(s)) return now - d->count();
  std::tm tm{};
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
  char tail[8] = {};
  // Fields converted -> the only length that form has: date; date + hh:mm; + :ss; + "Z".
  const int n = std::sscanf(s.c_str(), "%4d-%2d-%2d%*1[T ]%2d:%2d:%2d%7s", &y, &mo, &d, &h, &mi, &sec, tail);
  const bool whole = (n == 3 && s.size() == 10) || (n == 5 && s.size() == 16) || (n == 6 && s.size() == 19) ||
                     (n == 7 && s.size() == 20 && std::strcmp(tail, "Z") == 0);
  if (!whole) return std::nullopt;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return std::nullopt;
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  return static_cast<std::int64_t>(timegm(&tm)) * 1000;
}

// One request, one answer (the daemon closes after it). Every step has a deadline.
int exchange(const std::string& path, const std::string& request, std::string& answer) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ex_software;
  timeval tv{120, 0};  // above the daemon's own command deadline (10 s, up to 10 x redis_timeout + 1 s)
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) {
    ::close(fd);
    std::cerr << "rateguardctl: control socket path too long: " << path << "\n";
    return ex_config;
  }
  std::memcpy(a.sun_path, path.c_str(), path.size());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    std::cerr << "rateguardctl: cannot connect to " << path << ": " << std::strerror(errno)
              << " (is rateguardd running? control_socket in its rateguard.conf)\n";
    ::close(fd);
    return ex_unavailable;
  }
  for (std::size_t off = 0; off < request.size();) {
    auto n = ::send(fd, request.data() + off, request.size() - off, MSG_NOSIGNAL);
    if (n <= 0) {
      std::cerr << "rateguardctl: cannot send to " << path << ": " << std::strerror(errno) << "\n";
      ::close(fd);
      return ex_unavailable;
    }
    off += static_cast<std::size_t>(n);
  }
  constexpr std::size_t max_answer = 64u << 20;  // 10000 journal records are a few MB
  char buf[65536];
  for (;;) {
    auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0) break;
    if (n < 0) {
      std::cerr << "rateguardctl: no answer from " << path << ": " << std::strerror(errno) << "\n";
      ::close(fd);
      return ex_unavailable;
    }
    answer.append(buf, static_cast<std::size_t>(n));
    if (answer.size() > max_answer) {
      ::close(fd);
      std::cerr << "rateguardctl: answer larger than " << (max_answer >> 20) << " MB\n";
      return ex_protocol;
    }
  }
  ::close(fd);
  return ex_ok;
}

std::string line(const std::string& name, const std::string& value) {
  for (char c : value)
    if (c == '\n' || c == '\0') throw std::invalid_argument(name + " must not contain a newline");
  return name + "=" + value + "\n";
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path = "/etc/rateguard/rateguard.conf", socket_path, command;
  bool as_json = false;
  std::vector<std::string> args;
  std::map<std::string, std::string> opts;  // command options, "--by" -> "sender"
  static const char* const with_value[] = {"--by", "--window", "--unit", "-n", "--since", "--key", "--ttl", "--reason"};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](std::string& out) {
      if (i + 1 >= argc) return false;
      out = argv[++i];
      return true;
    };
    if (a == "-h" || a == "--help") {
      std::cout << usage_text;
      return ex_ok;
    } else if (a == "--json") {
      as_json = true;
    } else if (a == "-c" || a == "--config") {
      if (!value(config_path)) return usage(a + " needs a file");
    } else if (a == "--socket") {
      if (!value(socket_path)) return usage(a + " needs a path");
    } else if (std::find(std::begin(with_value), std::end(with_value), a) != std::end(with_value)) {
      if (!value(opts[a])) return usage(a + " needs a value");
    } else if (a.size() > 1 && a[0] == '-') {
      return usage("unknown option " + a);
    } else if (command.empty()) {
      command = a;
    } else {
      args.push_back(a);
    }
  }
  if (command.empty()) return usage("no command");

  // Which options each command takes; anything else is a usage error, not silently ignored.
  static const std::map<std::string, std::vector<std::string>> allowed = {
      {"status", {}}, {"top", {"--by", "--window", "--unit", "-n"}}, {"holds", {"--since", "--key", "-n"}},
      {"lock", {"--ttl", "--reason"}}, {"release", {}}, {"reset", {}}, {"stats", {}}, {"explain", {}}};
  auto cmd_it = allowed.find(command);
  if (cmd_it == allowed.end()) return usage("unknown command " + command);
  for (auto& [o, v] : opts)
    if (std::find(cmd_it->second.begin(), cmd_it->second.end(), o) == cmd_it->second.end())
      return usage(command + " does not take " + o);

  std::string req;
  try {
    req = line("command", command);
    const bool keyed = command == "status" || command == "lock" || command == "release" || command == "reset";
    if (keyed) {
      if (args.size() != 1) return usage(command + " needs exactly one KEY (e.g. sasl_username:alice)");
      if (args[0].find(':') == std::string::npos) return usage("KEY must be KIND:VALUE, e.g. sasl_username:alice");
      req += line("key", args[0]);
    } else if (command != "explain" && !args.empty()) {
      return usage(command + " takes no argument " + args[0]);
    }
    for (auto& [o, v] : opts) {
      if (o == "--since") {
        auto t = parse_time(v);
        if (!t) return usage("bad --since \"" + v + "\" (1h, 2d, or 2026-11-23T12:00:00Z)");
        req += line("since_ms", std::to_string(*t));
      } else {
        req += line(o == "-n" ? "n" : o.substr(2), v);
      }
    }
    if (command == "explain") {
      std::vector<std::string> attrs = args;
      if (attrs.empty()) {
        // From stdin: Postfix's request lines, up to an empty line or the end (bounded like the daemon).
        std::string l;
        std::size_t total = 0;
        while (std::getline(std::cin, l)) {
          if (!l.empty() && l.back() == '\r') l.pop_back();
          if (l.empty()) break;
          total += l.size() + 1;
          if (total > 60 * 1024) return usage("explain: request on stdin larger than 60 kB");
          attrs.push_back(l);
        }
      }
      for (auto& a : attrs) {
        const auto eq = a.find('=');
        if (eq == std::string::npos || eq == 0 || a.compare(0, eq, "command") == 0)
          return usage("explain takes NAME=VALUE attributes (e.g. sasl_username=alice), not \"" + a + "\"");
        req += line(a.substr(0, eq), a.substr(eq + 1));
      }
    }
  } catch (const std::invalid_argument& e) {
    return usage(e.what());
  }
  req += "\n";

  if (socket_path.empty()) {
    auto cr = rg::load_config(config_path);
    if (!cr.config) {
      for (auto& e : cr.errors) std::cerr << "rateguardctl: fatal: " << e.text << "\n";
      return ex_config;
    }
    socket_path = cr.config->control_socket;
    if (socket_path.empty()) {
      std::cerr << "rateguardctl: fatal: " << config_path << ": control_socket is empty (disabled)\n";
      return ex_config;
    }
  }

  std::string answer;
  if (int rc = exchange(socket_path, req, answer); rc != ex_ok) return rc;
  boost::system::error_code ec;
  json::value v = json::parse(answer, ec);
  if (ec || !v.is_object()) {
    std::cerr << "rateguardctl: unreadable answer from rateguardd" << (answer.empty() ? " (empty)" : "") << "\n";
    return ex_protocol;
  }
  const auto& o = v.as_object();
  const bool ok = get(o, "ok").is_bool() && get(o, "ok").as_bool();
  if (as_json) std::cout << json::serialize(v) << "\n";
  if (!ok) {
    const std::string code = str(get(o, "code"));
    std::cerr << "rateguardctl: " << command << ": " << str(get(o, "error")) << "\n";
    return code == "usage" ? ex_usage : code == "store" ? ex_tempfail : ex_software;
  }
  try {
    if (as_json) {
      if (command == "status") return get(o, "found").as_bool() ? ex_ok : ex_nothing;
      if (command == "lock" || command == "release" || command == "reset")
        return get(o, "changed").as_bool() ? ex_ok : ex_nothing;
      return ex_ok;
    }
    return rg::print_answer(command, o, std::cout) == 0 ? ex_ok : ex_nothing;
  } catch (const std::exception& e) {  // a field of the wrong type: a daemon of another version
    std::cerr << "rateguardctl: unexpected answer from rateguardd: " << e.what() << "\n";
    return ex_protocol;
  }
}
