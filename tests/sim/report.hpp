// The simulation's verdict: from the population's ground truth and the daemon's answers, per incident the
// messages leaked before and after containment and the time to containment, for legitimate mail what was
// held, deferred or rejected, and PASS/FAIL per target. Printed as text or JSON; no sockets here.
#pragma once

#include <cstdint>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "population.hpp"
#include "replay.hpp"

namespace rg::sim {

// The targets of issue 4 item 6 (issue 12 applies them to its new classes and incidents too).
inline constexpr std::uint64_t target_contained_within = 50;  // messages of an incident
inline constexpr double target_legit_deferred = 0.001;          // share of legitimate messages

struct report_options {
  std::string label;          // e.g. "store=memory limits=tests/sim/limits.conf"
  double hour_ms = 1000;
  unsigned connections = 0;
  std::set<std::string> asserted;  // target ids the caller asserts (exit status); the others are reported only
  std::vector<std::string> notes;  // lines for the header (run.sh: how the limits were scaled)
};

struct sender_peak {
  std::string login;
  double daily = 0;
  peak ten_minutes;                           // busiest 10 min, all days
  peak warmup_hour, incident_day_hour, day;  // busiest 1 h (warm-up days, incident day) and 24 h
  std::uint32_t addresses_hour = 0;          // most distinct client addresses (IPv6 per /64) in 1 h
};

struct incident_stats {
  incident_info info;
  std::uint64_t sent = 0, recipients = 0;
  bool contained = false;
  std::uint64_t contained_at = 0;  // 1-based position, in time order, of the first message stopped
  double minutes = 0;              // simulated minutes from the incident's first message to that one
  std::uint64_t leaked_before = 0, leaked_after = 0, recipients_leaked = 0;
  std::uint64_t held = 0, deferred = 0, rejected = 0;
  // The owner's own mail after the compromise (incident A): messages, held, deferred.
  std::uint64_t owner_messages = 0, owner_held = 0, owner_deferred = 0;
};

struct class_stats {
  std::string name;
  std::uint64_t messages = 0, recipients = 0, held = 0, deferred = 0, rejected = 0, warned = 0;
  std::uint64_t recipients_deferred = 0;
};

struct target_result {
  std::string id;    // "incident-A", "legit-held", ...
  std::string text;  // what is required
  std::string measured;
  bool met = false;
  bool asserted = false;
};

struct report {
  report_options options;
  model_options model;
  std::uint64_t messages = 0, legit_per_day = 0;
  std::vector<sender_peak> peaks;  // the heaviest ordinary logins, the newsletter, the local application
  // Replay quality.
  std::uint64_t requests = 0, errors = 0, failed_messages = 0;
  double wall_s = 0, lag_p50_ms = 0, lag_p99_ms = 0, lag_max_ms = 0;
  bool valid = false;  // every message answered, p99 lag within 10 simulated minutes
  std::vector<std::pair<std::string, std::uint64_t>> actions;
  std::vector<incident_stats> incidents;
  std::uint64_t class_logins[3] = {};  // logins: mobile, travellers, growing
  std::vector<class_stats> legit;  // per sender class, then "issue-4 classes" and "total"
  std::vector<target_result> targets;

  bool asserted_met() const;
};

report make_report(const population& p, const replay_result& r, const report_options& o);
// The population's peaks alone (rg_sim --stats: what an admin reads from the logs before writing rules).
std::vector<sender_peak> population_peaks(const population& p, std::size_t top);
std::string to_text(const report& r);
std::string to_json(const report& r);
std::string peaks_text(const population& p, const std::vector<sender_peak>& peaks);
// One line per message, tab-separated: simulated seconds, label (legitimate | incident id | id-owner),
// sender class, login, sender, client, recipients, the daemon's answers (replay.hpp message_outcome).
void write_answers(std::ostream& out, const population& p, const replay_result& r);

}  // namespace rg::sim
