// rateguardctl's table rendering (ctl_format.hpp): columns as wide as their widest cell, times and reasons as
// the daemon sent them. Reads only the answer; the exit code it returns is the one the answer implies.
#include "ctl_format.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <cstdio>
#include <string>
#include <vector>

namespace rg {

namespace json = boost::json;

std::string str(const json::value& v) {
  if (v.is_string()) return std::string(v.as_string());
  if (v.is_null()) return "";
  return json::serialize(v);
}

const json::value& get(const json::object& o, const char* k) {
  static const json::value null;
  auto it = o.find(k);
  return it == o.end() ? null : it->value();
}

namespace {
// A latency as the stats line writes it: "0.5ms", "12ms", "2.5s", "-" when there was no round trip.
std::string latency_text(const json::value& v) {
  if (!v.is_number()) return "-";
  const double s = v.to_number<double>();
  if (s <= 0) return "-";
  if (s > 1e9) return ">2.5s";  // beyond the histogram's last bucket
  char buf[32];
  if (s < 1)
    std::snprintf(buf, sizeof buf, "%gms", s * 1000);
  else
    std::snprintf(buf, sizeof buf, "%gs", s);
  return buf;
}

}  // namespace

std::string stats_line(const json::object& o) {
  std::string s = "statistics: since " + str(get(o, "since")) + " requests=" + str(get(o, "requests"));
  if (get(o, "decisions").is_object())
    for (const auto& [action, n] : get(o, "decisions").as_object()) s += " " + std::string(action) + "=" + str(n);
  s += " peak_connections=" + str(get(o, "peak_connections")) + " store_p99=" + latency_text(get(o, "store_p99_s")) +
       " locks_set=" + str(get(o, "locks_set")) + " holds=" + str(get(o, "holds_journaled"));
  if (get(o, "top").is_array()) {
    std::string top;
    for (const auto& r : get(o, "top").as_array())
      top += (top.empty() ? "" : ",") + str(get(r.as_object(), "key")) + ":" + str(get(r.as_object(), "count"));
    s += " top_1h=" + (top.empty() ? std::string("-") : top);
  } else {
    s += " top_1h=? (" + str(get(o, "top_error")) + ")";
  }
  return s;
}

namespace {

std::string pad(const std::string& s, std::size_t w) {
  return s.size() >= w ? s : s + std::string(w - s.size(), ' ');
}
std::string rpad(const std::string& s, std::size_t w) {
  return s.size() >= w ? s : std::string(w - s.size(), ' ') + s;
}

// Columns as wide as their widest cell, two spaces apart.
void print_table(std::ostream& out, const std::vector<std::vector<std::string>>& rows,
                 const std::vector<bool>& right = {}) {
  std::vector<std::size_t> w;
  for (auto& r : rows)
    for (std::size_t i = 0; i < r.size(); ++i) {
      if (w.size() <= i) w.push_back(0);
      w[i] = std::max(w[i], r[i].size());
    }
  for (auto& r : rows) {
    std::string line;
    for (std::size_t i = 0; i < r.size(); ++i) {
      const bool last = i + 1 == r.size();
      const bool ra = i < right.size() && right[i];
      line += ra ? rpad(r[i], w[i]) : (last ? r[i] : pad(r[i], w[i]));
      if (!last) line += "  ";
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out << line << "\n";
  }
}

std::string lock_text(const json::object& l) {
  return "locked until " + str(get(l, "until")) + " (since " + str(get(l, "since")) +
         "): " + str(get(l, "reason"));
}

int print_status(const json::object& o, std::ostream& out) {
  out << "key      " << str(get(o, "key")) << "\n";
  const auto& lock = get(o, "lock");
  out << "lock     " << (lock.is_object() ? lock_text(lock.as_object()) : std::string("none")) << "\n";
  if (!get(o, "counted").as_bool())
    out << "note     no rule counts this key (exempt or no matching rule): a lock on it has no effect\n";
  std::vector<std::vector<std::string>> rows{{"UNIT", "WINDOW", "COUNT", "BASELINE", "LIMITS"}};
  for (const auto& c : get(o, "counters").as_array()) {
    const auto& co = c.as_object();
    std::string limits;
    for (const auto& l : get(co, "limits").as_array()) {
      const auto& lo = l.as_object();
      if (!limits.empty()) limits += ", ";
      const bool plain = str(get(lo, "measure")) == "count";
      limits += (plain ? str(get(lo, "limit")) : str(get(lo, "spec"))) + " " + str(get(lo, "action")) + " (" +
                str(get(lo, "rule")) + ")";
    }
    std::string baseline = "-";
    if (const auto& b = get(co, "baseline"); b.is_object()) {
      char avg[32];
      std::snprintf(avg, sizeof avg, "%.2f", get(b.as_object(), "average").to_number<double>());
      baseline = std::string(avg) + (get(b.as_object(), "learning").as_bool() ? " (learning, " : " (") +
                 str(get(b.as_object(), "history")) + ")";
    }
    rows.push_back({str(get(co, "unit")), str(get(co, "window")), str(get(co, "count")), baseline,
                    limits.empty() ? "-" : limits});
  }
  if (rows.size() > 1)
    print_table(out, rows, {false, false, true, false, false});
  else
    out << "counters none\n";
  return get(o, "found").as_bool() ? 0 : 1;
}

int print_top(const json::object& o, std::ostream& out) {
  out << "# " << str(get(o, "unit")) << " per " << str(get(o, "by")) << " in the last "
      << str(get(o, "window")) << "\n";
  std::vector<std::vector<std::string>> rows{{"COUNT", "KEY", ""}};
  for (const auto& r : get(o, "top").as_array()) {
    const auto& ro = r.as_object();
    rows.push_back({str(get(ro, "count")), str(get(ro, "key")), get(ro, "locked").as_bool() ? "locked" : ""});
  }
  print_table(out, rows, {true, false, false});
  if (get(o, "truncated").is_bool() && get(o, "truncated").as_bool())
    out << "# (the store has more keys of this kind than top scans: only the first ones were counted)\n";
  return 0;
}

int print_stats(const json::object& o, std::ostream& out) {
  out << "since        " << str(get(o, "since")) << " (uptime " << str(get(o, "uptime_s")) << " s)\n";
  out << "requests     " << str(get(o, "requests")) << "\n";
  std::string decisions;
  for (const auto& [action, n] : get(o, "decisions").as_object())
    decisions += (decisions.empty() ? "" : " ") + std::string(action) + "=" + str(n);
  out << "decisions    " << (decisions.empty() ? "-" : decisions) << "\n";
  out << "connections  " << str(get(o, "connections")) << " open, peak " << str(get(o, "peak_connections")) << "\n";
  out << "store p99    " << latency_text(get(o, "store_p99_s")) << "\n";
  out << "locks set    " << str(get(o, "locks_set")) << "\n";
  out << "holds        " << str(get(o, "holds_journaled")) << " journaled\n";
  if (get(o, "top").is_array()) return print_top(o, out);
  out << "# top keys: the store did not answer: " << str(get(o, "top_error")) << "\n";
  return 0;
}

int print_holds(const json::object& o, std::ostream& out) {
  std::vector<std::vector<std::string>> rows{
      {"TIME", "QUEUE_ID", "KEY", "RULE", "RCPTS", "CLIENT", "SENDER", "REASON"}};
  std::vector<std::string> ids;
  for (const auto& r : get(o, "holds").as_array()) {
    const auto& h = r.as_object();
    const std::string qid = str(get(h, "queue_id"));
    if (!qid.empty()) ids.push_back(qid);
    rows.push_back({str(get(h, "time")), qid.empty() ? "-" : qid, str(get(h, "key")),
                    str(get(h, "rule")).empty() ? "-" : str(get(h, "rule")), str(get(h, "recipients")),
                    str(get(h, "client")), "<" + str(get(h, "sender")) + ">", str(get(h, "reason"))});
  }
  print_table(out, rows, {false, false, false, false, true, false, false, false});
  if (!ids.empty()) {
    out << "\n# release from the hold queue (deliver):\n";
    for (auto& id : ids) out << "postsuper -H " << id << "\n";
    out << "# or delete:\n";
    for (auto& id : ids) out << "postsuper -d " << id << "\n";
  }
  return 0;
}

int print_change(const json::object& o, std::string_view cmd, std::ostream& out) {
  const bool changed = get(o, "changed").as_bool();
  const std::string key = str(get(o, "key"));
  if (cmd == "lock") {
    if (changed)
      out << key << ": locked";
    else
      out << key << ": already locked, lock kept";
    if (get(o, "lock").is_object()) out << " (" << lock_text(get(o, "lock").as_object()) << ")";
    out << "\n";
  } else if (cmd == "release") {
    out << key
        << (changed ? ": lock released (held mail stays held: see rateguardctl holds)" : ": not locked")
        << "\n";
  } else {
    out << key << (changed ? ": counters, baselines, signals and lock deleted" : ": nothing to reset")
        << "\n";
  }
  return changed ? 0 : 1;
}

int print_explain(const json::object& o, std::ostream& out) {
  const auto& d = get(o, "decision").as_object();
  out << "decision  " << str(get(d, "action"))
      << (get(d, "dry_run").as_bool() ? " (dry-run: answers DUNNO)" : "") << "\nreply     "
      << str(get(d, "reply")) << "\n";
  if (!str(get(d, "rule")).empty())
    out << "because   " << str(get(d, "key")) << " " << str(get(d, "rule")) << ": " << str(get(d, "count"))
        << " in " << str(get(d, "window")) << ", limit " << str(get(d, "limit")) << "\n";
  if (!str(get(d, "locked_key")).empty()) out << "locked    " << str(get(d, "locked_key")) << "\n";
  if (get(d, "would_lock").as_bool()) out << "          (this hold would lock the key)\n";
  out << "state     " << str(get(o, "protocol_state")) << " (not counted)\n";
  for (const auto& k : get(o, "keys").as_array()) {
    const auto& ko = k.as_object();
    out << "\n"
        << str(get(ko, "kind")) << " \"" << str(get(ko, "compared")) << "\" counted as "
        << str(get(ko, "counted_as")) << ": ";
    if (get(ko, "selector").is_null()) {
      out << "no rule matches\n";
      continue;
    }
    out << "selector " << str(get(ko, "selector")) << "\n";
    std::vector<std::vector<std::string>> rows{{"  RULE", "ACTION", "LIMIT", "COUNT", "THRESHOLD", ""}};
    for (const auto& r : get(ko, "rules").as_array()) {
      const auto& ro = r.as_object();
      const auto& limits = get(ro, "limits").as_array();
      if (limits.empty())
        rows.push_back({"  " + str(get(ro, "rule")), str(get(ro, "action")), "-", "-", "-", "exempt"});
      for (const auto& l : limits) {
        const auto& lo = l.as_object();
        const bool has = lo.contains("count");
        std::string note;
        if (has && get(lo, "exceeded").as_bool())
          note = "exceeded";
        else if (has && !get(lo, "applies").as_bool())
          note = "baseline learning";
        rows.push_back({"  " + str(get(ro, "rule")), str(get(ro, "action")), str(get(lo, "spec")),
                        has ? str(get(lo, "count")) + "+" + str(get(lo, "cost")) : "-",
                        has ? str(get(lo, "threshold")) : "-", note});
      }
    }
    print_table(out, rows, {false, false, false, true, true, false});
  }
  for (const auto& l : get(o, "locks").as_array())
    out << "\nlock      " << str(get(l.as_object(), "key")) << " " << lock_text(l.as_object()) << "\n";
  return 0;
}

}  // namespace

int print_answer(std::string_view command, const json::object& o, std::ostream& out) {
  if (command == "status") return print_status(o, out);
  if (command == "lock" || command == "release" || command == "reset") return print_change(o, command, out);
  if (command == "top") return print_top(o, out);
  if (command == "holds") return print_holds(o, out);
  if (command == "stats") return print_stats(o, out);
  return print_explain(o, out);
}

}  // namespace rg
