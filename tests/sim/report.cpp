// Builds and prints the simulation report (see report.hpp). Text for people, JSON (Boost.JSON) for scripts.
#include "report.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <boost/json/src.hpp>  // header-only Boost.JSON: this is its one translation unit in rg_sim

namespace rg::sim {

namespace {

double percentile(const std::vector<float>& sorted, double q) {
  if (sorted.empty()) return 0;
  return sorted[static_cast<std::size_t>(q * static_cast<double>(sorted.size() - 1))];
}

std::string percent(std::uint64_t n, std::uint64_t of) {
  return of == 0 ? "-" : fmt::format("{:.3f}%", 100.0 * static_cast<double>(n) / static_cast<double>(of));
}

sender_peak peak_of(const population& p, std::uint32_t sender) {
  const double incident_day = p.options.warmup_days * day_s;
  sender_peak s;
  s.login = p.senders[sender].login.empty() ? p.senders[sender].address : p.senders[sender].login;
  s.daily = p.senders[sender].daily;
  s.ten_minutes = busiest(p, sender, 600, 0, p.end);
  s.warmup_hour = busiest(p, sender, hour_s, 0, incident_day);
  s.incident_day_hour = busiest(p, sender, hour_s, incident_day, p.end);
  s.day = busiest(p, sender, day_s, 0, p.end);
  s.addresses_hour = busiest_addresses(p, sender, hour_s);
  return s;
}

}  // namespace

std::vector<sender_peak> population_peaks(const population& p, std::size_t top) {
  std::vector<sender_peak> users, out;
  for (std::uint32_t i = 0; i < p.senders.size(); ++i) {
    switch (p.senders[i].cls) {
      case sender_class::user:
      case sender_class::mobile:
      case sender_class::traveller:
      case sender_class::growing: users.push_back(peak_of(p, i)); break;
      case sender_class::newsletter:
      case sender_class::local_app: out.push_back(peak_of(p, i)); break;
      case sender_class::php_script: break;
    }
  }
  auto busier = [](const sender_peak& a, const sender_peak& b) {
    return std::max(a.warmup_hour.messages, a.incident_day_hour.messages) >
           std::max(b.warmup_hour.messages, b.incident_day_hour.messages);
  };
  std::sort(users.begin(), users.end(), busier);
  users.resize(std::min(users.size(), top));
  users.insert(users.end(), out.begin(), out.end());
  return users;
}

bool report::asserted_met() const {
  if (!valid) return false;
  return std::all_of(targets.begin(), targets.end(), [](const target_result& t) { return !t.asserted || t.met; });
}

report make_report(const population& p, const replay_result& r, const report_options& o) {
  report rep;
  rep.options = o;
  rep.model = p.options;
  rep.messages = p.messages.size();
  rep.peaks = population_peaks(p, 5);
  for (const auto& s : p.senders) {
    rep.class_logins[0] += s.cls == sender_class::mobile;
    rep.class_logins[1] += s.cls == sender_class::traveller;
    rep.class_logins[2] += s.cls == sender_class::growing;
  }

  // Replay quality: every message answered, and sent close to its due time. A late message may fall in
  // another window than the model meant; lateness comes from stalls of the whole box (other work on its
  // cores), which delay every connection alike. A p99 within 1/6 of the shortest window (1 simulated
  // hour) keeps the replay a fair sample of the model; beyond that the report says INVALID.
  std::vector<float> lags;
  for (const auto& out : r.outcomes) {
    if (out.failed) ++rep.failed_messages;
    else lags.push_back(out.lag_ms);
  }
  std::sort(lags.begin(), lags.end());
  rep.requests = r.requests;
  rep.errors = r.errors;
  rep.wall_s = r.wall_s;
  rep.lag_p50_ms = percentile(lags, 0.5);
  rep.lag_p99_ms = percentile(lags, 0.99);
  rep.lag_max_ms = lags.empty() ? 0 : lags.back();
  rep.valid = r.errors == 0 && rep.failed_messages == 0 && rep.lag_p99_ms <= o.hour_ms / 6;
  rep.actions.assign(r.actions.begin(), r.actions.end());

  // Incidents, in time order of their messages.
  for (std::size_t k = 0; k < p.incidents.size(); ++k) {
    incident_stats s;
    s.info = p.incidents[k];
    double first_t = -1;
    for (std::size_t i = 0; i < p.messages.size(); ++i) {
      const sim_message& m = p.messages[i];
      const message_outcome& out = r.outcomes[i];
      if (m.incident != static_cast<std::int16_t>(k)) continue;
      if (m.owner_mail) {
        ++s.owner_messages;
        s.owner_held += out.held;
        s.owner_deferred += out.any_deferred();
        continue;
      }
      ++s.sent;
      s.recipients += m.rcpts.size();
      if (first_t < 0) first_t = m.t;
      if (!s.contained && out.stopped()) {
        s.contained = true;
        s.contained_at = s.sent;
        s.minutes = (m.t - first_t) / 60;
      }
      if (out.leaked()) {
        // The message that was stopped first may still have leaked to some recipients (a recipient limit):
        // it counts as after containment.
        if (s.contained) ++s.leaked_after;
        else ++s.leaked_before;
        s.recipients_leaked += out.accepted;
      }
      s.held += out.held;
      s.deferred += out.any_deferred();
      s.rejected += out.any_rejected();
    }
    rep.incidents.push_back(s);
  }

  // Legitimate mail per sender class, the classes of issue 4 (users, newsletter, local-app: what the
  // targets of issue 4 were judged on) and the total over every class.
  const std::vector<sender_class> order = {sender_class::user,      sender_class::mobile,     sender_class::traveller,
                                           sender_class::growing,   sender_class::newsletter, sender_class::local_app};
  std::vector<class_stats> classes;
  for (auto c : order) classes.push_back({to_string(c)});
  class_stats issue4{"issue-4 classes"}, total{"total"};
  for (std::size_t i = 0; i < p.messages.size(); ++i) {
    const sim_message& m = p.messages[i];
    if (m.incident >= 0) continue;
    const message_outcome& out = r.outcomes[i];
    const auto cls = p.senders[m.sender].cls;
    const auto at = static_cast<std::size_t>(std::find(order.begin(), order.end(), cls) - order.begin());
    if (at == order.size()) continue;  // php_script: never legitimate
    class_stats& c = classes[at];
    const bool of_issue4 = cls == sender_class::user || cls == sender_class::newsletter || cls == sender_class::local_app;
    for (class_stats* s : {&c, of_issue4 ? &issue4 : nullptr, &total}) {
      if (s == nullptr) continue;
      ++s->messages;
      s->recipients += m.rcpts.size();
      s->held += out.held;
      s->deferred += out.any_deferred();
      s->rejected += out.any_rejected();
      s->warned += out.warned;
      s->recipients_deferred += out.deferred;
    }
  }
  rep.legit = classes;
  rep.legit.push_back(issue4);
  rep.legit.push_back(total);
  const unsigned days = p.options.warmup_days + 1;
  rep.legit_per_day = total.messages / days;

  auto asserted = [&](const std::string& id) { return o.asserted.count(id) > 0 || o.asserted.count("all") > 0; };
  for (const auto& s : rep.incidents) {
    target_result t;
    t.id = "incident-" + s.info.id;
    t.text = fmt::format("incident {} ({}) contained within its first {} messages", s.info.id, s.info.name,
                         target_contained_within);
    t.met = s.contained && s.contained_at <= target_contained_within;
    // A deferral throttles rather than stops: the messages leaked after it say whether it contained anything.
    t.measured = s.contained ? fmt::format("contained at message {} after {:.1f} simulated min", s.contained_at, s.minutes)
                             : fmt::format("not contained: {} of {} messages leaked", s.leaked_before, s.sent);
    if (s.contained && s.leaked_after > 0) t.measured += fmt::format(", yet {} leaked after", s.leaked_after);
    t.asserted = asserted(t.id);
    rep.targets.push_back(t);
  }
  // The legitimate targets twice: on the classes of issue 4 (legit-*: what main met before issue 12) and on
  // every legitimate class (all-legit-*: issue 12), with the classes that missed named.
  auto by_class = [&](auto field) {
    std::string s;
    for (const auto& c : classes)
      if (c.*field > 0) s += fmt::format("{}{} {}", s.empty() ? "" : ", ", c.name, c.*field);
    return s.empty() ? std::string() : " (" + s + ")";
  };
  auto targets_of = [&](const class_stats& c, const std::string& prefix, const std::string& scope) {
    rep.targets.push_back({prefix + "held", fmt::format("zero legitimate messages held{}", scope),
                           fmt::format("{} held", c.held), c.held == 0, asserted(prefix + "held")});
    rep.targets.push_back(
        {prefix + "deferred", fmt::format("legitimate deferrals under {}%{}", target_legit_deferred * 100, scope),
         fmt::format("{} of {} deferred ({})", c.deferred, c.messages, percent(c.deferred, c.messages)),
         static_cast<double>(c.deferred) < target_legit_deferred * static_cast<double>(c.messages),
         asserted(prefix + "deferred")});
  };
  targets_of(issue4, "legit-", " (issue 4's classes)");
  targets_of(total, "all-legit-", " (every class)");
  rep.targets[rep.targets.size() - 2].measured += by_class(&class_stats::held);
  rep.targets.back().measured += by_class(&class_stats::deferred);
  return rep;
}

std::string peaks_text(const population& p, const std::vector<sender_peak>& peaks) {
  std::string s = fmt::format(
      "busiest legitimate senders (exact sliding windows of simulated time; msgs/rcpts):\n"
      "  {:<26} {:>7} {:>10} {:>19} {:>19} {:>13} {:>7}\n",
      "sender", "mean/d", "10m", "1h warm-up days", "1h incident day", "24h", "ips/1h");
  for (const auto& k : peaks)
    s += fmt::format("  {:<26} {:>7.0f} {:>10} {:>19} {:>19} {:>13} {:>7}\n", k.login, k.daily,
                     fmt::format("{}/{}", k.ten_minutes.messages, k.ten_minutes.recipients),
                     fmt::format("{}/{}", k.warmup_hour.messages, k.warmup_hour.recipients),
                     fmt::format("{}/{}", k.incident_day_hour.messages, k.incident_day_hour.recipients),
                     fmt::format("{}/{}", k.day.messages, k.day.recipients), k.addresses_hour);
  // What client_ips:N/1h sees of each class of logins: how many of them ever used more than N addresses
  // (IPv6 per /64) within an hour.
  s += "  logins by class, with the most client addresses they used within 1 h:\n";
  for (auto cls : {sender_class::user, sender_class::mobile, sender_class::traveller, sender_class::growing}) {
    std::array<unsigned, 8> over{};  // over[n]: logins with more than n addresses in some hour (n = 2..7)
    unsigned logins = 0, most = 0;
    for (std::uint32_t i = 0; i < p.senders.size(); ++i) {
      if (p.senders[i].cls != cls) continue;
      ++logins;
      const auto n = busiest_addresses(p, i, hour_s);
      most = std::max(most, n);
      for (unsigned k = 2; k < over.size(); ++k) over[k] += n > k;
    }
    s += fmt::format("    {:<11} {:>4} logins; more than 2: {}, 3: {}, 4: {}, 5: {}, 6: {}; most {}\n", to_string(cls),
                     logins, over[2], over[3], over[4], over[5], over[6], most);
  }
  std::uint64_t legit = 0;
  for (const auto& m : p.messages) legit += m.incident < 0;
  s += fmt::format("  {} messages in all, {} legitimate ({} per day); incident day starts at simulated hour {}\n",
                   p.messages.size(), legit, legit / (p.options.warmup_days + 1), p.options.warmup_days * 24);
  return s;
}

std::string to_text(const report& r) {
  std::string s;
  const auto& m = r.model;
  s += fmt::format("rateguard replay simulation: {}\n", r.options.label);
  s += fmt::format(
      "  seed {}, {} users ({} mobile, {} travellers, {} growing) + newsletter + local app, {} warm-up days + "
      "incident day; 1 simulated hour = {} ms, {} policy connections\n",
      m.seed, m.users, r.class_logins[0], r.class_logins[1], r.class_logins[2], m.warmup_days, r.options.hour_ms,
      r.options.connections);
  for (const auto& n : r.options.notes) s += fmt::format("  {}\n", n);
  s += fmt::format("  replay: {} requests, {} errors, {} messages unanswered, {:.1f} s; lag p50 {:.1f} ms, p99 {:.1f} ms, "
                   "max {:.1f} ms ({:.1f} simulated min){}\n",
                   r.requests, r.errors, r.failed_messages, r.wall_s, r.lag_p50_ms, r.lag_p99_ms, r.lag_max_ms,
                   r.lag_max_ms / r.options.hour_ms * 60, r.valid ? "" : "  INVALID REPLAY");
  s += "  answers:";
  for (const auto& [a, n] : r.actions) s += fmt::format(" {}={}", a, n);
  s += "\n\n";

  s += fmt::format("  {:<34} {:>6} {:>8} {:>10} {:>8} {:>8} {:>6} {:>6} {:>6}\n", "incident", "sent", "leaked",
                   "contained", "minutes", "leaked", "held", "defer", "reject");
  s += fmt::format("  {:<34} {:>6} {:>8} {:>10} {:>8} {:>8}\n", "", "", "before", "at msg", "", "after");
  for (const auto& i : r.incidents) {
    s += fmt::format("  {:<34} {:>6} {:>8} {:>10} {:>8} {:>8} {:>6} {:>6} {:>6}\n", i.info.id + " " + i.info.name,
                     i.sent, i.leaked_before, i.contained ? std::to_string(i.contained_at) : "never",
                     i.contained ? fmt::format("{:.1f}", i.minutes) : "-", i.leaked_after, i.held, i.deferred,
                     i.rejected);
  }
  for (const auto& i : r.incidents) {
    s += fmt::format("    {}: {}; {} recipients leaked of {}\n", i.info.id, i.info.description, i.recipients_leaked,
                     i.recipients);
    if (i.owner_messages > 0)
      s += fmt::format("    {}: the owner's own mail after the compromise: {} messages, {} held, {} deferred "
                       "(not counted as legitimate)\n",
                       i.info.id, i.owner_messages, i.owner_held, i.owner_deferred);
  }
  s += "\n";
  s += fmt::format("  {:<34} {:>8} {:>6} {:>8} {:>9} {:>7} {:>6}\n", "legitimate", "messages", "held", "deferred",
                   "(%)", "reject", "warn");
  for (const auto& c : r.legit)
    s += fmt::format("  {:<34} {:>8} {:>6} {:>8} {:>9} {:>7} {:>6}\n", c.name, c.messages, c.held, c.deferred,
                     percent(c.deferred, c.messages), c.rejected, c.warned);
  s += "\n  targets:\n";
  for (const auto& t : r.targets)
    s += fmt::format("  {}  {:<62} {}{}\n", t.met ? "PASS" : "FAIL", t.text, t.measured,
                     t.asserted ? "" : "  [not asserted]");
  if (!r.valid)
    s += "  INVALID REPLAY: requests went unanswered or left too late; these figures do not judge the rules\n";
  return s;
}

void write_answers(std::ostream& out, const population& p, const replay_result& r) {
  out << "t_sim_s\tlabel\tclass\tlogin\tsender\tclient\trecipients\tanswers\n";
  for (std::size_t i = 0; i < p.messages.size(); ++i) {
    const sim_message& m = p.messages[i];
    const sender_profile& s = p.senders[m.sender];
    std::string label = m.incident < 0 ? "legitimate" : p.incidents[static_cast<std::size_t>(m.incident)].id;
    if (m.owner_mail) label += "-owner";
    out << fmt::format("{:.1f}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n", m.t, label, to_string(s.cls), s.login, s.address,
                       m.client, m.rcpts.size(), r.outcomes[i].failed ? "-" : r.outcomes[i].answers);
  }
}

std::string to_json(const report& r) {
  namespace json = boost::json;
  json::object o;
  o["label"] = r.options.label;
  json::array notes;
  for (const auto& n : r.options.notes) notes.push_back(json::value(n));
  o["notes"] = std::move(notes);
  o["model"] = {{"seed", r.model.seed},
                {"users", r.model.users},
                {"warmup_days", r.model.warmup_days},
                {"hour_ms", r.options.hour_ms},
                {"connections", r.options.connections}};
  json::object replay{{"requests", r.requests},   {"errors", r.errors},         {"unanswered", r.failed_messages},
                      {"wall_s", r.wall_s},       {"lag_p50_ms", r.lag_p50_ms}, {"lag_p99_ms", r.lag_p99_ms},
                      {"lag_max_ms", r.lag_max_ms}, {"valid", r.valid}};
  json::object actions;
  for (const auto& [a, n] : r.actions) actions[a] = n;
  replay["answers"] = std::move(actions);
  o["replay"] = std::move(replay);
  json::array peaks;
  for (const auto& k : r.peaks)
    peaks.push_back({{"sender", k.login},
                     {"daily", k.daily},
                     {"peak_10m", {{"messages", k.ten_minutes.messages}, {"recipients", k.ten_minutes.recipients}}},
                     {"peak_1h_warmup", {{"messages", k.warmup_hour.messages}, {"recipients", k.warmup_hour.recipients}}},
                     {"peak_1h_incident_day",
                      {{"messages", k.incident_day_hour.messages}, {"recipients", k.incident_day_hour.recipients}}},
                     {"peak_24h", {{"messages", k.day.messages}, {"recipients", k.day.recipients}}}});
  o["peaks"] = std::move(peaks);
  json::array incidents;
  for (const auto& i : r.incidents) {
    json::object x{{"id", i.info.id},
                   {"name", i.info.name},
                   {"description", i.info.description},
                   {"sent", i.sent},
                   {"recipients", i.recipients},
                   {"contained", i.contained},
                   {"leaked_before_containment", i.leaked_before},
                   {"leaked_after_containment", i.leaked_after},
                   {"recipients_leaked", i.recipients_leaked},
                   {"held", i.held},
                   {"deferred", i.deferred},
                   {"rejected", i.rejected},
                   {"owner_messages", i.owner_messages},
                   {"owner_held", i.owner_held},
                   {"owner_deferred", i.owner_deferred}};
    if (i.contained) {
      x["contained_at_message"] = i.contained_at;
      x["minutes_to_containment"] = i.minutes;
    } else {
      x["contained_at_message"] = nullptr;
      x["minutes_to_containment"] = nullptr;
    }
    incidents.push_back(std::move(x));
  }
  o["incidents"] = std::move(incidents);
  json::object legit;
  for (const auto& c : r.legit)
    legit[c.name] = {{"messages", c.messages},   {"recipients", c.recipients}, {"held", c.held},
                     {"deferred", c.deferred},   {"rejected", c.rejected},     {"warned", c.warned},
                     {"recipients_deferred", c.recipients_deferred}};
  o["legitimate"] = std::move(legit);
  json::array targets;
  for (const auto& t : r.targets)
    targets.push_back({{"id", t.id}, {"target", t.text}, {"measured", t.measured}, {"met", t.met},
                       {"asserted", t.asserted}});
  o["targets"] = std::move(targets);
  o["asserted_met"] = r.asserted_met();
  return json::serialize(o) + "\n";
}

}  // namespace rg::sim
