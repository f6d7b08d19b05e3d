// The operator commands over Redis (status, lock, release, reset, top, the hold journal): which Redis
// commands each one sends and how each reply is taken into its admin_result, including the paging of top
// (SCAN, then the read script over batches of keys) and of the journal (XREVRANGE pages). No sockets,
// deadlines or handlers: redis_store puts the commands on the wire in order and hands the replies back in the
// same order.
#pragma once

#include <hiredis/hiredis.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "redis_script.hpp"
#include "store.hpp"

namespace rg {

// One Redis command of an operator command. Kept whole until its reply, so a NOSCRIPT can be answered by
// sending the same call with EVAL.
struct admin_cmd {
  enum step_kind : std::uint8_t { once, scan, counts, page } step = once;  // what the reply answers
  std::size_t script = script_count;  // a script index, or script_count: a plain command
  std::vector<std::string> args;      // after "EVALSHA sha" for a script, else the whole command
  bool eval_sent = false;
};

// Where the store's data lives: the key prefix ("rg:") and the journal's caps.
struct admin_keys {
  std::string prefix;
  journal_caps journal;
  std::string key_of(std::string_view identity) const;  // "rg:{u:alice}"
};

// One operator command in progress.
struct admin_state {
  explicit admin_state(admin_request r) : req(std::move(r)) {}
  admin_request req;
  admin_result result;
  // top: keys examined so far; the scan is over (cursor 0 or top_scan_max); identities with a count > 0
  std::size_t examined = 0;
  bool scan_done = false;
  std::vector<std::tuple<std::uint64_t, std::string, std::optional<lock_info>>>
      hits;  // (count, identity, lock)
};

// The commands that start `s`.
std::vector<admin_cmd> admin_first(const admin_state& s, const admin_keys& k);
// Takes the reply to `cmd` into s.result and appends the commands to send next to `next`; false when the
// reply is malformed.
bool admin_take(admin_state& s, const admin_cmd& cmd, const redisReply& reply, const admin_keys& k,
                std::vector<admin_cmd>& next);
// Every reply is in: completes the result (top: the highest counts, ties by identity, each key once).
void admin_finish(admin_state& s);

}  // namespace rg
