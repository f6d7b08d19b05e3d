// Decision line formatting (text and JSON) with escaping of everything that came from the request.
#include "decision_log.hpp"

#include <cstdio>
#include <ctime>

#include "values.hpp"

namespace rg {

namespace {

void append_hex(std::string& out, unsigned char c, const char* prefix) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%s%02x", prefix, c);
  out += buf;
}

}  // namespace

std::string json_quote(std::string_view s, std::size_t max) {
  std::string out = "\"";
  const bool cut = s.size() > max;
  if (cut) s = s.substr(0, max);
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      append_hex(out, c, "\\u00");  // bytes >= 0x80 as Latin-1: always valid JSON, never lossy for ASCII
    } else {
      out += static_cast<char>(c);
    }
  }
  if (cut) out += "...";
  out += '"';
  return out;
}

namespace {

std::string_view action_word(const verdict& v) {
  if (v.store_failed) return "store-error";
  if (!v.dry_run) return to_string(v.act);
  switch (v.act) {
    case action::warn: return "would-warn";
    case action::hold: return "would-hold";
    case action::defer: return "would-defer";
    case action::reject: return "would-reject";
    case action::none: break;
  }
  return "none";
}

}  // namespace

std::string escape_log_value(std::string_view s, std::size_t max) {
  std::string out;
  const bool cut = s.size() > max;
  if (cut) s = s.substr(0, max);
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f || c == '\\' || c == '"') append_hex(out, c, "\\x");
    else out += static_cast<char>(c);
  }
  if (cut) out += "...";
  return out;
}

namespace {
// What the count counts: messages / recipients, or the signal's name.
std::string unit_word(const window_limit& l) {
  return counts_values(l.how) ? std::string(to_string(l.how)) : std::string(to_string(l.what));
}
std::string baseline_text(double b) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", b);
  return buf;
}
}  // namespace

std::string format_decision(const verdict& v, const policy_request& r, log_format f) {
  const std::string_view qid = r.get(attr::queue_id);
  const std::string window = v.hit ? format_duration(std::chrono::seconds(v.hit->limit.seconds)) : std::string();
  if (f == log_format::json) {
    std::string o = "{\"queue_id\":" + json_quote(qid.empty() ? "NOQUEUE" : qid) +
                    ",\"action\":" + json_quote(action_word(v)) + ",\"reply\":" + json_quote(v.reply);
    if (v.store_failed) o += ",\"error\":" + json_quote(v.store_error);
    if (v.hit) {
      o += ",\"key_kind\":" + json_quote(to_string(v.hit->kind)) + ",\"key\":" + json_quote(v.hit->key) +
           ",\"rule\":" + json_quote(v.hit->rule_where) + ",\"window\":" + json_quote(window) +
           ",\"count\":" + std::to_string(v.hit->count) + ",\"limit\":" + std::to_string(v.hit->threshold) +
           ",\"unit\":" + json_quote(unit_word(v.hit->limit));
      if (v.hit->limit.how == measure::burst)
        o += ",\"baseline\":" + baseline_text(v.hit->baseline) + ",\"burst\":" + json_quote(to_string(v.hit->limit));
    }
    if (v.lock)
      o += ",\"locked_key\":" + json_quote(v.lock_key) + ",\"lock_until\":" + json_quote(iso_time(v.lock->until_ms)) +
           ",\"lock_reason\":" + json_quote(v.lock->reason);
    o += ",\"client\":" + json_quote(r.get(attr::client_address)) +
         ",\"sasl_username\":" + json_quote(r.get(attr::sasl_username)) +
         ",\"sender\":" + json_quote(r.get(attr::sender)) + ",\"recipient\":" + json_quote(r.get(attr::recipient)) +
         ",\"instance\":" + json_quote(r.get(attr::instance));
    if (!r.recipients.empty()) o += ",\"recipients\":" + std::to_string(r.recipients.size());
    if (!r.local_user.empty()) o += ",\"local_user\":" + json_quote(r.local_user);
    if (!r.script.empty()) o += ",\"script\":" + json_quote(r.script);
    return o + "}";
  }
  std::string o = qid.empty() ? std::string("NOQUEUE") : escape_log_value(qid, 64);
  o += ": ";
  o += action_word(v);
  o += ":";
  if (v.store_failed) {
    o += " error=\"" + escape_log_value(v.store_error) + "\" reply=\"" + v.reply + "\"";
  }
  if (v.hit) {
    o += " key=";
    o += to_string(v.hit->kind);
    o += ':' + escape_log_value(v.hit->key);
    o += " rule=" + escape_log_value(v.hit->rule_where) + " window=" + window +
         " count=" + std::to_string(v.hit->count) + " limit=" + std::to_string(v.hit->threshold) +
         " unit=" + unit_word(v.hit->limit);
    if (v.hit->limit.how == measure::burst)
      o += " baseline=" + baseline_text(v.hit->baseline) + " burst=" + to_string(v.hit->limit);
  }
  if (v.lock)
    o += " locked=" + escape_log_value(v.lock_key) + " lock_until=" + iso_time(v.lock->until_ms) +
         " lock_reason=\"" + escape_log_value(v.lock->reason) + "\"";
  o += " client=" + escape_log_value(r.get(attr::client_address)) +
       " sasl_username=" + escape_log_value(r.get(attr::sasl_username)) +
       " sender=<" + escape_log_value(r.get(attr::sender)) + ">" +
       " recipient=<" + escape_log_value(r.get(attr::recipient)) + ">" +
       " instance=" + escape_log_value(r.get(attr::instance), 64);
  // A whole message (the milter front): how many recipients it has, who submitted it, the script it names.
  if (!r.recipients.empty()) o += " recipients=" + std::to_string(r.recipients.size());
  if (!r.local_user.empty()) o += " local_user=" + escape_log_value(r.local_user, 64);
  if (!r.script.empty()) o += " script=\"" + escape_log_value(r.script, 200) + "\"";
  return o;
}

std::string format_lock(const std::string& key, const std::string& rule, std::int64_t until_ms,
                        const std::string& reason, const policy_request& r, log_format f) {
  const std::string_view qid = r.get(attr::queue_id);
  if (f == log_format::json)
    return "{\"queue_id\":" + json_quote(qid.empty() ? "NOQUEUE" : qid) + ",\"action\":\"lock\",\"key\":" +
           json_quote(key) + ",\"rule\":" + json_quote(rule) + ",\"until\":" + json_quote(iso_time(until_ms)) +
           ",\"reason\":" + json_quote(reason) + ",\"client\":" + json_quote(r.get(attr::client_address)) +
           ",\"sasl_username\":" + json_quote(r.get(attr::sasl_username)) +
           ",\"sender\":" + json_quote(r.get(attr::sender)) + ",\"instance\":" + json_quote(r.get(attr::instance)) +
           "}";
  return (qid.empty() ? std::string("NOQUEUE") : escape_log_value(qid, 64)) + ": lock: key=" + escape_log_value(key) +
         " rule=" + escape_log_value(rule) + " until=" + iso_time(until_ms) + " reason=\"" +
         escape_log_value(reason) + "\" client=" + escape_log_value(r.get(attr::client_address)) +
         " sasl_username=" + escape_log_value(r.get(attr::sasl_username)) + " sender=<" +
         escape_log_value(r.get(attr::sender)) + "> instance=" + escape_log_value(r.get(attr::instance), 64);
}

std::string iso_time(std::int64_t ms) {
  const std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace rg
