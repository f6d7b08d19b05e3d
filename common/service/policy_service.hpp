// The policy service: one decision per policy request, whichever front it came from (the policy protocol
// front today, the milter front next): engine prepare -> store check -> engine finish -> decision log line ->
// lock of a tripped hold rule -> hold journal records of held messages that are finished. Shared by every
// front, so each gets the same rules, store, locks, journal and log lines. Not here: sockets, sessions,
// deadlines, the per-connection message_tracker (each front owns one per connection), reading rateguard.conf.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <exception>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "decision_log.hpp"
#include "engine.hpp"
#include "metrics.hpp"
#include "rate_limited_warning.hpp"
#include "store.hpp"

namespace rg {

// A lock this daemon has just set (a hold rule tripped on a key not locked yet): what a notification says.
struct lock_event {
  std::string key;       // "sasl_username:alice", as in the decision log and rateguardctl
  std::string rule;      // "limits.conf:7"
  std::string reason;    // the lock's reason ("limits.conf:7 61 messages per 1m")
  std::int64_t until_ms = 0;
  std::string client, sender, queue_id;  // of the request that tripped it (queue_id often empty: first RCPT)
};

struct service_settings {
  log_format format = log_format::text;
  // Hold journal writes in flight at most: a store that stops answering must not pile up coroutines
  // without end (a record beyond it is dropped, with a warning).
  std::size_t journal_max_pending = 1000;
  // Milliseconds since the epoch, for the end of a new lock when the store does not say it; empty: the
  // system clock (tests inject one).
  std::function<std::int64_t()> clock;
  // Where the service's metrics go (the daemon's registry, which must outlive the service); null: a registry
  // of the service's own (tests).
  metrics::registry* metrics = nullptr;
  // Called after a lock this daemon set is logged; with a store shared by several nodes, only the node whose
  // lock request created the lock gets it (so one notification per lock).
  std::function<void(const lock_event&)> on_lock;
};

// The service's numbers for the stats line and rateguardctl stats (the metrics have them too).
struct service_counts {
  std::uint64_t requests = 0;
  std::map<std::string, std::uint64_t> decisions;  // by action ("none", "hold", ..., "store_error")
  std::vector<std::uint64_t> store_buckets;        // store round trips per latency bucket (store_latency_bounds)
  std::uint64_t locks_set = 0, holds_journaled = 0;
};

class policy_service {
 public:
  // `ex`: the event loop's executor (journal writes run on it); `st` must outlive the service.
  policy_service(boost::asio::any_io_executor ex, store& st, std::shared_ptr<const policy_snapshot> snap,
                 service_settings settings = {});
  ~policy_service();
  policy_service(const policy_service&) = delete;
  policy_service& operator=(const policy_service&) = delete;

  // Decides one request of the connection `tracker` belongs to: prepares it, asks the store if needed,
  // finishes it, logs the decision, and when a hold rule tripped on a key not locked yet, locks the key
  // before completing (so the key's next message is held already). The verdict's reply is the answer.
  // Journal records of held messages that this request finished are written after the verdict has been
  // delivered (the front has resumed and sent its answer), never delaying it. Completes within the store's
  // deadline (twice it when a lock is set); on the snapshot current when it began. `tracker` and `req` must
  // stay alive until it completes. No coroutine frame of its own: a request costs the store's operation only.
  boost::asio::awaitable<verdict> decide(message_tracker& tracker, const policy_request& req);

  // With a store that answers at once (store::answers_at_once: the memory store), the same decision made without
  // suspending: the front calls decide_at_once instead of awaiting decide, and saves the asynchronous round trip.
  // The journal records are handed to their writers before it returns.
  bool decides_at_once() const { return store_.answers_at_once(); }
  verdict decide_at_once(message_tracker& tracker, const policy_request& req);

  // The front's connection is over: the message in progress, if held, is finished and journaled.
  void end_connection(message_tracker& tracker);

  // Swaps the rules and settings; requests in flight finish on the snapshot they began with.
  void set_snapshot(std::shared_ptr<const policy_snapshot> snap) { snap_ = std::move(snap); }
  const std::shared_ptr<const policy_snapshot>& snapshot() const { return snap_; }
  // log_format (a reload applies it): decision lines written from now on.
  void set_log_format(log_format f) { settings_.format = f; }
  store& counter_store() const { return store_; }

  // Journal writes in flight; `idle` is called each time the last one completes (a front that is shutting
  // down waits for them).
  std::size_t journal_pending() const { return journal_pending_; }
  void on_journal_idle(std::function<void()> idle) { on_journal_idle_ = std::move(idle); }

  std::uint64_t requests() const { return requests_; }
  std::uint64_t rcpt_requests() const { return rcpt_requests_; }
  // A lock changed outside the service (rateguardctl lock, release, reset): until_ms > 0 set, 0 removed.
  void lock_changed(const std::string& identity, std::int64_t until_ms);
  // Totals since the start, for the stats line and rateguardctl stats.
  service_counts counts() const;
  // The upper bounds (seconds) of the store latency histogram's buckets.
  static const std::vector<double>& store_latency_bounds();

 private:
  // What a request carries across the store's round trips; pooled, so a request costs no allocation and
  // its state is not moved along with the completion handler.
  struct pending {
    std::shared_ptr<const policy_snapshot> snap;  // the request's rules, alive across a reload
    message_tracker::prepared p;
    verdict v;                  // while the lock is being set
    std::int64_t until_ms = 0;  // the lock's end if the store does not say
    std::chrono::steady_clock::time_point asked;  // when the store was asked (its latency histogram)
  };
  struct counters;  // the metrics' series this service counts in (policy_service.cpp)
  struct decide_op;
  using decide_handler = boost::asio::async_result<boost::asio::use_awaitable_t<>,
                                                   void(std::exception_ptr, verdict)>::handler_type;

  void start(message_tracker& tracker, const policy_request& req, decide_handler handler);
  // After the engine's verdict: the log line, then a lock if one is due, then complete().
  void decided(decide_op&& op, verdict&& v);
  void locked(decide_op&& op, const admin_result& res);
  // The lock a verdict sets (a hold rule tripped on a key not locked yet), if any; what follows the store's answer.
  std::optional<admin_request> lock_request(const verdict& v) const;
  void lock_answered(const verdict& v, const admin_result& res, const policy_request& req, std::int64_t until_ms);
  void complete(decide_op&& op, verdict&& v);
  void fail(decide_op&& op, std::exception_ptr e);
  pending* acquire();
  void release(pending* s);
  void note_request(const policy_snapshot& snap, const policy_request& r);
  // The decision log line of a verdict, if it is worth one (or debug logging is on).
  void log_decision(const verdict& v, const policy_request& r);
  void count_decision(const verdict& v);
  std::int64_t now_ms() const;
  void journal(std::vector<hold_record> records);
  boost::asio::awaitable<void> write_journal(hold_record rec);

  boost::asio::any_io_executor ex_;
  store& store_;
  std::shared_ptr<const policy_snapshot> snap_;
  service_settings settings_;
  std::unique_ptr<metrics::registry> own_metrics_;  // when settings_.metrics is null
  std::unique_ptr<counters> counters_;
  std::vector<std::unique_ptr<pending>> pool_;  // every pending state ever needed (at most one per request in flight)
  std::vector<pending*> free_;
  std::size_t journal_pending_ = 0;
  std::function<void()> on_journal_idle_;
  // Our own warnings, each at most once a second, so a broken store cannot flood the log.
  rate_limited_warning store_warning_, lock_warning_, journal_warning_;
  // The locks this daemon set or changed, by identity, with their end (the rateguard_locks_in_force gauge);
  // at most max_census entries (a lock flood beyond it is counted by locks_set only).
  static constexpr std::size_t max_census = 100000;
  std::map<std::string, std::int64_t> census_;
  std::uint64_t requests_ = 0, rcpt_requests_ = 0;
  bool warned_no_rcpt_ = false;
  bool warned_realm_ = false;  // once per process: the mismatch does not fix itself
};

}  // namespace rg
