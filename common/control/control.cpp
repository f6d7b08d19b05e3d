// Operator commands: parsing the name=value request, running status / top / holds / lock / release / reset /
// stats / explain against the store (async_admin; explain: a read-only async_check) and the rules snapshot, and the
// JSON reply. Nothing here charges a counter.
#include "control.hpp"

#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <charconv>
#include <cmath>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "values.hpp"
#include "decision_log.hpp"

namespace rg {

namespace json = boost::json;
using boost::asio::awaitable;
using boost::asio::use_awaitable;

namespace {

// A value as the JSON decision log writes it (json_quote: each byte its Latin-1 character), read back by
// Boost.JSON: bytes >= 0x80 become the UTF-8 of U+0080..U+00FF, so a hostile value never makes the reply
// invalid UTF-8, and ASCII stays as it is. Not cut: a reply carries whole values.
json::string jstr(std::string_view s) {
  return std::move(json::parse(json_quote(s, std::string_view::npos)).as_string());
}

std::string failure(std::string_view code, std::string_view text) {
  json::object o;
  o["ok"] = false;
  o["code"] = jstr(code);
  o["error"] = jstr(text);
  return json::serialize(o);
}

using fields = std::vector<std::pair<std::string_view, std::string_view>>;

// name=value lines up to the empty line (the size is bounded by the reader); false with `why` if malformed.
bool parse_fields(std::string_view text, fields& out, std::string& why) {
  while (!text.empty()) {
    const auto nl = text.find('\n');
    if (nl == std::string_view::npos) break;
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) return true;
    if (out.size() >= control_max_lines) {
      why = "more than " + std::to_string(control_max_lines) + " lines";
      return false;
    }
    const auto eq = line.find('=');
    if (eq == std::string_view::npos || eq == 0 || line.find('\0') != std::string_view::npos) {
      why = "a line is not name=value";
      return false;
    }
    out.emplace_back(line.substr(0, eq), line.substr(eq + 1));
  }
  why = "request not ended by an empty line";
  return false;
}

std::optional<std::string_view> field(const fields& f, std::string_view name) {
  std::optional<std::string_view> v;
  for (auto& [n, value] : f)
    if (n == name) v = value;  // the last one wins, as in the policy protocol
  return v;
}

json::object lock_json(const lock_info& l) {
  json::object o;
  o["key"] = jstr(key_of_identity(l.identity));
  o["since"] = jstr(iso_time(l.since_ms));
  o["until"] = jstr(iso_time(l.until_ms));
  o["since_ms"] = l.since_ms;
  o["until_ms"] = l.until_ms;
  o["reason"] = jstr(l.reason);
  return o;
}

json::object ok_reply(std::string_view command) {
  json::object o;
  o["ok"] = true;
  o["command"] = jstr(command);
  return o;
}

char unit_tag_of(unit u) { return u == unit::messages ? 'm' : 'r'; }
// The store's tag of what a limit counts: 'm' / 'r' (counters, baselines), 'i' / 'd' (signals), 'N' / 'D'
// (novelty counters).
char tag_of(const window_limit& l) {
  switch (l.how) {
    case measure::client_ips: return 'i';
    case measure::rcpt_domains: return 'd';
    case measure::new_networks: return 'N';
    case measure::new_domains: return 'D';
    default: return unit_tag_of(l.what);
  }
}
std::string_view unit_of_tag(char t) {
  switch (t) {
    case 'm': return "messages";
    case 'r': return "recipients";
    case 'i': return "client_ips";
    case 'N': return "new_networks";
    case 'D': return "new_domains";
    default: return "rcpt_domains";
  }
}

json::object limit_json(const rule& ru, const window_limit& lim) {
  json::object l;
  l["rule"] = jstr(ru.where());
  l["selector"] = jstr(ru.selector);
  l["action"] = jstr(to_string(ru.act));
  l["measure"] = jstr(to_string(lim.how));
  l["spec"] = jstr(to_string(lim));
  l["limit"] = lim.count;  // burst: the floor
  if (lim.how == measure::burst) l["factor"] = lim.factor();
  return l;
}

// The lines of the limits file that apply to a key (the winning selector), as the engine would match it.
const std::vector<const rule*>* rules_for_key(const policy_snapshot& snap, const parsed_key& k) {
  if (k.kind == key_kind::client_address) {
    auto c = parse_cidr(k.value);
    return c ? snap.rules.match_address(c->net) : nullptr;
  }
  return snap.rules.match(k.kind, k.value);
}

awaitable<std::string> cmd_status(const control_env& env, const parsed_key& k) {
  admin_request q;
  q.op = admin_op::status;
  q.identity = k.identity;
  admin_result res = co_await env.st.async_admin(std::move(q), use_awaitable);
  if (!res.ok) co_return failure("store", res.error);

  struct row {
    std::uint64_t count = 0;
    std::optional<baseline_value> baseline;
    json::array limits;
  };
  // Sorted by what is counted (messages, recipients, the signals, then novelty), then window.
  constexpr std::string_view tag_order = "mridND";
  std::map<std::pair<std::size_t, std::uint32_t>, row> rows;
  const auto at = [&rows, tag_order](char tag, std::uint32_t window_s) -> row& {
    return rows[{tag_order.find(tag), window_s}];
  };
  std::optional<lock_info> lock;
  for (const identity_state& s : res.identities) {
    if (s.identity != k.identity) continue;
    for (const window_count& w : s.windows) at(w.unit_tag, w.window_s).count = w.count;
    for (const baseline_state& b : s.baselines) at(b.unit_tag, b.window_s).baseline = b.value;
    for (const signal_count& g : s.signals) at(g.tag, g.window_s).count = g.distinct;
    if (s.lock) lock = s.lock;
  }
  const bool known = !rows.empty() || lock;
  bool counted = false, exempt = false;
  if (const auto* rules = rules_for_key(*env.snap, k)) {
    for (const rule* ru : *rules) {
      if (ru->act == action::none) exempt = true;
      for (const window_limit& lim : ru->limits) {
        counted = true;
        at(tag_of(lim), lim.seconds).limits.push_back(limit_json(*ru, lim));
      }
    }
  }
  json::object o = ok_reply("status");
  o["key"] = jstr(k.name);
  o["identity"] = jstr(k.identity);
  o["found"] = known;
  // A lock works through the counters the rules check: a key no rule counts is never checked.
  o["counted"] = counted && !exempt;
  json::array counters;
  for (auto& [w, r] : rows) {
    json::object c;
    c["unit"] = jstr(unit_of_tag(tag_order[w.first]));
    c["window"] = jstr(format_duration(std::chrono::seconds(w.second)));
    c["window_s"] = w.second;
    c["count"] = r.count;
    if (r.baseline) {
      // As stored: the periods before the last one charged (store.hpp); learning until baseline_warm.
      json::object b;
      b["average"] = r.baseline->average;
      b["history"] = jstr(format_duration(std::chrono::milliseconds(r.baseline->history_ms)));
      b["learning"] = !baseline_warm(*r.baseline, w.second, env.snap->settings.baseline_warmup.count());
      c["baseline"] = std::move(b);
    } else {
      c["baseline"] = nullptr;
    }
    c["limits"] = std::move(r.limits);
    counters.push_back(std::move(c));
  }
  o["counters"] = std::move(counters);
  if (lock) o["lock"] = lock_json(*lock);
  else o["lock"] = nullptr;
  co_return json::serialize(o);
}

awaitable<std::string> cmd_change(const control_env& env, const fields& f, admin_op op, const parsed_key& k,
                                  std::string_view name) {
  admin_request q;
  q.op = op;
  q.identity = k.identity;
  if (op == admin_op::lock) {
    q.ttl_ms = env.lock_time.count() > 0 ? env.lock_time.count() : std::int64_t{86'400'000};
    if (auto t = field(f, "ttl")) {
      auto d = parse_duration(*t);
      if (!d || d->count() <= 0 || d->count() > 365LL * 86'400'000)
        co_return failure("usage", "bad --ttl \"" + std::string(*t) + "\" (e.g. 30m, 12h, 7d; at most 365d)");
      q.ttl_ms = d->count();
    }
    q.reason = "rateguardctl";
    if (auto r = field(f, "reason")) {
      if (r->empty() || r->size() > 200)
        co_return failure("usage", "--reason must have 1 to 200 characters");
      for (unsigned char c : *r)
        if (c < 0x20 || c == 0x7f) co_return failure("usage", "--reason must be printable text");
      q.reason = std::string(*r);
    }
  }
  admin_result res = co_await env.st.async_admin(std::move(q), use_awaitable);
  if (!res.ok) co_return failure("store", res.error);
  json::object o = ok_reply(name);
  o["key"] = jstr(k.name);
  o["changed"] = res.changed;
  std::int64_t until_ms = 0;
  for (const identity_state& s : res.identities)
    if (s.identity == k.identity && s.lock) {
      o["lock"] = lock_json(*s.lock);
      until_ms = s.lock->until_ms;
    }
  if (res.changed && env.lock_changed) env.lock_changed(k.identity, op == admin_op::lock ? until_ms : 0);
  co_return json::serialize(o);
}

// The `n` identities of `kind` with the highest count of `what` in `window_s`, into o["top"] (and
// o["truncated"]); returns the store's error, or "".
awaitable<std::string> top_into(const control_env& env, key_kind kind, unit what, std::uint32_t window_s, std::size_t n,
                                json::object& o) {
  admin_request q;
  q.op = admin_op::top;
  q.prefix = counter_identity(kind, "");  // "u:"
  q.unit_tag = unit_tag_of(what);
  q.window_s = window_s;
  q.limit = n;
  admin_result res = co_await env.st.async_admin(std::move(q), use_awaitable);
  if (!res.ok) co_return res.error;
  o["by"] = jstr(to_string(kind));
  o["unit"] = jstr(to_string(what));
  o["window"] = jstr(format_duration(std::chrono::seconds(window_s)));
  json::array rows;
  for (const identity_state& s : res.identities) {
    std::uint64_t count = 0;
    for (const window_count& w : s.windows)
      if (w.unit_tag == q.unit_tag && w.window_s == window_s) count = w.count;
    json::object r;
    r["key"] = jstr(key_of_identity(s.identity));
    r["count"] = count;
    r["locked"] = s.lock.has_value();
    rows.push_back(std::move(r));
  }
  o["top"] = std::move(rows);
  // The store looked at only its first top_scan_max identities of that kind: say so, never hide it.
  o["truncated"] = res.truncated;
  co_return std::string();
}

// The daemon's figures, and the busiest logins of the last hour; a store that does not answer leaves the
// figures (when the store is down they matter most) with "top_error".
awaitable<std::string> cmd_stats(const control_env& env) {
  if (!env.stats) co_return failure("usage", "stats: not available here");
  const stats_figures s = env.stats();
  json::object o = ok_reply("stats");
  o["since"] = jstr(iso_time(s.since_ms));
  o["uptime_s"] = s.uptime_s;
  o["requests"] = s.requests;
  json::object d;
  for (const auto& [action_name, n] : s.decisions) d[action_name] = n;
  o["decisions"] = std::move(d);
  o["connections"] = s.connections;
  o["peak_connections"] = s.peak_connections;
  // JSON has no infinity: beyond the histogram's last bucket is written as 1e10 (rateguardctl: ">2.5s").
  o["store_p99_s"] = std::isinf(s.store_p99_s) ? 1e10 : s.store_p99_s;
  o["locks_set"] = s.locks_set;
  o["holds_journaled"] = s.holds_journaled;
  if (auto error = co_await top_into(env, key_kind::sasl_username, unit::messages, 3600, stats_top_keys, o);
      !error.empty())
    o["top_error"] = jstr(error);
  co_return json::serialize(o);
}

awaitable<std::string> cmd_top(const control_env& env, const fields& f) {
  key_kind kind = key_kind::sasl_username;
  if (auto by = field(f, "by")) {
    auto k = key_kind_from_string(*by);
    if (!k) co_return failure("usage", "--by must be sasl_username, client_address, sender, sender_domain or local_user");
    kind = *k;
  }
  std::uint32_t window_s = 3600;
  if (auto w = field(f, "window")) {
    auto d = parse_duration(*w);
    if (!d || d->count() < 1000 || d->count() % 1000 != 0 || d->count() > 30LL * 86'400'000)
      co_return failure("usage", "bad --window \"" + std::string(*w) + "\" (a window of the limits file, e.g. 1h)");
    window_s = static_cast<std::uint32_t>(d->count() / 1000);
  }
  unit what = unit::messages;
  if (auto u = field(f, "unit")) {
    auto parsed = unit_from_string(*u);
    if (!parsed) co_return failure("usage", "--unit must be messages or recipients");
    what = *parsed;
  }
  std::size_t n = 20;
  if (auto v = field(f, "n")) {
    auto parsed = parse_number<std::size_t>(*v);
    if (!parsed || *parsed == 0 || *parsed > control_max_rows)
      co_return failure("usage", "-n must be 1 to " + std::to_string(control_max_rows));
    n = *parsed;
  }
  json::object o = ok_reply("top");
  if (auto error = co_await top_into(env, kind, what, window_s, n, o); !error.empty()) co_return failure("store", error);
  co_return json::serialize(o);
}

awaitable<std::string> cmd_holds(const control_env& env, const fields& f) {
  admin_request q;
  q.op = admin_op::journal_read;
  q.limit = 1000;
  if (auto s = field(f, "since_ms")) {
    auto v = parse_number<std::int64_t>(*s);
    if (!v || *v < 0) co_return failure("usage", "bad since_ms");
    q.since_ms = *v;
  }
  if (auto k = field(f, "key")) {
    std::string why;
    auto parsed = parse_key(*k, env.snap->settings.ipv6_prefix, &why);
    if (!parsed) co_return failure("usage", why);
    q.key = parsed->name;
  }
  if (auto v = field(f, "n")) {
    auto parsed = parse_number<std::size_t>(*v);
    if (!parsed || *parsed == 0 || *parsed > control_max_rows)
      co_return failure("usage", "-n must be 1 to " + std::to_string(control_max_rows));
    q.limit = *parsed;
  }
  admin_result res = co_await env.st.async_admin(std::move(q), use_awaitable);
  if (!res.ok) co_return failure("store", res.error);
  json::object o = ok_reply("holds");
  json::array rows;
  for (const hold_record& h : res.holds) {
    json::object r;
    r["id"] = jstr(h.id);
    r["time"] = jstr(iso_time(h.time_ms));
    r["time_ms"] = h.time_ms;
    r["queue_id"] = jstr(h.queue_id);
    r["instance"] = jstr(h.instance);
    r["key"] = jstr(h.key);
    r["rule"] = jstr(h.rule);
    r["reason"] = jstr(h.reason);
    r["client"] = jstr(h.client);
    r["sender"] = jstr(h.sender);
    r["recipients"] = h.recipients;
    rows.push_back(std::move(r));
  }
  o["holds"] = std::move(rows);
  co_return json::serialize(o);
}

awaitable<std::string> cmd_explain(const control_env& env, const fields& f) {
  const policy_snapshot& snap = *env.snap;
  policy_request r;
  r.set(attr::request, "smtpd_access_policy");
  r.set(attr::protocol_state, "RCPT");
  r.set(attr::instance, "rateguardctl-explain");
  for (auto& [name, value] : f) {
    if (name == "command") continue;
    auto a = attr_from_name(name);
    // A typo ("sasl_user=alice") would silently explain another request: refuse it.
    if (!a) co_return failure("usage", "unknown attribute \"" + std::string(name) + "\"");
    r.set(*a, value);
  }
  message_tracker t;
  auto p = t.prepare(snap, r);
  store_result res;
  res.ok = true;
  verdict v = p.immediate;
  if (p.needs_store) {
    p.req.charge = false;  // explain never counts
    store_request sr = p.req;
    res = co_await env.st.async_check(std::move(sr), use_awaitable);
    if (!res.ok) co_return failure("store", res.error);
    v = t.finish(snap, r, p, res);
  }

  json::object o = ok_reply("explain");
  o["protocol_state"] = jstr(r.get(attr::protocol_state));
  json::array keys;
  for (const key_match& m : match_request(snap, r)) {
    json::object k;
    k["kind"] = jstr(to_string(m.kind));
    k["compared"] = jstr(m.seen());  // what the selectors saw (sasl_username with its realm, ...)
    k["counted_as"] = jstr(key_name(m.kind, m.key));
    json::array rules;
    if (m.rules) {
      k["selector"] = jstr(m.rules->front()->selector);
      for (const rule* ru : *m.rules) {
        json::object jr;
        jr["rule"] = jstr(ru->where());
        jr["selector"] = jstr(ru->selector);
        jr["action"] = jstr(to_string(ru->act));
        json::array limits;
        for (const window_limit& lim : ru->limits) {
          json::object l = limit_json(*ru, lim);
          l["unit"] = jstr(unit_of_tag(tag_of(lim)));
          l["window"] = jstr(format_duration(std::chrono::seconds(lim.seconds)));
          for (const auto& c : p.candidates) {
            if (c.r != ru || c.limit != &lim) continue;
            const auto e = message_tracker::evaluate(snap, c, res);
            // Before this request (signals: explain adds no value, cost 0; novelty: what the request would add).
            const std::uint64_t cost = is_novelty(lim.how) ? e.added : c.cost;
            l["count"] = e.count - cost;
            l["cost"] = cost;
            l["threshold"] = e.threshold;
            l["applies"] = e.applies;  // false: a burst rule whose baseline is still learning
            if (lim.how == measure::burst) l["baseline"] = e.baseline;
            l["exceeded"] = e.exceeded();
          }
          limits.push_back(std::move(l));
        }
        jr["limits"] = std::move(limits);
        rules.push_back(std::move(jr));
      }
    } else {
      k["selector"] = nullptr;
    }
    k["rules"] = std::move(rules);
    keys.push_back(std::move(k));
  }
  o["keys"] = std::move(keys);
  json::array locks;
  for (const lock_info& l : res.locks) locks.push_back(lock_json(l));
  o["locks"] = std::move(locks);
  json::object d;
  d["action"] = jstr(v.act == action::none ? std::string_view("dunno") : to_string(v.act));
  d["reply"] = jstr(v.reply);
  d["dry_run"] = v.dry_run;
  if (v.hit) {
    d["key"] = jstr(key_name(v.hit->kind, v.hit->key));
    d["rule"] = jstr(v.hit->rule_where);
    d["count"] = v.hit->count;
    d["limit"] = v.hit->threshold;
    d["spec"] = jstr(to_string(v.hit->limit));
    d["window"] = jstr(format_duration(std::chrono::seconds(v.hit->limit.seconds)));
  }
  if (v.lock) d["locked_key"] = jstr(v.lock_key);
  d["would_lock"] = v.set_lock_ms > 0;
  o["decision"] = std::move(d);
  o["charged"] = false;
  co_return json::serialize(o);
}

}  // namespace

awaitable<std::string> run_control(control_env env, std::string request) {
  fields f;
  std::string why;
  if (!parse_fields(request, f, why)) co_return failure("usage", why);
  const auto cmd = field(f, "command");
  if (!cmd) co_return failure("usage", "no command= line");
  if (*cmd == "explain") co_return co_await cmd_explain(env, f);
  if (*cmd == "top") co_return co_await cmd_top(env, f);
  if (*cmd == "holds") co_return co_await cmd_holds(env, f);
  if (*cmd == "stats") co_return co_await cmd_stats(env);

  static constexpr std::pair<std::string_view, admin_op> keyed[] = {
      {"status", admin_op::status}, {"lock", admin_op::lock}, {"release", admin_op::release}, {"reset", admin_op::reset}};
  for (const auto& [name, op] : keyed) {
    if (*cmd != name) continue;
    const auto k = field(f, "key");
    if (!k) co_return failure("usage", std::string(name) + " needs a key");
    auto parsed = parse_key(*k, env.snap->settings.ipv6_prefix, &why);
    if (!parsed) co_return failure("usage", why);
    if (op == admin_op::status) co_return co_await cmd_status(env, *parsed);
    co_return co_await cmd_change(env, f, op, *parsed, name);
  }
  co_return failure("usage", "unknown command \"" + std::string(*cmd) + "\"");
}

}  // namespace rg
