// The decision engine: request + rules + the connection's current message -> which counters to check,
// then counts -> the decision (DUNNO, WARN, HOLD, defer, reject). No sockets, no clock, no store of its
// own: the caller runs the store request in between, so tests drive it synchronously with a fake clock.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "modes.hpp"
#include "protocol.hpp"
#include "rules.hpp"
#include "store_types.hpp"

namespace rg {

// The initializers are the settings' defaults (daemon_config takes them from here), but for lock_time: an
// engine given no lock time locks nothing, while the daemon's lock_time defaults to 24h (daemon_config).
struct engine_settings {
  run_mode mode = run_mode::enforce;
  unsigned ipv6_prefix = 64;
  store_error_action on_store_error = store_error_action::dunno;
  std::chrono::milliseconds lock_time{0};  // a tripped hold rule locks its key this long; 0: no lock
  // Burst rules: the baseline's half-life, and how much history a baseline needs before they apply.
  std::chrono::milliseconds baseline_half_life{default_baseline_half_life};
  std::chrono::milliseconds baseline_warmup{std::chrono::hours(24)};
  // Novelty rules (new_networks, new_domains): how long a value stays familiar to a key after its last use (at
  // least this, at most twice), and what a client network is: the address's first N bits.
  std::chrono::milliseconds familiar_time{default_familiar_time};
  unsigned network_ipv4_prefix = 16;
  unsigned network_ipv6_prefix = 32;
};

// What the daemon decides with: swapped as a whole on SIGHUP; a request finishes on the one it began with.
struct policy_snapshot {
  rule_set rules;
  engine_settings settings;
  // For the "silent non-match" warning: the first sasl_username rule naming a user without a realm
  // ("alice") and the first naming one with a realm ("alice@example.com", "@example.com"); empty if none.
  std::string sasl_rule_without_realm, sasl_rule_with_realm;
};
policy_snapshot make_snapshot(rule_set rules, engine_settings settings);

// A warning when what Postfix sends as sasl_username cannot match how the rules name users (Postfix adds
// the realm when smtpd_sasl_local_domain is set); empty when they agree.
std::string realm_mismatch(const policy_snapshot& snap, std::string_view sasl_username);

// The limit that decided a request (copied out of the rules, so it outlives a reload).
struct limit_hit {
  action act = action::none;
  key_kind kind = key_kind::sasl_username;
  std::string key;          // the value counted, e.g. "alice" or "2001:db8:1:2::/64"
  std::string rule_where;   // "limits.conf:7"
  window_limit limit;
  std::uint64_t count = 0;      // the count including this request (so count > threshold)
  std::uint64_t threshold = 0;  // what was exceeded: limit.count, or for burst max(K x baseline, floor)
  double baseline = 0;          // burst: the key's baseline per window
};

struct verdict {
  action act = action::none;  // what the rules decided (also in dry-run, where the reply is DUNNO)
  std::string reply;          // the text after "action=" sent to Postfix
  std::optional<limit_hit> hit;
  // The lock that holds this message (when no more severe limit refuses it), and its key
  // ("sasl_username:alice"); the first of the request's locked identities.
  std::optional<lock_info> lock;
  std::string lock_key;
  // > 0: a hold rule tripped in enforce mode and its key is not locked yet: the caller locks
  // counter_identity(hit->kind, hit->key) for this long, with lock_reason(*hit).
  std::int64_t set_lock_ms = 0;
  bool dry_run = false;
  bool store_failed = false;
  std::string store_error;
  bool repeated = false;       // a later RCPT of a message already decided at its first RCPT
  bool log = false;            // worth a decision log line
};

// One key kind of a request: the value compared with the selectors, the value counted, the winning lines.
struct key_match {
  key_kind kind;
  std::string key;       // what is counted ("2001:db8::/64")
  std::string compared;  // what the selectors saw when it differs from key ("2001:db8::5"); usually empty
  const std::vector<const rule*>* rules = nullptr;  // the winning selector's lines; null: none matched
  std::string_view seen() const { return compared.empty() ? std::string_view(key) : std::string_view(compared); }
};

// Per-connection memory of the message in progress (Postfix sends one message's requests on one connection,
// all with the same `instance`; a new instance means the previous message is done).
class message_tracker {
 public:
  // One (rule, limit) pair that applies to the request, and the store counter that counts it.
  struct candidate {
    const rule* r;                  // valid while the caller holds the snapshot
    const window_limit* limit;
    key_kind kind;
    std::uint8_t key;     // index into prepared::keys: the value counted
    std::size_t counter;  // index into req.counters, or into req.signals for client_ips / rcpt_domains
    std::uint32_t cost;   // what the request adds to that counter
  };
  struct prepared {
    bool needs_store = false;
    verdict immediate;  // the answer when no store round trip is needed
    store_request req;  // may be moved into the store: finish() reads only `counters` and `signals` below
    std::size_t counters = 0;
    std::size_t signals = 0;
    std::vector<candidate> candidates;
    std::vector<key_match> keys;  // the request's keys (match_request), which candidates name by index
    bool first_rcpt = false;
  };

  // One candidate measured against the store's answer: the count it compares (including this request), the
  // threshold it must not exceed, and whether it applies at all (a burst rule waits for baseline_warmup).
  struct evaluation {
    bool applies = false;
    std::uint64_t count = 0, threshold = 0;
    double baseline = 0;  // burst: the key's baseline per window
    std::uint32_t added = 0;  // novelty: the request's values new to the key
    bool exceeded() const { return applies && count > threshold; }
  };
  static evaluation evaluate(const policy_snapshot& snap, const candidate& c, const store_result& res);

  // Phase 1: what must be asked of the store, if anything. `now_ms` is 0 in the daemon (store's clock).
  prepared prepare(const policy_snapshot& snap, const policy_request& r, std::int64_t now_ms = 0);
  // Phase 2: the counts (or the store failure) -> the verdict; remembers a message-level decision.
  verdict finish(const policy_snapshot& snap, const policy_request& r, prepared& p, const store_result& res);

  const std::string& instance() const { return instance_; }

  // Hold journal records of held messages that are finished: at END-OF-MESSAGE, when a new instance
  // shows the previous message is done (prepare), or when the connection ends (end_connection). At most
  // one record per held message, with the queue ID if Postfix sent one. Takes them out.
  std::vector<hold_record> take_finished();
  // The connection is closing: the message in progress (if held) is finished.
  void end_connection();

 private:
  void finish_message();  // the current message is done: its journal record (if held) becomes ready
  void note_request(const policy_request& r);  // queue ID and recipients of a held message

  std::string instance_;
  std::optional<verdict> message_verdict_;  // hold / defer / reject decided at the first RCPT
  bool rcpt_seen_ = false;                  // the message unit is counted at the first RCPT only
  bool queue_id_logged_ = false;
  std::optional<hold_record> held_;         // the journal record of the held message in progress
  std::uint32_t rcpts_ = 0;                 // RCPTs of the message in progress
  std::vector<hold_record> finished_;
};

// The identity a value is counted under ("u:alice", "ip:192.0.2.1", "s:...", "d:..."): lower case, and
// hashed beyond 200 bytes so a hostile 10 kB sender cannot make huge keys.
std::string counter_identity(key_kind k, std::string_view normalized_value);
std::string to_lower(std::string_view s);
// Operator keys, "KIND:VALUE" as in the decision log ("sasl_username:alice", "client_address:2001:db8::/64").
std::string key_name(key_kind k, std::string_view value);
struct parsed_key {
  key_kind kind;
  std::string value;     // normalized as the engine counts it (lower case; client_address as its bucket)
  std::string identity;  // counter_identity(kind, value)
  std::string name;      // key_name(kind, value)
};
// Parses and normalizes a key like the engine normalizes request values; nullopt with `why` if malformed.
std::optional<parsed_key> parse_key(std::string_view text, unsigned ipv6_prefix, std::string* why = nullptr);
// The key an identity stands for ("u:alice" -> "sasl_username:alice"); the identity itself if unknown.
std::string key_of_identity(std::string_view identity);
// Why a tripped hold rule locks its key: "limits.conf:7 61 messages in 1m, limit 60".
std::string lock_reason(const limit_hit& h);

// Every key kind the rules have and the request carries a value for (rateguardctl explain; prepare).
std::vector<key_match> match_request(const policy_snapshot& snap, const policy_request& r);

// A value's bit in a familiarity filter (store_types.hpp), hashed with its kind ('N' network, 'D' domain): the same on
// every node, so nodes sharing Redis agree.
std::uint16_t familiar_bit(char kind, std::string_view value);

// The request's charge-once token (store_request::once): its instance and a hash of its recipient(s), sender
// and client; empty without an instance. The same request resent by Postfix has the same token.
std::string charge_token(const policy_request& r);

// The reply text for an action (defer: "450 4.7.1 ...", hold: "HOLD ...", ...).
std::string reply_for(const limit_hit& h, const std::string& custom_text);

}  // namespace rg
