// What the engine asks of a counter store and what it answers: counters, baselines, signals, locks, the hold
// journal and the operator commands, as plain values. Standard library only, so the engine and its tests need no
// Asio; the asynchronous interface that carries these is store.hpp (layer store).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rg {

// Every window is cut into this many buckets; a count adds the current bucket and the `buckets_per_window`
// before it, each whole. So a count never misses an event of the last `seconds`, which gives the
// guarantee "at most N accepted in any interval of length T"; the price is that an old event keeps
// counting up to T/12 longer than an exact log would keep it.
inline constexpr std::uint32_t buckets_per_window = 12;

struct counter_spec {
  std::string identity;        // e.g. "u:alice", "ip:192.0.2.1", "s:bob@example.com", "d:example.com"
  char unit_tag = 'm';         // 'm' messages, 'r' recipients
  std::uint32_t window_s = 0;  // window length in seconds
  std::uint32_t cost = 1;      // what this request adds if charged
  // The smallest limit of a refusing rule (defer/reject) on this counter; 0 when none refuses. The
  // request is charged only if count + cost <= refuse_limit for every counter that has one (and every signal).
  std::uint64_t refuse_limit = 0;
  // Adaptive baseline (burst rules): > 0 keeps this counter's baseline and caps what one period adds to it
  // at max(burst_factor x average, burst_floor): the smallest factor and floor of the burst rules on it.
  double burst_factor = 0;
  std::uint64_t burst_floor = 0;
  // A refusing (defer/reject) burst rule on this counter: the request is not charged when the baseline is warm
  // (history_ms >= store_request.warmup_ms) and count + cost > floor(max(refuse_factor x average, refuse_floor)), so
  // a deferred loop does not feed the count and baseline it is judged by. 0: none. With several such rules, the
  // largest factor and floor: never refused uncharged unless every one of them refuses.
  double refuse_factor = 0;
  std::uint64_t refuse_floor = 0;
  // Novelty (new_networks, new_domains): not empty makes this a counter of values new to the identity. Each entry
  // is a value's bit in the identity's familiarity filter (familiar_bits below; distinct, sorted); the store sets
  // `cost` itself: how many of them are new, and charging marks them all familiar.
  std::vector<std::uint16_t> novel;
};

// Familiarity (novelty counters, unit tags 'N' client networks and 'D' recipient domains): per identity one filter
// of familiar_bits bits, for networks and domains alike (the engine hashes each with its kind), in two epochs of
// familiar_ms (store_request): the current and the one before. A value is familiar when its bit is set in either:
// so a value used once stays familiar at least familiar_ms, at most twice that. One bit per value, so a key's
// filter also takes some new values for familiar (about n / 512 of them with n values in the two epochs): novelty
// is undercounted, never overcounted. The filter's history (now - its first charge) is reported, so rules can wait
// for baseline_warmup. Redis: a 64-byte string per epoch, <prefix>{<identity>}:f:<epoch> (GETBIT/SETBIT), and the
// hash field f = "first_ms:last epoch written"; memory: beside the windows (144 bytes).
inline constexpr std::uint32_t familiar_bits = 512;
struct novelty_value {
  bool present = false;         // the filter has been charged before (then history_ms counts)
  std::int64_t history_ms = 0;  // now - the filter's first charge
  std::uint32_t added = 0;      // the request's values that are new (the counter's cost)
  bool operator==(const novelty_value&) const = default;
};
// Whether novelty rules judge a key: the filter has baseline_warmup of history (before, everything is new to it).
inline bool novelty_warm(const novelty_value& v, std::int64_t warmup_ms) { return v.present && v.history_ms >= warmup_ms; }

// The baseline of one counter: an exponentially weighted moving average of the counter's count per period,
// a period being one window length (12 buckets: window_s * 1000 / 12 * 12 ms). Period index P = floor(bucket / 12),
// bucket = floor(now_ms / floor(window_s * 1000 / 12)).
//
// State per (identity, unit, window): avg, last (the last period charged), first (the first period charged).
// When a request is charged in period P > last, the periods last..P-1 are folded in first:
//   x     = the count charged in period `last` (its buckets are still there: nothing is deleted before the fold)
//   cap   = max(burst_factor x avg, burst_floor); x = min(x, cap)   -- a bad period cannot lift the baseline far
//   n     = last - first + 1                                         -- periods seen, `last` included
//   avg  += (x - avg) x max(alpha, 1 / n)                             -- the plain mean until 1/alpha periods
//   g     = P - last - 1 empty periods; m = min(g, max(0, N0 - n)) with N0 = floor(1 / alpha):
//   avg   = avg x n / (n + m); avg = avg x (1 - alpha)^(g - m)       -- the same steps, for g zeros at once
//           (zero j is the (n + j)th period: 1 / (n + j) >= alpha exactly while n + j <= floor(1 / alpha))
//   last  = P
// alpha = 1 - 2^(-window_s * 1000 / half_life_ms). The first charge ever sets avg = 0, first = last = P.
// A charge in period `last` changes nothing here (the count is in the buckets). A refused or not charged request
// writes nothing, but its result still reports the folded values as of `now`.
// While a baseline exists the identity is kept at least baseline_keep (4 x half_life) after its last fold.
struct baseline_value {
  bool present = false;         // the counter has burst_factor > 0 and has been charged before
  double average = 0;           // per period, folded up to the period before now's
  std::int64_t history_ms = 0;  // (P - first) x window length: how long the baseline has been learning
  bool operator==(const baseline_value&) const = default;
};
// Whether burst rules judge a counter by its baseline: baseline_warmup of history, and three periods at least: the
// first may have begun before the key's first message (a 1d baseline learned from a quarter of a day), and what
// the second can teach is capped at K x the first's (so a heavy login seen first late at night has a baseline
// far under its volume until the third).
inline bool baseline_warm(const baseline_value& b, std::uint32_t window_s, std::int64_t warmup_ms) {
  return b.present && b.history_ms >= warmup_ms && b.history_ms >= 3000 * static_cast<std::int64_t>(window_s);
}

// A distinct-value signal: how many distinct values (client addresses, recipient domains) an identity showed in
// the last `window_s`. Each window is cut into 4 buckets; the count is the union of the current bucket and the 4
// before it (so it covers at least the whole window, at most 1.25 x), with the request's value added first.
// Redis: one HyperLogLog per bucket (PFADD; PFCOUNT over the 5 only when PFADD changed the current one or the
// bucket moved on; the count cached in the identity's hash), about 0.81% standard error. Memory: exact up to
// 61-bit keyed hashes of the values (memory_store.hpp), at most signal_memory_cap new values per bucket.
inline constexpr std::uint32_t signal_buckets = 4;
inline constexpr std::size_t signal_memory_cap = 10000;  // memory store: distinct values kept per bucket
struct signal_spec {
  std::string identity;        // as in counter_spec
  char tag = 'i';              // 'i' client addresses, 'd' recipient domains
  std::uint32_t window_s = 0;
  std::string value;           // the value this request adds (added even when the request is refused)
  std::uint64_t refuse_limit = 0;  // as in counter_spec: not charged when distinct > refuse_limit
};

// The default of the setting baseline_half_life (engine_settings, daemon_config and store_request take it).
inline constexpr std::chrono::milliseconds default_baseline_half_life = std::chrono::hours(7 * 24);
// The default of the setting familiar_time (likewise).
inline constexpr std::chrono::milliseconds default_familiar_time = std::chrono::hours(14 * 24);

struct store_request {
  std::vector<counter_spec> counters;
  std::vector<signal_spec> signals;
  std::int64_t now_ms = 0;  // 0: the store's own clock (Redis: TIME, so nodes with skewed clocks agree)
  bool charge = true;       // false: only read the counts, add nothing (rateguardctl explain)
  // baseline_half_life (for counters with burst_factor > 0)
  std::int64_t half_life_ms = default_baseline_half_life.count();
  // familiar_time (for novelty counters): the length of one epoch of the familiarity filters
  std::int64_t familiar_ms = default_familiar_time.count();
  // baseline_warmup (for counters with refuse_factor > 0)
  std::int64_t warmup_ms = 0;
  // Charge once: the request's identity within its message (the engine's charge_token: instance, recipient,
  // sender, client). A request with the token of one charged less than charge_once_ttl ago is a repeat (Postfix
  // resending it after smtpd_policy_service_timeout): it only reads, and is answered as the first was (see
  // mark_repeat). Empty: no such memory (rateguardctl explain, tests).
  std::string once;
};

// How long a store remembers a charged request's `once` token: past Postfix's smtpd_policy_service_timeout
// (100s) and its retry, with room; about 100 bytes a token in Redis (a key with this TTL).
inline constexpr std::chrono::milliseconds charge_once_ttl = std::chrono::minutes(10);

// A lock (circuit breaker) on one identity: while it lasts, every message of that identity is held. It lives
// with the identity's counters (Redis: a field of the identity's hash, so the check script sees it without an
// extra command; memory: beside the windows), so every node sharing the store sees it. The identity's data
// must not expire before the lock does.
struct lock_info {
  std::string identity;        // as in counter_spec ("u:alice")
  std::int64_t since_ms = 0;   // when it was set (store clock)
  std::int64_t until_ms = 0;   // when it ends by itself (store clock)
  std::string reason;          // why, one printable line (e.g. "limits.conf:7 61 messages per 1m"; "rateguardctl");
                               // cut at journal_field_max bytes
  bool operator==(const lock_info&) const = default;
};

struct store_result {
  bool ok = false;                   // false: store failure; `error` says why, counts are empty
  std::string error;
  std::vector<std::uint64_t> counts; // per counter, the count before this request (same order)
  // Per counter (same order), present only where burst_factor > 0; empty when no counter of the request has one
  // (the common case costs no allocation).
  std::vector<baseline_value> baselines;
  // Per counter (same order), present only where `novel` is not empty; empty when no counter of the request has one.
  std::vector<novelty_value> novelty;
  std::vector<std::uint64_t> distinct;    // per signal, the distinct values including this request's
  bool charged = false;              // a lock does not change charging: a held message is accepted
  std::vector<lock_info> locks;      // the request's identities that are locked now, each once
};

// A repeat of a charged request (same `once` token) was read, not charged: answer it as the first was answered,
// charged, with each counter's count as it was before that first charge (the repeat's own charge is in the
// counts it read). Both stores call this, so they agree.
inline void mark_repeat(store_result& r, const store_request& req) {
  r.charged = true;
  for (std::size_t i = 0; i < r.counts.size() && i < req.counters.size(); ++i)
    r.counts[i] -= std::min<std::uint64_t>(r.counts[i], req.counters[i].cost);
}

// One held message in the hold journal (Redis: a stream capped by length and age; memory: a bounded ring).
// Each string field is cut at `journal_field_max` bytes, so a hostile 16 kB sender cannot make the journal's
// memory exceed about journal_caps.max_entries x 9 x 512 bytes.
inline constexpr std::size_t journal_field_max = 512;
inline std::string_view cut_field(std::string_view s) { return s.substr(0, journal_field_max); }
struct hold_record {
  std::string id;            // assigned by the store, increasing (Redis stream ID "ms-seq"); ignored when adding
  std::int64_t time_ms = 0;  // assigned by the store when adding (store clock)
  std::string queue_id;      // empty when Postfix never sent one (e.g. the message was aborted)
  std::string instance;
  std::string key;           // as in the decision log: "sasl_username:alice"
  std::string rule;          // "limits.conf:7", or empty for a lock set by hand
  std::string reason;        // "rate", "locked: <lock reason>", ...
  std::string client, sender;
  std::uint32_t recipients = 0;
  bool operator==(const hold_record&) const = default;
};

// The hold journal's caps (settings hold_journal_max, hold_journal_age), the same on both stores: every
// journal_add trims exactly to them (holds are rare, so exact trimming costs next to nothing). The members'
// initializers are the settings' defaults (daemon_config takes them from here).
struct journal_caps {
  std::size_t max_entries = 10000;
  std::chrono::milliseconds max_age = std::chrono::hours(24 * 7);
};

// The stores' settings' defaults, stated here, below both the stores and daemon_config (the settings file
// does not link the stores): memory_max_keys, and redis, redis_db, redis_timeout, redis_max_pending,
// redis_prefix (redis_options takes them too).
// memory_max_keys: the worst case with the sample limits (a login: 6 windows, all widened, 2 baselines, a familiarity
// filter, a 203-byte key) is about 2000 bytes an identity: 150 000 x 2000 B = 300 MB, under a third of a 1 GB VPS.
// An ordinary login takes about 710 bytes (tests/bench/rss_per_login.sh). README "Memory store footprint".
inline constexpr std::size_t default_memory_max_keys = 150000;
struct redis_defaults {
  static constexpr std::string_view address = "127.0.0.1:6379";
  static constexpr int db = 0;
  static constexpr std::chrono::milliseconds timeout{100};
  static constexpr std::size_t max_pending = 4096;
  static constexpr std::string_view key_prefix = "rg:";
};

// top examines at most this many identities of the asked kind (Redis: SCAN; memory: iteration), so one
// command cannot keep the store busy without bound; admin_result.truncated says when it stopped early.
inline constexpr std::size_t top_scan_max = 100000;

// The counts of one window of an identity, as the check would see them now.
struct window_count {
  char unit_tag = 'm';
  std::uint32_t window_s = 0;
  std::uint64_t count = 0;
  bool operator==(const window_count&) const = default;
};

struct baseline_state {
  char unit_tag = 'm';
  std::uint32_t window_s = 0;
  baseline_value value;
  bool operator==(const baseline_state&) const = default;
};
struct signal_count {
  char tag = 'i';
  std::uint32_t window_s = 0;
  std::uint64_t distinct = 0;
  bool operator==(const signal_count&) const = default;
};

struct identity_state {
  std::string identity;
  std::vector<window_count> windows;  // every counter ever charged since the identity's data was created,
                                      // sorted by (unit_tag, window_s); the count may be 0 by now
  std::optional<lock_info> lock;
  // status only, sorted like windows: each baseline as stored (folded up to its `last` period: the count of
  // `last` folds in at the next charge of a later period), history_ms as of now
  std::vector<baseline_state> baselines;
  std::vector<signal_count> signals;      // status only: sorted by (tag, window_s); those with a count > 0
  bool operator==(const identity_state&) const = default;
};

// Operator commands (rateguardctl, through the daemon's control socket). None of them charges anything.
enum class admin_op : std::uint8_t {
  status,        // identity -> identities = {its state} (no windows and no lock when unknown)
  lock,          // identity, ttl_ms (> 0), reason -> changed = newly locked (an existing lock is kept as it
                 // is); identities = {the identity with the lock now in force (new or kept), no windows}
  release,       // identity -> changed = a lock in force was removed
  reset,         // identity -> changed = something was deleted (its counters and its lock)
  top,           // prefix ("u:"), unit_tag, window_s, limit -> the `limit` identities with the highest count
                 // (> 0) in that counter, highest first, ties by identity; each with that one window and its
                 // lock; truncated = more than top_scan_max identities of that prefix exist
  journal_add,   // record -> holds = {the record as stored: id, time_ms, fields cut}; then the store trims
                 // to its caps: at most max_entries, none older than max_age before this one
  journal_read,  // since_ms, key ("" = all), limit -> holds, oldest first, at most `limit` (the newest ones)
};

struct admin_request {
  admin_op op = admin_op::status;
  std::string identity;           // status, lock, release, reset
  std::int64_t ttl_ms = 0;        // lock
  std::string reason;             // lock
  std::string prefix;             // top
  char unit_tag = 'm';            // top
  std::uint32_t window_s = 0;     // top
  std::size_t limit = 20;         // top, journal_read
  std::int64_t since_ms = 0;      // journal_read
  std::string key;                // journal_read
  hold_record record;             // journal_add
  std::int64_t now_ms = 0;        // 0: the store's own clock (tests inject one)
};

struct admin_result {
  bool ok = false;  // false: store failure, `error` says why
  std::string error;
  bool changed = false;
  bool truncated = false;  // top: stopped after top_scan_max identities; the answer covers only those
  std::vector<identity_state> identities;
  std::vector<hold_record> holds;
};

}  // namespace rg
