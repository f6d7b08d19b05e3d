// Decision engine: which counters a request touches (per key kind, the winning selector's lines), the
// most severe exceeded limit or a lock, the reply text, operator keys (KIND:VALUE), and the per-message
// memory that keeps all RCPTs of one message consistent, logs a held message again once Postfix has given it
// a queue ID, and hands out one hold journal record per held message when it is finished.
#include "engine.hpp"

#include <algorithm>
#include <charconv>
#include <limits>
#include <cstdio>
#include <utility>

#include "values.hpp"


namespace rg {

namespace {

constexpr std::uint64_t fnv_offset = 1469598103934665603ull;

// FNV-1a over `s` from state h; `lower` folds ASCII upper case as it goes (to_lower's folding, without the copy).
std::uint64_t fnv1a64(std::string_view s, std::uint64_t h = fnv_offset, bool lower = false) {
  for (unsigned char c : s) {
    if (lower && c >= 'A' && c <= 'Z') c = static_cast<unsigned char>(c - 'A' + 'a');
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// The 16 lower-case hex digits of h at out[0..15].
void put_hex(char* out, std::uint64_t h) {
  constexpr char digits[] = "0123456789abcdef";
  for (int i = 15; i >= 0; --i, h >>= 4) out[i] = digits[h & 15];
}

char unit_tag(unit u) { return u == unit::messages ? 'm' : 'r'; }

std::string_view sender_domain_of(std::string_view sender) {
  auto at = sender.rfind('@');
  return at == std::string_view::npos ? std::string_view() : sender.substr(at + 1);
}

constexpr std::string_view identity_prefixes[] = {"u:", "ip:", "s:", "d:", "l:"};  // by key_kind

// What a limit counts, in words: "messages", "recipients", "client addresses", "recipient domains", "new client
// networks", "new recipient domains".
std::string counted(const window_limit& l) {
  switch (l.how) {
    case measure::client_ips: return "client addresses";
    case measure::rcpt_domains: return "recipient domains";
    case measure::new_networks: return "new client networks";
    case measure::new_domains: return "new recipient domains";
    default: return std::string(to_string(l.what));
  }
}

// A limit counted at every RCPT (recipients, recipient domains); the others count a message at its first RCPT.
bool per_recipient(const window_limit& l) {
  return l.what == unit::recipients || l.how == measure::rcpt_domains || l.how == measure::new_domains;
}

counter_spec make_counter(const std::string& identity, char tag, std::uint32_t window_s, std::uint32_t cost) {
  counter_spec c;
  c.identity = identity;
  c.unit_tag = tag;
  c.window_s = window_s;
  c.cost = cost;
  return c;
}

// The store's unit tag of a novelty measure's counter and familiarity filter.
char novelty_tag(measure m) { return m == measure::new_networks ? 'N' : 'D'; }

std::string one_decimal(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

// "61 messages in 1m, limit 60"; "146 messages in 1h, limit 145 (5x baseline 29.2, floor 10)"
std::string exceeded_text(const limit_hit& h) {
  std::string s = std::to_string(h.count) + " " + counted(h.limit) + " in " +
                  format_duration(std::chrono::seconds(h.limit.seconds)) + ", limit " + std::to_string(h.threshold);
  if (h.limit.how == measure::burst)
    s += " (" + factor_text(h.limit.factor_x100) + " baseline " + one_decimal(h.baseline) + ", floor " +
         std::to_string(h.limit.count) + ")";
  return s;
}

std::string generated_text(const limit_hit& h) {
  if (h.limit.how == measure::burst)
    return "rateguard: unusual volume for this " + std::string(to_string(h.kind)) + " (" + std::to_string(h.count) +
           " " + counted(h.limit) + " in " + format_duration(std::chrono::seconds(h.limit.seconds)) + ")";
  std::string what = std::to_string(h.limit.count) + " " + counted(h.limit) + " per " +
                     format_duration(std::chrono::seconds(h.limit.seconds)) + " for this " +
                     std::string(to_string(h.kind));
  switch (h.act) {
    case action::defer: return "Rate limit exceeded: at most " + what + ", try again later";
    case action::reject: return "Rate limit exceeded: at most " + what;
    default: return "rateguard: rate limit of " + what + " exceeded";
  }
}

}  // namespace

std::uint16_t familiar_bit(char kind, std::string_view value) {
  return static_cast<std::uint16_t>(fnv1a64(value, fnv1a64(std::string_view(&kind, 1))) % familiar_bits);
}

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::string counter_identity(key_kind k, std::string_view v) {
  std::string id(identity_prefixes[static_cast<std::size_t>(k)]);
  if (v.size() <= 200) {
    id += v;
    return id;
  }
  id += v.substr(0, 64);
  id += '#';
  const std::size_t at = id.size();
  id.resize(at + 16);
  put_hex(id.data() + at, fnv1a64(v));
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

std::string key_name(key_kind k, std::string_view value) {
  std::string s(to_string(k));
  s += ':';
  s += value;
  return s;
}

std::optional<parsed_key> parse_key(std::string_view text, unsigned ipv6_prefix, std::string* why) {
  auto fail = [&](std::string w) -> std::optional<parsed_key> {
    if (why) *why = std::move(w);
    return std::nullopt;
  };
  const auto colon = text.find(':');
  if (colon == std::string_view::npos) return fail("a key is KIND:VALUE, e.g. sasl_username:alice");
  const auto kind = key_kind_from_string(text.substr(0, colon));
  if (!kind)
    return fail("unknown key kind \"" + std::string(text.substr(0, colon)) +
                "\" (sasl_username, client_address, sender, sender_domain or local_user)");
  const std::string_view v = text.substr(colon + 1);
  if (v.empty()) return fail("empty value in key " + std::string(text));
  std::string value;
  if (*kind == key_kind::client_address) {
    // An address, or the network its bucket prints as ("2001:db8:1:2::/64"): counted like the engine counts.
    std::optional<ip_address> ip;
    if (v.find('/') != std::string_view::npos) {
      if (auto c = parse_cidr(v)) ip = c->net;
    } else {
      ip = parse_ip(v);
    }
    if (!ip) return fail("not an IP address or network: " + std::string(v));
    value = ip_bucket(*ip, ipv6_prefix);
  } else {
    value = to_lower(v);
  }
  parsed_key k{*kind, value, counter_identity(*kind, value), key_name(*kind, value)};
  return k;
}

std::string key_of_identity(std::string_view identity) {
  for (std::size_t i = 0; i < key_kind_count; ++i)
    if (identity.substr(0, identity_prefixes[i].size()) == identity_prefixes[i])
      return key_name(static_cast<key_kind>(i), identity.substr(identity_prefixes[i].size()));
  return std::string(identity);
}

std::string lock_reason(const limit_hit& h) { return h.rule_where + " " + exceeded_text(h); }

std::vector<key_match> match_request(const policy_snapshot& snap, const policy_request& r) {
  std::vector<key_match> out;
  out.reserve(key_kind_count);  // at most one per kind: a single allocation
  const rule_set& rules = snap.rules;
  if (const auto& u = r.get(attr::sasl_username); !u.empty() && rules.has_kind(key_kind::sasl_username)) {
    key_match& m = out.emplace_back(key_match{key_kind::sasl_username, to_lower(u), {}, nullptr});
    m.rules = rules.match(key_kind::sasl_username, m.key);
  }
  if (rules.has_kind(key_kind::client_address)) {
    const std::string_view text = r.get(attr::client_address);
    if (auto ip = parse_ip(text)) {
      // A plain IPv4 address is already its own canonical bucket: skip re-formatting it (hot path).
      const bool plain_v4 = !ip->v6 && text.find(':') == std::string_view::npos;
      std::string bucket = plain_v4 ? std::string(text) : ip_bucket(*ip, snap.settings.ipv6_prefix);
      key_match& m = out.emplace_back(key_match{key_kind::client_address, std::move(bucket), {}, nullptr});
      if (m.key != text) m.compared = text;
      m.rules = rules.match_address(*ip);
    }
  }
  if (const auto& s = r.get(attr::sender); !s.empty()) {
    std::string v = to_lower(s);
    std::string d;
    if (rules.has_kind(key_kind::sender_domain)) d = sender_domain_of(v);
    if (rules.has_kind(key_kind::sender)) {
      const auto* m = rules.match(key_kind::sender, v);
      out.push_back(key_match{key_kind::sender, std::move(v), {}, m});
    }
    if (!d.empty()) {
      const auto* m = rules.match(key_kind::sender_domain, d);
      out.push_back(key_match{key_kind::sender_domain, std::move(d), {}, m});
    }
  }
  if (!r.local_user.empty() && rules.has_kind(key_kind::local_user)) {
    key_match& m = out.emplace_back(key_match{key_kind::local_user, to_lower(r.local_user), {}, nullptr});
    m.rules = rules.match(key_kind::local_user, m.key);
  }
  return out;
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

std::string charge_token(const policy_request& r) {
  const std::string_view inst = r.get(attr::instance);
  if (inst.empty()) return {};
  // Hashed, 32 hex digits: a client may send a 10 kB instance or recipient, and the token becomes part of a Redis
  // key name. A '\0' between the fields keeps "ab"+"c" apart from "a"+"bc". Recipients fold to lower case.
  constexpr std::string_view sep("\0", 1);
  std::uint64_t what = fnv1a64(r.get(attr::recipient), fnv_offset, true);
  for (const std::string& rcpt : r.recipients) what = fnv1a64(rcpt, fnv1a64(sep, what), true);
  what = fnv1a64(r.get(attr::sender), fnv1a64(sep, what));
  what = fnv1a64(r.get(attr::client_address), fnv1a64(sep, what));
  std::string token(32, '0');
  put_hex(token.data(), fnv1a64(inst));
  put_hex(token.data() + 16, what);
  return token;
}

message_tracker::prepared message_tracker::prepare(const policy_snapshot& snap, const policy_request& r,
                                                   std::int64_t now_ms) {
  prepared p;
  p.immediate.reply = "DUNNO";
  const std::string_view state = r.get(attr::protocol_state);
  const std::string_view inst = r.get(attr::instance);
  // A front that decides a whole message at once (milter, at end of message) sends it as one request with
  // all its recipients: charged all or nothing, the message once and every recipient.
  const bool whole = !r.recipients.empty();
  if (inst != instance_ || whole) {
    finish_message();  // a new instance on the connection: the previous message is done
    instance_ = inst;
    message_verdict_.reset();
    rcpt_seen_ = false;
    queue_id_logged_ = false;
    rcpts_ = 0;
  }
  note_request(r);
  const bool has_queue_id = !r.get(attr::queue_id).empty();

  if (state == "END-OF-MESSAGE") {
    // Counted at RCPT already; here only the queue ID of a held message is new.
    if (message_verdict_ && message_verdict_->act == action::hold && has_queue_id && !queue_id_logged_) {
      queue_id_logged_ = true;
      p.immediate = *message_verdict_;
      p.immediate.repeated = true;
      p.immediate.log = true;
    }
    finish_message();
    return p;
  }
  if (state != "RCPT" && !whole) return p;

  if (message_verdict_ && !whole) {
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
  p.req.once = charge_token(r);
  // Room for the usual rule sets (the sample's first RCPT has 7 counters), so the vectors do not grow
  // 1-2-4-8 on every request.
  constexpr std::size_t usual_counters = 8;
  p.req.counters.reserve(usual_counters);
  p.candidates.reserve(usual_counters);
  const bool enforce = snap.settings.mode == run_mode::enforce;

  p.req.half_life_ms = snap.settings.baseline_half_life.count();
  p.req.familiar_ms = snap.settings.familiar_time.count();
  p.req.warmup_ms = snap.settings.baseline_warmup.count();
  // The values the signals add: the client (as counted: IPv6 per network), counted once per message, and the
  // recipient's domain, per RCPT. Empty when the request has none (the signal then skips the request). Made only
  // when a signal limit asks for them: the hot path without signals formats no address.
  std::optional<std::string> client_value, domain_value;
  const std::uint32_t rcpt_cost = whole ? static_cast<std::uint32_t>(std::min<std::size_t>(r.recipients.size(), UINT32_MAX)) : 1;
  // The recipient domains a whole message adds to a rcpt_domains signal, each once (lower case, first seen first).
  std::vector<std::string> message_domains;
  if (whole)
    for (const std::string& rcpt : r.recipients) {
      std::string d = to_lower(sender_domain_of(rcpt));
      if (!d.empty() && std::find(message_domains.begin(), message_domains.end(), d) == message_domains.end())
        message_domains.push_back(std::move(d));
    }
  // The familiarity bits a novelty counter looks up (sorted, distinct): the client's network, or the recipient
  // domains (a whole message's all). Empty when the request has no such value.
  std::optional<std::vector<std::uint16_t>> network_bits, domain_bits;
  const auto novel_bits = [&](char tag) -> const std::vector<std::uint16_t>& {
    auto& bits = tag == 'N' ? network_bits : domain_bits;
    if (bits) return *bits;
    bits.emplace();
    const auto add_bit = [&](std::string_view v) {
      if (!v.empty()) bits->push_back(familiar_bit(tag, v));
    };
    if (tag == 'N') {
      if (const auto ip = parse_ip(r.get(attr::client_address))) {
        const ip_address net =
            ip_network(*ip, ip->v6 ? snap.settings.network_ipv6_prefix : snap.settings.network_ipv4_prefix);
        add_bit(std::string_view(reinterpret_cast<const char*>(net.bytes.data()), net.v6 ? 16 : 4));
      }
    } else if (whole) {
      for (const std::string& d : message_domains) add_bit(d);
    } else {
      add_bit(to_lower(sender_domain_of(r.get(attr::recipient))));
    }
    std::sort(bits->begin(), bits->end());
    bits->erase(std::unique(bits->begin(), bits->end()), bits->end());
    return *bits;
  };
  const auto signal_value = [&](char tag) -> const std::string& {
    if (tag == 'i') {
      if (!client_value) {
        const auto ip = parse_ip(r.get(attr::client_address));
        client_value = ip ? ip_bucket(*ip, snap.settings.ipv6_prefix) : std::string();
      }
      return *client_value;
    }
    if (!domain_value) domain_value = to_lower(sender_domain_of(r.get(attr::recipient)));
    return *domain_value;
  };
  auto add = [&](std::uint8_t key_index) {
    const key_match& km = p.keys[key_index];
    const key_kind kind = km.kind;
    const std::vector<const rule*>* matched = km.rules;
    const std::string& key = km.key;
    if (!matched) return;
    std::string identity;
    for (const rule* ru : *matched) {
      if (ru->act == action::none) continue;  // exemption for this key kind
      for (const window_limit& lim : ru->limits) {
        if (!per_recipient(lim) && !p.first_rcpt) continue;
        if (identity.empty()) identity = counter_identity(kind, key);
        if (is_novelty(lim.how)) {
          const char tag = novelty_tag(lim.how);
          const std::vector<std::uint16_t>& bits = novel_bits(tag);
          if (bits.empty()) continue;
          auto it = std::find_if(p.req.counters.begin(), p.req.counters.end(), [&](const counter_spec& c) {
            return c.unit_tag == tag && c.window_s == lim.seconds && c.identity == identity;
          });
          if (it == p.req.counters.end()) {
            p.req.counters.push_back(make_counter(identity, tag, lim.seconds, 0));
            it = std::prev(p.req.counters.end());
            it->novel = bits;
          }
          if (enforce && refuses(ru->act) && (it->refuse_limit == 0 || lim.count < it->refuse_limit))
            it->refuse_limit = lim.count;
          p.candidates.push_back(
              candidate{ru, &lim, kind, key_index, static_cast<std::size_t>(it - p.req.counters.begin()), 0});
          continue;
        }
        if (lim.how == measure::client_ips || lim.how == measure::rcpt_domains) {
          const char tag = lim.how == measure::client_ips ? 'i' : 'd';
          // Usually one value; a whole message adds each of its recipient domains, one spec each, in order: the
          // store observes them one after the other, so the last spec's count includes them all.
          const bool many = tag == 'd' && whole;
          if (many ? message_domains.empty() : signal_value(tag).empty()) continue;
          const auto same = [&](const signal_spec& x) {
            return x.tag == tag && x.window_s == lim.seconds && x.identity == identity;
          };
          auto it = std::find_if(p.req.signals.begin(), p.req.signals.end(), same);
          if (it == p.req.signals.end()) {
            const auto push = [&](const std::string& value) {
              signal_spec sig;
              sig.identity = identity;
              sig.tag = tag;
              sig.window_s = lim.seconds;
              sig.value = value;
              p.req.signals.push_back(std::move(sig));
            };
            if (many)
              for (const std::string& d : message_domains) push(d);
            else
              push(signal_value(tag));
            it = std::prev(p.req.signals.end());
          } else {
            it = std::find_if(p.req.signals.rbegin(), p.req.signals.rend(), same).base() - 1;
          }
          if (enforce && refuses(ru->act))
            for (signal_spec& x : p.req.signals)
              if (same(x) && (x.refuse_limit == 0 || lim.count < x.refuse_limit)) x.refuse_limit = lim.count;
          p.candidates.push_back(
              candidate{ru, &lim, kind, key_index, static_cast<std::size_t>(it - p.req.signals.begin()), 0});
          continue;
        }
        const char tag = unit_tag(lim.what);
        auto it = std::find_if(p.req.counters.begin(), p.req.counters.end(), [&](const counter_spec& c) {
          return c.unit_tag == tag && c.window_s == lim.seconds && c.identity == identity;
        });
        if (it == p.req.counters.end()) {
          p.req.counters.push_back(make_counter(identity, tag, lim.seconds, tag == 'r' ? rcpt_cost : 1));
          it = std::prev(p.req.counters.end());
        }
        if (lim.how == measure::burst) {
          // The baseline's cap is the lowest trip point of the burst rules on this counter.
          if (it->burst_factor == 0 || lim.factor() < it->burst_factor) it->burst_factor = lim.factor();
          if (it->burst_floor == 0 || lim.count < it->burst_floor) it->burst_floor = lim.count;
          if (enforce && refuses(ru->act)) {
            it->refuse_factor = std::max(it->refuse_factor, lim.factor());
            it->refuse_floor = std::max(it->refuse_floor, lim.count);
          }
        } else if (enforce && refuses(ru->act)) {
          // A limit of 0 refuses everything: read the counts without charging anything.
          if (lim.count == 0) p.req.charge = false;
          else if (it->refuse_limit == 0 || lim.count < it->refuse_limit) it->refuse_limit = lim.count;
        }
        p.candidates.push_back(
            candidate{ru, &lim, kind, key_index, static_cast<std::size_t>(it - p.req.counters.begin()), it->cost});
      }
    }
  };
  p.keys = match_request(snap, r);
  for (std::size_t k = 0; k < p.keys.size(); ++k) add(static_cast<std::uint8_t>(k));
  p.counters = p.req.counters.size();
  p.signals = p.req.signals.size();
  p.needs_store = p.counters > 0 || p.signals > 0;
  return p;
}

message_tracker::evaluation message_tracker::evaluate(const policy_snapshot& snap, const candidate& c,
                                                      const store_result& res) {
  evaluation e;
  e.threshold = c.limit->count;
  switch (c.limit->how) {
    case measure::count:
      e.applies = c.counter < res.counts.size();
      if (e.applies) e.count = res.counts[c.counter] + c.cost;
      break;
    case measure::burst: {
      if (c.counter >= res.baselines.size() || c.counter >= res.counts.size()) break;
      // A key without enough history is left to its other limits (a new login is not "bursting").
      const baseline_value& b = res.baselines[c.counter];
      e.count = res.counts[c.counter] + c.cost;
      e.baseline = b.average;
      e.applies = baseline_warm(b, c.limit->seconds, snap.settings.baseline_warmup.count());
      const double trip = std::max(c.limit->factor() * b.average, static_cast<double>(c.limit->count));
      e.threshold = trip >= 1e18 ? std::numeric_limits<std::uint64_t>::max() : static_cast<std::uint64_t>(trip);
      break;
    }
    case measure::client_ips:
    case measure::rcpt_domains:
      e.applies = c.counter < res.distinct.size();
      if (e.applies) e.count = res.distinct[c.counter];
      break;
    case measure::new_networks:
    case measure::new_domains: {
      if (c.counter >= res.novelty.size() || c.counter >= res.counts.size()) break;
      // Everything is new to a key without history: it is left to its other limits until it has learned.
      const novelty_value& nv = res.novelty[c.counter];
      e.added = nv.added;
      e.count = res.counts[c.counter] + nv.added;
      e.applies = novelty_warm(nv, snap.settings.baseline_warmup.count());
      break;
    }
  }
  return e;
}

verdict message_tracker::finish(const policy_snapshot& snap, const policy_request& r, prepared& p,
                                const store_result& res) {
  verdict v;
  v.reply = "DUNNO";
  if (!res.ok || res.counts.size() != p.counters || res.distinct.size() != p.signals ||
      (!res.baselines.empty() && res.baselines.size() != p.counters) ||
      (!res.novelty.empty() && res.novelty.size() != p.counters)) {
    v.store_failed = true;
    v.store_error = res.ok ? "store answered the wrong number of counts" : res.error;
    v.log = true;
    if (snap.settings.on_store_error == store_error_action::defer)
      v.reply = "451 4.3.0 Rate limit service temporarily unavailable, try again later";
    return v;
  }

  const candidate* worst = nullptr;
  std::uint64_t worst_count = 0, worst_threshold = 0;
  double worst_baseline = 0;
  for (const candidate& c : p.candidates) {
    const evaluation e = evaluate(snap, c, res);
    if (!e.exceeded()) continue;
    if (!worst || c.r->act > worst->r->act) {
      worst = &c;
      worst_count = e.count;
      worst_threshold = e.threshold;
      worst_baseline = e.baseline;
    }
  }
  // A locked key holds the message, unless a limit refuses it outright (defer and reject win).
  const lock_info* lock = res.locks.empty() ? nullptr : &res.locks.front();
  const bool locked = lock && (!worst || !refuses(worst->r->act));
  if (!worst && !locked) return v;

  v.log = true;
  if (worst) {
    v.hit = limit_hit{worst->r->act, worst->kind,    p.keys[worst->key].key, worst->r->where(), *worst->limit,
                      worst_count,   worst_threshold, worst_baseline};
    v.act = worst->r->act;
  }
  if (locked) {
    v.act = action::hold;
    v.lock = *lock;
    v.lock_key = key_of_identity(lock->identity);
  }
  if (snap.settings.mode == run_mode::dry_run) {
    v.dry_run = true;
    return v;
  }
  if (locked) {
    const std::string kind = v.lock_key.substr(0, v.lock_key.find(':'));
    v.reply = "HOLD rateguard: this " + kind + " is locked, message held for review";
  } else {
    v.reply = reply_for(*v.hit, worst->r->text);
  }
  const bool hold_tripped = v.hit && v.hit->act == action::hold;
  if (hold_tripped && snap.settings.lock_time.count() > 0) {
    const std::string id = counter_identity(v.hit->kind, v.hit->key);
    if (std::none_of(res.locks.begin(), res.locks.end(), [&](const lock_info& l) { return l.identity == id; }))
      v.set_lock_ms = snap.settings.lock_time.count();
  }
  // A refusal of a per-message limit refuses every RCPT of the message; one of a per-recipient limit (rcpt:,
  // rcpt_domains, new_domains) only this RCPT.
  const bool whole_message = v.act == action::hold || (refuses(v.act) && !per_recipient(v.hit->limit));
  if (whole_message) {
    message_verdict_ = v;
    message_verdict_->set_lock_ms = 0;  // later RCPTs of the message lock nothing again
    if (!r.get(attr::queue_id).empty()) queue_id_logged_ = true;
  }
  if (v.act == action::hold) {
    hold_record rec;
    rec.queue_id = r.get(attr::queue_id);
    rec.instance = instance_;
    if (locked) {
      rec.key = v.lock_key;
      rec.rule = hold_tripped ? v.hit->rule_where : std::string();
      rec.reason = "locked: " + lock->reason;
    } else {
      rec.key = key_name(v.hit->kind, v.hit->key);
      rec.rule = v.hit->rule_where;
      rec.reason = exceeded_text(*v.hit);
    }
    if (!r.script.empty()) rec.reason += " (X-PHP-Originating-Script: " + r.script + ")";  // a hint, cut with the field
    rec.client = r.get(attr::client_address);
    rec.sender = r.get(attr::sender);
    rec.recipients = rcpts_;
    held_ = std::move(rec);
    if (!r.recipients.empty()) finish_message();  // a whole message is over once decided
  }
  return v;
}

void message_tracker::note_request(const policy_request& r) {
  const std::string_view state = r.get(attr::protocol_state);
  if (!r.recipients.empty()) rcpts_ = static_cast<std::uint32_t>(std::min<std::size_t>(r.recipients.size(), UINT32_MAX));
  else if (state == "RCPT") ++rcpts_;
  if (!held_) return;
  if (const auto& q = r.get(attr::queue_id); !q.empty()) held_->queue_id = q;
  held_->recipients = rcpts_;
  // END-OF-MESSAGE knows how many recipients Postfix finally accepted.
  if (state == "END-OF-MESSAGE") {
    unsigned long n = 0;
    const std::string_view c = r.get(attr::recipient_count);
    const auto [ptr, ec] = std::from_chars(c.data(), c.data() + c.size(), n);
    if (ec == std::errc() && ptr == c.data() + c.size() && n > 0 && n <= std::numeric_limits<std::uint32_t>::max())
      held_->recipients = static_cast<std::uint32_t>(n);
  }
}

void message_tracker::finish_message() {
  if (!held_) return;
  finished_.push_back(std::move(*held_));
  held_.reset();
}

void message_tracker::end_connection() { finish_message(); }

std::vector<hold_record> message_tracker::take_finished() { return std::exchange(finished_, {}); }

}  // namespace rg
