// Decision log lines against golden files (tests/unit/golden/decision_*.in -> .ref). After a deliberate
// change: RG_UPDATE_GOLDEN=1 build/tests/unit_tests '[golden]' rewrites the .ref files; review git diff and
// copy a changed decision_log.ref into README (test_readme_examples.cpp checks it). Each .in is a list of
// cases separated by empty lines; a case builds a verdict and a request the way the engine fills them and is
// rendered by format_decision, or by format_lock for "line=lock":
//   log_format=text|json          the form of this and every later case
//   client_address=... sender=... any Postfix request attribute
//   action=defer|hold|warn|reject the rule's action; dry_run=yes makes it would-...
//   key=KIND:VALUE rule=FILE:LINE limit=200/1h count=201 [threshold=N] [baseline=X]   the limit that tripped
//   locked=KIND:VALUE lock_until=ISO [lock_reason=...]    the lock that holds the message
//   store_error=TEXT              the store failed (action store-error)
//   reply=TEXT                    instead of the reply the engine would derive
// Values may spell any byte as \xNN (and '\' as \\), for the hostile cases.
#include <catch2/catch.hpp>
#include <cstdio>
#include <ctime>
#include <optional>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "decision_log.hpp"
#include "engine.hpp"
#include "golden.hpp"
#include "rules.hpp"

namespace {

using rg::test::check_golden;
using rg::test::golden_inputs;
using rg::test::read_text;

std::string decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size() && s[i + 1] == '\\') {
      out += '\\';
      ++i;
    } else if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] == 'x') {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 2, 2)), nullptr, 16));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::int64_t iso_ms(const std::string& s) {
  std::tm tm{};
  REQUIRE(std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                      &tm.tm_hour, &tm.tm_min, &tm.tm_sec) == 6);
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<std::int64_t>(timegm(&tm)) * 1000;
}

rg::window_limit parse_one_limit(const std::string& spec) {
  // Through the limits file parser, so the spec is what a limits file accepts.
  auto res = rg::parse_limits("sasl_username * " + spec + " defer\n", "golden");
  INFO("limit=" << spec);
  REQUIRE(res.rules);
  REQUIRE(res.rules->rules().size() == 1);
  return res.rules->rules()[0].limits.at(0);
}

std::pair<rg::key_kind, std::string> parse_kind_value(const std::string& s) {
  const auto colon = s.find(':');
  REQUIRE(colon != std::string::npos);
  const auto kind = rg::key_kind_from_string(s.substr(0, colon));
  REQUIRE(kind);
  return {*kind, s.substr(colon + 1)};
}

// One case: its fields in the order written.
std::string render(const std::vector<std::pair<std::string, std::string>>& fields, rg::log_format f) {
  rg::verdict v;
  rg::policy_request r;
  std::optional<rg::limit_hit> hit;
  std::optional<std::string> reply, lock_reason, threshold;
  std::string line_kind = "decision", lock_until;
  for (const auto& [name, value] : fields) {
    INFO(name << "=" << value);
    if (auto a = rg::attr_from_name(name)) {
      r.set(*a, value);
    } else if (name == "recipients") {  // a whole message (milter front): its recipients, comma-separated
      for (std::size_t b = 0; b <= value.size();) {
        const std::size_t e = std::min(value.find(',', b), value.size());
        r.recipients.push_back(value.substr(b, e - b));
        b = e + 1;
      }
    } else if (name == "local_user") {
      r.local_user = value;
    } else if (name == "script") {
      r.script = value;
    } else if (name == "action") {
      auto act = rg::action_from_string(value);
      REQUIRE(act);
      v.act = *act;
    } else if (name == "dry_run") {
      v.dry_run = value == "yes";
    } else if (name == "store_error") {
      v.store_failed = true;
      v.store_error = value;
    } else if (name == "reply") {
      reply = value;
    } else if (name == "key") {
      if (!hit) hit.emplace();
      std::tie(hit->kind, hit->key) = parse_kind_value(value);
    } else if (name == "rule") {
      if (!hit) hit.emplace();
      hit->rule_where = value;
    } else if (name == "limit") {
      if (!hit) hit.emplace();
      hit->limit = parse_one_limit(value);
    } else if (name == "count") {
      if (!hit) hit.emplace();
      hit->count = std::stoull(value);
    } else if (name == "threshold") {
      threshold = value;
    } else if (name == "baseline") {
      if (!hit) hit.emplace();
      hit->baseline = std::stod(value);
    } else if (name == "locked") {
      v.lock_key = value;
    } else if (name == "lock_until") {
      lock_until = value;
    } else if (name == "lock_reason") {
      lock_reason = value;
    } else if (name == "line") {
      REQUIRE((value == "decision" || value == "lock"));
      line_kind = value;
    } else {
      FAIL("unknown field " << name);
    }
  }
  if (hit) {
    hit->act = v.act;
    hit->threshold = threshold ? std::stoull(*threshold) : hit->limit.count;
    v.hit = hit;
  }
  // The reply as message_tracker::finish derives it.
  if (reply)
    v.reply = *reply;
  else if (v.store_failed || v.dry_run || v.act == rg::action::none)
    v.reply = "DUNNO";
  else if (!v.lock_key.empty() && !rg::refuses(v.act))
    v.reply = "HOLD rateguard: this " + v.lock_key.substr(0, v.lock_key.find(':')) +
              " is locked, message held for review";
  else if (hit)
    v.reply = rg::reply_for(*hit, "");
  const std::string reason = lock_reason ? *lock_reason : hit ? rg::lock_reason(*hit) : std::string();
  if (line_kind == "lock") {
    REQUIRE(hit);
    return rg::format_lock(rg::key_name(hit->kind, hit->key), hit->rule_where, iso_ms(lock_until), reason, r,
                           f);
  }
  if (!v.lock_key.empty()) {
    rg::lock_info l;
    l.until_ms = iso_ms(lock_until);
    l.reason = reason;
    v.lock = l;
  }
  return rg::format_decision(v, r, f);
}

std::string render_file(const std::string& text) {
  std::string out;
  rg::log_format f = rg::log_format::text;
  std::vector<std::pair<std::string, std::string>> fields;
  auto flush = [&] {
    if (!fields.empty()) out += render(fields, f) + "\n";
    fields.clear();
  };
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) {
      flush();
      continue;
    }
    if (line[0] == '#') continue;
    const auto eq = line.find('=');
    INFO("line: " << line);
    REQUIRE(eq != std::string::npos);
    const std::string name = line.substr(0, eq), value = decode(std::string_view(line).substr(eq + 1));
    if (name == "log_format") {
      REQUIRE((value == "text" || value == "json"));
      f = value == "json" ? rg::log_format::json : rg::log_format::text;
    } else {
      fields.emplace_back(name, value);
    }
  }
  flush();
  return out;
}

}  // namespace

TEST_CASE("decision log lines match their golden files", "[golden][decision_log]") {
  const auto inputs = golden_inputs("decision_");
  REQUIRE_FALSE(inputs.empty());
  for (const auto& in : inputs) {
    DYNAMIC_SECTION(in.filename().string()) {
      auto ref = in;
      check_golden(ref.replace_extension(".ref"), render_file(read_text(in)));
    }
  }
}
