// The embedded counter store: bucketed sliding windows, locks and the hold journal in this process, for one
// box and quick starts. Same semantics as the Redis store (see store.hpp); nothing is shared with other nodes
// or survives a restart. Single-threaded: call it from the event loop only.
#pragma once

#include <array>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "store.hpp"

namespace rg {

class memory_store final : public store {
 public:
  using clock_fn = std::function<std::int64_t()>;  // milliseconds since the epoch

  explicit memory_store(std::size_t max_keys = 1000000, clock_fn clock = {}, journal_caps caps = {});

  std::string name() const override { return "memory"; }
  // The synchronous cores (the async entry points just call them).
  store_result check(const store_request& req);
  admin_result admin(const admin_request& req);
  std::size_t size() const { return identities_.size(); }

 protected:
  void start_check(store_request req, boost::asio::any_completion_handler<void(store_result)> done) override;
  void start_admin(admin_request req, boost::asio::any_completion_handler<void(admin_result)> done) override;

 private:
  static constexpr std::size_t slots = buckets_per_window + 1;
  struct window_counter {
    char unit_tag;
    std::uint32_t window_s;
    std::array<std::int64_t, slots> index;  // which bucket each slot holds (-1: none)
    std::array<std::uint64_t, slots> count;
    // The adaptive baseline (store.hpp), once a burst rule has charged this counter.
    bool has_baseline = false;
    double average = 0;
    std::int64_t last_period = 0, first_period = 0;
  };
  // Distinct values of one signal: a ring of signal_buckets + 1 exact sets, each capped at signal_memory_cap.
  static constexpr std::size_t signal_slots = signal_buckets + 1;
  struct signal_state {
    char tag;
    std::uint32_t window_s;
    std::array<std::int64_t, signal_slots> index;  // which bucket each slot holds (-1: none)
    std::array<std::unordered_set<std::string>, signal_slots> values;
  };
  struct lock_state {
    std::int64_t since_ms, until_ms;
    std::string reason;
  };
  struct identity {
    std::vector<window_counter> windows;
    std::vector<signal_state> signals;
    std::optional<lock_state> lock;  // may have ended: lock_in_force() says
    std::int64_t expires_ms = 0;     // covers every window's last charge and the lock
  };

  std::int64_t now_ms() const;
  void sweep(std::int64_t now);
  // The identity's live data, or null when unknown or expired (an expired one waits for the sweep).
  identity* live(const std::string& id, std::int64_t now);
  // live(), or a fresh identity (an expired one is cleared first); null when the store is full.
  identity* live_or_new(const std::string& id, std::int64_t now);
  static std::uint64_t count(const window_counter& w, std::int64_t now);
  // The baseline as of period `period` (folded, not stored); w.has_baseline must be true.
  static baseline_value baseline_at(const window_counter& w, std::int64_t period, double factor, std::uint64_t floor,
                                    double alpha);
  static std::uint64_t distinct(const signal_state& s, std::int64_t now);
  // Adds the request's value (when `add`) and returns the distinct count, or an error when the store is full.
  std::uint64_t observe(identity& id, const signal_spec& sig, std::int64_t now, bool add);
  static const lock_state* lock_in_force(const identity& i, std::int64_t now);
  static identity_state state_of(const std::string& id, const identity& i, std::int64_t now);
  void journal_add(hold_record rec, std::int64_t now);
  std::vector<hold_record> journal_read(const admin_request& req) const;
  void journal_trim(std::int64_t newest_ms);
  std::vector<identity_state> top(const admin_request& req, std::int64_t now, bool& truncated) const;

  std::size_t max_keys_;
  clock_fn clock_;
  journal_caps caps_;
  std::unordered_map<std::string, identity> identities_;
  std::int64_t last_sweep_ms_ = 0;
  std::deque<hold_record> journal_;  // oldest first; ids increase like a Redis stream's
  std::int64_t journal_last_ms_ = 0;
  std::uint64_t journal_last_seq_ = 0;
};

}  // namespace rg
