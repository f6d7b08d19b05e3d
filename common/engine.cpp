// Decision engine: which counters a request touches (per key kind, the winning selector's lines), the
// most severe exceeded limit, the reply text, and the per-message memory that keeps all RCPTs of one
// message consistent and logs a held message again once Postfix has given it a queue ID.
#include "engine.hpp"

#include <algorithm>
#include <cstdio>


namespace rg {

namespace {

std::uint64_t fnv1a64(std::string_view s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

char unit_tag(unit u) { return u == unit::messages ? 'm' : 'r'; }

std::string_view sender_domain_of(std::string_view sender) {
  auto at = sender.rfind('@');
  return at == std::string_view::npos ? std::string_view() : sender.substr(at + 1);
}

std::string generated_text(const limit_hit& h) {
  std::string what = std::to_string(h.limit.count) + " " + std::string(to_string(h.limit.what)) + " per " +
                     format_duration(std::chrono::seconds(h.limit.seconds)) + " for this " +
                     std::string(to_string(h.kind));
  switch (h.act) {
    case action::defer: return "Rate limit exceeded: at most " + what + ", try again later";
    case action::reject: return "Rate limit exceeded: at most " + what;
    default: return "rateguard: rate limit of " + what + " exceeded";
  }
}

}  // namespace

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::string counter_identity(key_kind k, std::string_view v) {
  static constexpr std::string_view prefixes[] = {"u:", "ip:", "s:", "d:"};
  std::string id(prefixes[static_cast<std::size_t>(k)]);
  if (v.size() <= 200) {
    id += v;
    return id;
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(fnv1a64(v)));
  id += v.substr(0, 64);
  id += '#';
  id += hex;
  return id;
}

std::string reply_for(const limit_hit& h, const std::string& custom_text) {
  const std::string text = custom_text.empty() ? generated_text(h) : custom_text;
  switch (h.act) {
    case action::defer: return "450 4.7.1 " + text;
    case action::reject: return "550 5.7.1 " + text;
    case action::hold: return "HOLD " + text;
    case action::warn: return "WARN " + text;
    case action::none: break;
  }
  return "DUNNO";
}

policy_snapshot make_snapshot(rule_set rules, engine_settings settings) {
  policy_snapshot s;
  for (const rule& r : rules.rules()) {
    if (r.kind != key_kind::sasl_username || r.selector == "*") continue;
    std::string& slot = r.selector.find('@') == std::string::npos ? s.sasl_rule_without_realm : s.sasl_rule_with_realm;
    if (slot.empty()) slot = r.where();
  }
  s.rules = std::move(rules);
  s.settings = settings;
  return s;
}

std::string realm_mismatch(const policy_snapshot& snap, std::string_view user) {
  if (user.empty()) return {};
  const bool has_realm = user.find('@') != std::string_view::npos;
  if (has_realm && !snap.sasl_rule_without_realm.empty() && snap.sasl_rule_with_realm.empty())
    return "Postfix sends sasl_username with a realm (" + std::string(user.substr(0, 128)) + ") but the rule at " +
           snap.sasl_rule_without_realm + " names a user without one: such rules never match";
  if (!has_realm && !snap.sasl_rule_with_realm.empty() && snap.sasl_rule_without_realm.empty())
    return "Postfix sends sasl_username without a realm (" + std::string(user.substr(0, 128)) + ") but the rule at " +
           snap.sasl_rule_with_realm + " names users with one: such rules never match";
  return {};
}

message_tracker::prepared message_tracker::prepare(const policy_snapshot& snap, const policy_request& r,
                                                   std::int64_t now_ms) {
  prepared p;
  p.immediate.reply = "DUNNO";
  const std::string& state = r.get(attr::protocol_state);
  const std::string& inst = r.get(attr::instance);
  if (inst != instance_) {
    instance_ = inst;
    message_verdict_.reset();
    rcpt_seen_ = false;
    queue_id_logged_ = false;
  }
  const bool has_queue_id = !r.get(attr::queue_id).empty();

  if (state == "END-OF-MESSAGE") {
    // Counted at RCPT already; here only the queue ID of a held message is new.
    if (message_verdict_ && message_verdict_->act == action::hold && has_queue_id && !queue_id_logged_) {
      queue_id_logged_ = true;
      p.immediate = *message_verdict_;
      p.immediate.repeated = true;
      p.immediate.log = true;
    }
    return p;
  }
  if (state != "RCPT") return p;

  if (message_verdict_) {
    // Every RCPT of a message gets the message's decision; each refusal is logged like Postfix logs each
    // rejected RCPT, a hold again only when it can carry the queue ID.
    p.immediate = *message_verdict_;
    p.immediate.repeated = true;
    p.immediate.log = refuses(p.immediate.act) || (has_queue_id && !queue_id_logged_);
    if (has_queue_id) queue_id_logged_ = true;
    return p;
  }

  p.first_rcpt = !rcpt_seen_;
  rcpt_seen_ = true;
  p.req.now_ms = now_ms;
  const bool enforce = snap.settings.mode == run_mode::enforce;

  auto add = [&](key_kind kind, const std::vector<const rule*>* matched, std::string key) {
    if (!matched) return;
    std::string identity;
    for (const rule* ru : *matched) {
      if (ru->act == action::none) continue;  // exemption for this key kind
      for (const window_limit& lim : ru->limits) {
        if (lim.what == unit::messages && !p.first_rcpt) continue;
        if (identity.empty()) identity = counter_identity(kind, key);
        const char tag = unit_tag(lim.what);
        auto it = std::find_if(p.req.counters.begin(), p.req.counters.end(), [&](const counter_spec& c) {
          return c.unit_tag == tag && c.window_s == lim.seconds && c.identity == identity;
        });
        if (it == p.req.counters.end()) {
          p.req.counters.push_back(counter_spec{identity, tag, lim.seconds, 1, 0});
          it = std::prev(p.req.counters.end());
        }
        if (enforce && refuses(ru->act)) {
          // A limit of 0 refuses everything: read the counts without charging anything.
          if (lim.count == 0) p.req.charge = false;
          else if (it->refuse_limit == 0 || lim.count < it->refuse_limit) it->refuse_limit = lim.count;
        }
        p.candidates.push_back(
            candidate{ru, &lim, kind, key, static_cast<std::size_t>(it - p.req.counters.begin()), it->cost});
      }
    }
  };

  const rule_set& rules = snap.rules;
  if (const auto& u = r.get(attr::sasl_username); !u.empty() && rules.has_kind(key_kind::sasl_username)) {
    std::string v = to_lower(u);
    const auto* m = rules.match(key_kind::sasl_username, v);  // before v is moved into add()
    add(key_kind::sasl_username, m, std::move(v));
  }
  if (rules.has_kind(key_kind::client_address)) {
    const std::string& text = r.get(attr::client_address);
    if (auto ip = parse_ip(text)) {
      // A plain IPv4 address is already its own canonical bucket: skip re-formatting it (hot path).
      const bool plain_v4 = !ip->v6 && text.find(':') == std::string::npos;
      add(key_kind::client_address, rules.match_address(*ip),
          plain_v4 ? text : ip_bucket(*ip, snap.settings.ipv6_prefix));
    }
  }
  if (const auto& s = r.get(attr::sender); !s.empty()) {
    std::string v = to_lower(s);
    if (rules.has_kind(key_kind::sender)) add(key_kind::sender, rules.match(key_kind::sender, v), v);
    if (rules.has_kind(key_kind::sender_domain)) {
      std::string d(sender_domain_of(v));
      const auto* m = d.empty() ? nullptr : rules.match(key_kind::sender_domain, d);
      add(key_kind::sender_domain, m, std::move(d));
    }
  }
  p.counters = p.req.counters.size();
  p.needs_store = p.counters > 0;
  return p;
}

verdict message_tracker::finish(const policy_snapshot& snap, const policy_request& r, prepared& p,
                                const store_result& res) {
  verdict v;
  v.reply = "DUNNO";
  if (!res.ok || res.counts.size() != p.counters) {
    v.store_failed = true;
    v.store_error = res.ok ? "store answered the wrong number of counts" : res.error;
    v.log = true;
    if (snap.settings.on_store_error == store_error_action::defer)
      v.reply = "451 4.3.0 Rate limit service temporarily unavailable, try again later";
    return v;
  }

  const candidate* worst = nullptr;
  std::uint64_t worst_count = 0;
  for (const candidate& c : p.candidates) {
    const std::uint64_t count = res.counts[c.counter] + c.cost;
    if (count <= c.limit->count) continue;
    if (!worst || c.r->act > worst->r->act) {
      worst = &c;
      worst_count = count;
    }
  }
  if (!worst) return v;

  limit_hit h{worst->r->act, worst->kind, worst->key, worst->r->where(), *worst->limit, worst_count};
  v.act = h.act;
  v.log = true;
  if (snap.settings.mode == run_mode::dry_run) {
    v.dry_run = true;
  } else {
    v.reply = reply_for(h, worst->r->text);
    const bool whole_message = h.act == action::hold || (refuses(h.act) && h.limit.what == unit::messages);
    if (whole_message) {
      message_verdict_ = v;
      message_verdict_->hit = h;
      if (!r.get(attr::queue_id).empty()) queue_id_logged_ = true;
    }
  }
  v.hit = std::move(h);
  return v;
}

}  // namespace rg
