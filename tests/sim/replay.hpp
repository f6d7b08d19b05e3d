// Replays a population's messages against a running rateguardd in compressed real time, through a few
// persistent policy connections as smtpd processes hold them, and records what the daemon answered for
// each message. Knows the policy protocol as Postfix 3.7 speaks it; judges nothing (report.hpp does).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "population.hpp"

namespace rg::sim {

struct replay_options {
  std::string connect;          // unix:/path or inet:127.0.0.1:PORT
  double hour_ms = 1000;        // real milliseconds per simulated hour
  unsigned connections = 8;     // smtpd processes, each with one policy connection
  unsigned timeout_ms = 5000;   // a reply later than this is an error (the message is lost, reconnect)
  bool progress = true;         // one line on stderr per simulated day
};

// What the daemon answered for one message.
struct message_outcome {
  std::uint8_t accepted = 0;   // recipients accepted (DUNNO, WARN, HOLD, ...)
  std::uint8_t deferred = 0;   // recipients answered 4xx / DEFER*
  std::uint8_t rejected = 0;   // recipients answered 5xx / REJECT
  bool held = false;           // a HOLD at a RCPT or at END-OF-MESSAGE: the whole message is parked
  bool warned = false;
  bool eom_deferred = false;   // END-OF-MESSAGE answered 4xx: the message is not queued
  bool eom_rejected = false;   // END-OF-MESSAGE answered 5xx
  bool failed = false;         // no valid answer (timeout, connection lost): the replay is not valid
  float lag_ms = 0;            // how late its first request left, in real milliseconds
  std::string answers;         // every action word, RCPTs first: "DUNNO,HOLD|HOLD" ('|' before END-OF-MESSAGE)

  bool queued() const { return accepted > 0 && !eom_deferred && !eom_rejected && !failed; }
  bool leaked() const { return queued() && !held; }  // delivered onwards
  bool any_deferred() const { return deferred > 0 || eom_deferred; }
  bool any_rejected() const { return rejected > 0 || eom_rejected; }
  bool stopped() const { return held || any_deferred() || any_rejected(); }  // HOLD, defer or reject seen
};

struct replay_result {
  std::vector<message_outcome> outcomes;  // per population message, same order
  std::uint64_t requests = 0;             // requests answered
  std::uint64_t errors = 0;               // replies missing, late or malformed; connections lost
  std::map<std::string, std::uint64_t> actions;  // answers by action word ("DUNNO", "HOLD", "450", ...)
  double wall_s = 0;
};

// Runs to the end of the population (bounded: its simulated length plus the timeouts); throws
// std::invalid_argument for a bad endpoint.
replay_result replay(const population& p, const replay_options& o);

}  // namespace rg::sim
