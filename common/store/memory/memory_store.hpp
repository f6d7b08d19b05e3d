// The embedded counter store: bucketed sliding windows, locks and the hold journal in this process, for one
// box and quick starts. Same semantics as the Redis store (see store.hpp); nothing is shared with other nodes
// or survives a restart. Single-threaded: call it from the thread running its io_context only.
// Not here: rules, Postfix, logging.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "store.hpp"

namespace rg {

class memory_store final : public store {
 public:
  using clock_fn = std::function<std::int64_t()>;  // milliseconds since the epoch

  // `ex`: where async_check / async_admin complete (store.hpp); only the synchronous check() and admin() may be
  // used without one.
  // At most `max_keys` identities are kept (the setting memory_max_keys; store_types.hpp has the arithmetic
  // behind its default). A new identity past it evicts the least recently used identity without a lock in force.
  explicit memory_store(std::size_t max_keys = default_memory_max_keys, clock_fn clock = {}, journal_caps caps = {},
                        boost::asio::any_io_executor ex = {});

  std::string name() const override { return "memory"; }
  // The synchronous cores (the async entry points call them, then post the completion). check() reads a repeat of
  // a charged request (store_request::once) without charging it.
  store_result check(const store_request& req);
  admin_result admin(const admin_request& req);
  bool answers_at_once() const override { return true; }
  store_result check_at_once(const store_request& req) override { return check(req); }
  admin_result admin_at_once(const admin_request& req) override { return admin(req); }
  std::size_t size() const { return used_; }              // identities held (an expired one until swept)
  std::uint64_t evictions() const { return evictions_; }  // identities dropped for a new one since start

 protected:
  void start_check(store_request req, boost::asio::any_completion_handler<void(store_result)> done) override;
  void start_admin(admin_request req, boost::asio::any_completion_handler<void(admin_result)> done) override;

 private:
  static constexpr std::uint32_t none = 0xffffffffu;
  static constexpr std::size_t slots = buckets_per_window + 1;

  // The records below live in one heap block per identity ("blob"): the key, then its windows, baselines,
  // familiarity filters, signals and signal values, each section 8-byte aligned. Trivially copyable: the blob grows by memcpy.
  //
  // One counter window: a ring of 13 buckets. Slot b % 13 holds bucket b for b in [head - 12, head]; slots of
  // buckets after `head` are zeroed when a charge moves head on. Counts are 16-bit until one would pass 65535;
  // then the window turns `wide` and its counts move to wide_ (the pool index kept in count[0..1]).
  struct window_rec {
    std::int64_t head;
    std::uint32_t window_s;
    char unit_tag;
    std::uint8_t wide;
    std::uint16_t count[slots];
  };
  // The adaptive baseline of window `window_no` (store.hpp), once a burst rule has charged it.
  struct baseline_rec {
    double average;
    std::int64_t last_period, first_period;
    std::uint32_t window_no, unused;
  };
  // The identity's familiarity filter (store_types.hpp; at most one): bits[0] is epoch `epoch`, bits[1] the one before.
  struct familiar_rec {
    std::int64_t epoch, first_ms;
    std::uint64_t bits[2][familiar_bits / 64];
  };
  // A distinct-value signal: `values` entries in the blob's value section, sorted, each a keyed 61-bit hash
  // of the value with (bucket & 7) in the low 3 bits, the bucket being the latest quarter-window the value was
  // added in. Only buckets head - 4 .. head are kept, so the 3 bits identify the bucket; a value is in the union
  // of the last 5 buckets exactly when its latest bucket is among them.
  struct signal_rec {
    std::int64_t head;
    std::uint32_t window_s, values;
    char tag;
    char unused[7];
  };
  struct lock_state {
    std::int64_t since_ms, until_ms;
    std::string reason;
  };
  enum : std::uint8_t { in_use = 1, in_locked_list = 2, has_lock = 4 };
  // One identity. Nodes sit in a slab (nodes_, indices stable) and in one of two intrusive lists: lru_ (most
  // recently used first; eviction takes the tail) or locked_ (a lock was set: never evicted; back to lru_ once
  // a check, the sweep or a release sees the lock has ended).
  struct node {
    std::unique_ptr<std::byte[]> blob;
    std::int64_t expires_ms = 0;  // covers every window's last charge, signal, baseline keep and the lock
    std::uint64_t hash = 0;       // of the key
    std::uint32_t prev = none, next = none;
    std::uint32_t epoch = 0;      // the last check/admin call that touched it (never evicted by that call)
    std::uint32_t capacity = 0;   // bytes allocated for the blob
    std::uint16_t key_len = 0;
    std::uint8_t windows = 0, baselines = 0, familiars = 0, signals = 0;
    std::uint8_t flags = 0;
  };
  struct list {
    std::uint32_t head = none, tail = none;
  };

  std::int64_t now_ms() const;
  void next_epoch();  // a new check/admin call
  // Frees at most two expired identities (the sweep's cursor walks the slab), so sweeping costs O(1) per call.
  void sweep_step(std::int64_t now);

  // --- the identity map (open addressing, linear probing, keyed hash) and the lists ---
  std::uint64_t hash_of(std::string_view s) const;
  std::string_view key_of(const node& n) const;
  std::uint32_t find(std::string_view id, std::uint64_t h) const;
  std::uint32_t find(std::string_view id) const { return find(id, hash_of(id)); }
  // The identity to charge: `n` (the result of find, may be none), created when unknown (evicting the least
  // recently used unlocked identity when full) and emptied when expired. none when the store is full of locks.
  std::uint32_t ensure(std::string_view id, std::uint32_t n, std::int64_t now);
  void free_node(std::uint32_t n);
  void clear_node(std::uint32_t n);
  void touch(std::uint32_t n, std::int64_t now);
  void unlink(std::uint32_t n);
  void push_front(list& l, std::uint32_t n);
  void table_insert(std::uint32_t n);
  void table_erase(std::uint32_t n);
  bool live(std::uint32_t n, std::int64_t now) const { return n != none && nodes_[n].expires_ms > now; }
  const lock_state* lock_in_force(std::uint32_t n, std::int64_t now) const;

  // --- the blob ---
  struct layout {
    std::size_t windows, baselines, familiars, signals, values, end;
  };
  static layout layout_of(const node& n);
  // Replaces `remove` bytes at `at` by `insert` zero bytes; returns the blob (it may have moved).
  std::byte* splice(node& n, std::size_t at, std::size_t remove, std::size_t insert);
  window_rec* windows_of(node& n) const;
  baseline_rec* baselines_of(node& n) const;
  familiar_rec* familiars_of(node& n) const;
  signal_rec* signals_of(node& n) const;
  std::uint64_t* values_of(node& n, std::uint32_t signal_no) const;
  std::uint32_t find_window(node& n, char tag, std::uint32_t window_s) const;
  std::uint32_t add_window(std::uint32_t n, char tag, std::uint32_t window_s, std::int64_t head);
  baseline_rec* find_baseline(node& n, std::uint32_t window_no) const;
  familiar_rec* find_familiar(node& n) const { return n.familiars ? familiars_of(n) : nullptr; }
  // How many of `c.novel` are new to the filter as of `now` (nullptr: no filter yet), and its history.
  static novelty_value novelty_of(const familiar_rec* f, const counter_spec& c, std::int64_t now, std::int64_t familiar_ms);
  // Marks `c.novel` familiar in the current epoch (the filter made when missing).
  void learn(std::uint32_t n, const counter_spec& c, std::int64_t now, std::int64_t familiar_ms);
  void release_wide(node& n);

  // --- counting ---
  std::uint64_t slot_count(const window_rec& w, std::size_t slot) const;
  std::uint64_t count(const window_rec& w, std::int64_t now) const;
  void charge(window_rec& w, std::int64_t cur, std::uint32_t cost);
  // The baseline as of period `period` (folded, not stored).
  baseline_value baseline_at(const window_rec& w, const baseline_rec& b, std::int64_t period, double factor,
                             std::uint64_t floor, double alpha) const;
  std::uint64_t distinct(node& n, std::uint32_t signal_no, std::int64_t now) const;
  // Adds the request's value (when `add`) and returns the distinct count including it.
  std::uint64_t observe(std::uint32_t n, const signal_spec& sig, std::int64_t now, bool add);

  identity_state state_of(std::uint32_t n, std::int64_t now);
  void journal_add(hold_record rec, std::int64_t now);
  std::vector<hold_record> journal_read(const admin_request& req) const;
  void journal_trim(std::int64_t newest_ms);
  std::vector<identity_state> top(const admin_request& req, std::int64_t now, bool& truncated);

  std::size_t max_keys_;
  clock_fn clock_;
  journal_caps caps_;
  boost::asio::any_io_executor ex_;
  std::uint64_t hash_key_[2];  // random per store: a client cannot aim values at one probe chain or one hash
  std::vector<node> nodes_;
  std::vector<std::uint32_t> free_;   // unused slab indices
  std::vector<std::uint32_t> table_;  // node index or none; size a power of two, at most 3/4 full
  std::size_t used_ = 0;
  list lru_, locked_;
  std::unordered_map<std::uint32_t, lock_state> locks_;  // by node; locks are few
  std::vector<std::array<std::uint64_t, slots>> wide_;   // counts of wide windows
  std::vector<std::uint32_t> wide_free_;
  std::uint32_t epoch_ = 0;
  std::size_t sweep_cursor_ = 0;
  std::uint64_t evictions_ = 0;
  // Charge once: the tokens of requests charged in the last charge_once_ttl, each as its keyed 64-bit hash (hash_of:
  // two tokens collide with odds about once_cap / 2^64, and nobody can aim at the key), with its expiry, oldest
  // first; at most once_cap (a flood of distinct tokens forgets the oldest first, never grows memory past about 3 MB).
  static constexpr std::size_t once_cap = 50000;
  std::unordered_map<std::uint64_t, std::int64_t> once_;
  std::deque<std::pair<std::int64_t, std::uint64_t>> once_order_;
  bool charged_before(std::uint64_t token, std::int64_t now);
  void remember_charge(std::uint64_t token, std::int64_t now);
  store_result check_counts(const store_request& req, std::int64_t now);
  std::deque<hold_record> journal_;  // oldest first; ids increase like a Redis stream's
  std::int64_t journal_last_ms_ = 0;
  std::uint64_t journal_last_seq_ = 0;
};

}  // namespace rg
