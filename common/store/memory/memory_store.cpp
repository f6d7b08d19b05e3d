// In-process bucketed sliding windows: per identity one heap block holding its key, a ring of 13 buckets per
// unit and window (16-bit counts, widened when needed), the adaptive baselines and the distinct-value signals as
// sorted keyed hashes; locks beside them; the hold journal as a ring capped by length and age.
// At most max_keys identities: a new one past the cap evicts the least recently used identity that has no lock
// in force, so a flood of made-up senders costs the coldest identities, never the counting of a new key.
// Expired identities are freed by a sweep that looks at two slab slots per call (O(1) per request).
#include "memory_store.hpp"

#include <boost/asio/post.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <random>

namespace rg {

namespace {
std::int64_t bucket_width_ms(std::uint32_t window_s) {
  return std::max<std::int64_t>(1, static_cast<std::int64_t>(window_s) * 1000 / buckets_per_window);
}

std::int64_t signal_width_ms(std::uint32_t window_s) {
  return std::max<std::int64_t>(1, static_cast<std::int64_t>(window_s) * 1000 / signal_buckets);
}

double baseline_alpha(std::uint32_t window_s, std::int64_t half_life_ms) {
  return 1.0 - std::exp2(-static_cast<double>(window_s) * 1000.0 / static_cast<double>(std::max<std::int64_t>(1, half_life_ms)));
}

std::int64_t baseline_keep_ms(std::int64_t half_life_ms) { return 4 * half_life_ms; }

constexpr std::string_view store_full = "memory store full (memory_max_keys)";

constexpr std::size_t round8(std::size_t n) { return (n + 7) & ~std::size_t{7}; }

std::uint64_t rotl(std::uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

// SipHash-1-3 (as Rust's HashMap): keyed, so neither the probe chains of the identity map nor the signal
// hashes can be aimed at by choosing senders or recipient domains.
std::uint64_t siphash13(const std::uint64_t key[2], std::string_view s) {
  std::uint64_t v0 = 0x736f6d6570736575ULL ^ key[0], v1 = 0x646f72616e646f6dULL ^ key[1];
  std::uint64_t v2 = 0x6c7967656e657261ULL ^ key[0], v3 = 0x7465646279746573ULL ^ key[1];
  // Inlined: called as a function, the state lives in memory and each hash costs ~100 instructions more.
  const auto round = [&]() __attribute__((always_inline)) {
    v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32);
    v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;
    v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;
    v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32);
  };
  const std::size_t n = s.size();
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t m;
    std::memcpy(&m, s.data() + i, 8);
    v3 ^= m;
    round();
    v0 ^= m;
  }
  std::uint64_t b = static_cast<std::uint64_t>(n) << 56;
  for (std::size_t j = 0; i + j < n; ++j) b |= static_cast<std::uint64_t>(static_cast<unsigned char>(s[i + j])) << (8 * j);
  v3 ^= b;
  round();
  v0 ^= b;
  v2 ^= 0xff;
  round();
  round();
  round();
  return v0 ^ v1 ^ v2 ^ v3;
}

// The bucket of a signal entry: the latest b <= head with b & 7 == the entry's low bits (entries are kept
// within head - 4 .. head, so this is exact).
std::int64_t entry_bucket(std::uint64_t e, std::int64_t head) {
  return head - static_cast<std::int64_t>((static_cast<std::uint64_t>(head) - e) & 7);
}

[[noreturn]] void no_executor() {
  std::fputs("memory_store: async_check/async_admin need the executor given at construction\n", stderr);
  std::abort();
}
}  // namespace

memory_store::memory_store(std::size_t max_keys, clock_fn clock, journal_caps caps, boost::asio::any_io_executor ex)
    : max_keys_(std::max<std::size_t>(1, max_keys)), clock_(std::move(clock)), caps_(caps), ex_(std::move(ex)),
      table_(1024, none) {
  std::random_device rd;
  for (auto& k : hash_key_) k = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
}

std::int64_t memory_store::now_ms() const {
  if (clock_) return clock_();
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// store.hpp's contract: never inline, on the store's executor, exactly once. The lambda has no associated
// executor of its own, so the handler runs on ex_ itself (as the Redis store's does, from its read loop).
void memory_store::start_check(store_request req, boost::asio::any_completion_handler<void(store_result)> done) {
  if (!ex_) no_executor();
  boost::asio::post(ex_, [d = std::move(done), r = check(req)]() mutable { std::move(d)(std::move(r)); });
}

void memory_store::start_admin(admin_request req, boost::asio::any_completion_handler<void(admin_result)> done) {
  if (!ex_) no_executor();
  boost::asio::post(ex_, [d = std::move(done), r = admin(req)]() mutable { std::move(d)(std::move(r)); });
}

// --- the identity map and the lists --------------------------------------------------------------------------

std::uint64_t memory_store::hash_of(std::string_view s) const { return siphash13(hash_key_, s); }

std::string_view memory_store::key_of(const node& n) const {
  return {reinterpret_cast<const char*>(n.blob.get()), n.key_len};
}

std::uint32_t memory_store::find(std::string_view id, std::uint64_t h) const {
  const std::size_t mask = table_.size() - 1;
  for (std::size_t i = h & mask;; i = (i + 1) & mask) {
    const std::uint32_t n = table_[i];
    if (n == none) return none;
    if (nodes_[n].hash == h && key_of(nodes_[n]) == id) return n;
  }
}

void memory_store::table_insert(std::uint32_t n) {
  if ((used_ + 1) * 4 > table_.size() * 3) {
    std::vector<std::uint32_t> bigger(table_.size() * 2, none);
    table_.swap(bigger);
    const std::size_t mask = table_.size() - 1;
    for (std::uint32_t m : bigger) {
      if (m == none) continue;
      std::size_t i = nodes_[m].hash & mask;
      while (table_[i] != none) i = (i + 1) & mask;
      table_[i] = m;
    }
  }
  const std::size_t mask = table_.size() - 1;
  std::size_t i = nodes_[n].hash & mask;
  while (table_[i] != none) i = (i + 1) & mask;
  table_[i] = n;
}

// Backward-shift deletion: no tombstones, so probe chains never grow from churn.
void memory_store::table_erase(std::uint32_t n) {
  const std::size_t mask = table_.size() - 1;
  std::size_t i = nodes_[n].hash & mask;
  while (table_[i] != n) i = (i + 1) & mask;
  for (std::size_t j = i;;) {
    j = (j + 1) & mask;
    if (table_[j] == none) break;
    const std::size_t home = nodes_[table_[j]].hash & mask;
    // table_[j] may move to i when its home is not in the cyclic range (i, j].
    if (((j - home) & mask) >= ((j - i) & mask)) {
      table_[i] = table_[j];
      i = j;
    }
  }
  table_[i] = none;
}

void memory_store::unlink(std::uint32_t n) {
  node& x = nodes_[n];
  list& l = (x.flags & in_locked_list) ? locked_ : lru_;
  (x.prev != none ? nodes_[x.prev].next : l.head) = x.next;
  (x.next != none ? nodes_[x.next].prev : l.tail) = x.prev;
  x.prev = x.next = none;
}

void memory_store::push_front(list& l, std::uint32_t n) {
  node& x = nodes_[n];
  x.flags = static_cast<std::uint8_t>(&l == &locked_ ? (x.flags | in_locked_list) : (x.flags & ~in_locked_list));
  x.prev = none;
  x.next = l.head;
  (l.head != none ? nodes_[l.head].prev : l.tail) = n;
  l.head = n;
}

const memory_store::lock_state* memory_store::lock_in_force(std::uint32_t n, std::int64_t now) const {
  if (n == none || !(nodes_[n].flags & has_lock)) return nullptr;
  const lock_state& l = locks_.at(n);
  return l.until_ms > now ? &l : nullptr;
}

void memory_store::touch(std::uint32_t n, std::int64_t now) {
  node& x = nodes_[n];
  x.epoch = epoch_;
  if ((x.flags & in_locked_list) && lock_in_force(n, now) != nullptr) return;
  if (x.flags & in_locked_list) {
    unlink(n);
    push_front(lru_, n);
  } else if (lru_.head != n) {
    unlink(n);
    push_front(lru_, n);
  }
}

std::uint32_t memory_store::ensure(std::string_view id, std::uint32_t n, std::int64_t now) {
  if (n != none) {
    // Redis would have dropped the key by now: start afresh, not with its old windows and lock. (0: created by
    // this request and not charged yet; keep what an earlier counter of the request just added.)
    if (nodes_[n].expires_ms != 0 && nodes_[n].expires_ms <= now) clear_node(n);
    touch(n, now);
    return n;
  }
  if (used_ >= max_keys_) {
    // The coldest identity without a lock in force goes; never one this call has touched (a request's own
    // identities are all at the front by now, so the tail is one of them only when nothing else is left).
    const std::uint32_t victim = lru_.tail;
    if (victim == none || nodes_[victim].epoch == epoch_) return none;
    free_node(victim);
    ++evictions_;
  }
  std::uint32_t m;
  if (!free_.empty()) {
    m = free_.back();
    free_.pop_back();
  } else {
    m = static_cast<std::uint32_t>(nodes_.size());
    nodes_.emplace_back();
  }
  node& x = nodes_[m];
  x.hash = hash_of(id);
  x.key_len = static_cast<std::uint16_t>(id.size());
  x.capacity = static_cast<std::uint32_t>(round8(id.size()));
  x.blob.reset(new std::byte[x.capacity]);
  std::memcpy(x.blob.get(), id.data(), id.size());
  x.flags = in_use;
  x.epoch = epoch_;
  x.expires_ms = 0;
  push_front(lru_, m);
  table_insert(m);
  ++used_;
  return m;
}

void memory_store::release_wide(node& n) {
  window_rec* w = windows_of(n);
  for (std::size_t i = 0; i < n.windows; ++i) {
    if (!w[i].wide) continue;
    std::uint32_t idx;
    std::memcpy(&idx, w[i].count, sizeof idx);
    wide_free_.push_back(idx);
  }
}

void memory_store::free_node(std::uint32_t n) {
  node& x = nodes_[n];
  table_erase(n);
  unlink(n);
  if (x.flags & has_lock) locks_.erase(n);
  release_wide(x);
  x = node{};
  free_.push_back(n);
  --used_;
}

void memory_store::clear_node(std::uint32_t n) {
  node& x = nodes_[n];
  release_wide(x);
  const layout l = layout_of(x);
  splice(x, l.windows, l.end - l.windows, 0);
  x.windows = x.baselines = x.familiars = x.signals = 0;
  if (x.flags & has_lock) locks_.erase(n);
  x.flags = static_cast<std::uint8_t>(x.flags & ~has_lock);
  x.expires_ms = 0;
}

void memory_store::next_epoch() {
  if (++epoch_ != 0) return;
  // Once in 2^32 calls: no node may keep a stale stamp equal to a coming call's.
  for (node& x : nodes_) x.epoch = 0;
  epoch_ = 1;
}

void memory_store::sweep_step(std::int64_t now) {
  for (int k = 0; k < 2 && !nodes_.empty(); ++k) {
    if (sweep_cursor_ >= nodes_.size()) sweep_cursor_ = 0;
    const auto n = static_cast<std::uint32_t>(sweep_cursor_++);
    const node& x = nodes_[n];
    if (!(x.flags & in_use)) continue;
    if (x.expires_ms <= now) {
      free_node(n);
    } else if ((x.flags & in_locked_list) && lock_in_force(n, now) == nullptr) {
      unlink(n);
      push_front(lru_, n);
    }
  }
}

// --- the blob ----------------------------------------------------------------------------------------------

memory_store::layout memory_store::layout_of(const node& n) {
  layout l;
  l.windows = round8(n.key_len);
  l.baselines = l.windows + n.windows * sizeof(window_rec);
  l.familiars = l.baselines + n.baselines * sizeof(baseline_rec);
  l.signals = l.familiars + n.familiars * sizeof(familiar_rec);
  l.values = l.signals + n.signals * sizeof(signal_rec);
  std::size_t values = 0;
  const auto* s = reinterpret_cast<const signal_rec*>(n.blob.get() + l.signals);
  for (std::size_t i = 0; i < n.signals; ++i) values += s[i].values;
  l.end = l.values + values * sizeof(std::uint64_t);
  return l;
}

std::byte* memory_store::splice(node& n, std::size_t at, std::size_t remove, std::size_t insert) {
  const std::size_t size = layout_of(n).end;
  const std::size_t new_size = size - remove + insert;
  std::byte* b = n.blob.get();
  if (new_size > n.capacity || (n.capacity > 256 && new_size < n.capacity / 4)) {
    // Exact for the small blobs of ordinary identities; room to grow for a signal with many values.
    const std::size_t cap = new_size <= 256 ? new_size : new_size + new_size / 2;
    std::unique_ptr<std::byte[]> fresh(new std::byte[cap]);
    std::memcpy(fresh.get(), b, at);
    std::memcpy(fresh.get() + at + insert, b + at + remove, size - at - remove);
    n.blob = std::move(fresh);
    n.capacity = static_cast<std::uint32_t>(cap);
    b = n.blob.get();
  } else {
    std::memmove(b + at + insert, b + at + remove, size - at - remove);
  }
  std::memset(b + at, 0, insert);
  return b;
}

memory_store::window_rec* memory_store::windows_of(node& n) const {
  return std::launder(reinterpret_cast<window_rec*>(n.blob.get() + round8(n.key_len)));
}

memory_store::baseline_rec* memory_store::baselines_of(node& n) const {
  return std::launder(reinterpret_cast<baseline_rec*>(n.blob.get() + round8(n.key_len) + n.windows * sizeof(window_rec)));
}

memory_store::familiar_rec* memory_store::familiars_of(node& n) const {
  return std::launder(reinterpret_cast<familiar_rec*>(n.blob.get() + round8(n.key_len) + n.windows * sizeof(window_rec) +
                                                      n.baselines * sizeof(baseline_rec)));
}

memory_store::signal_rec* memory_store::signals_of(node& n) const {
  return std::launder(reinterpret_cast<signal_rec*>(reinterpret_cast<std::byte*>(familiars_of(n) + n.familiars)));
}

std::uint64_t* memory_store::values_of(node& n, std::uint32_t signal_no) const {
  const signal_rec* s = signals_of(n);
  std::size_t before = 0;
  for (std::uint32_t i = 0; i < signal_no; ++i) before += s[i].values;
  return std::launder(reinterpret_cast<std::uint64_t*>(reinterpret_cast<std::byte*>(const_cast<signal_rec*>(s + n.signals)) +
                                                       before * sizeof(std::uint64_t)));
}

std::uint32_t memory_store::find_window(node& n, char tag, std::uint32_t window_s) const {
  const window_rec* w = windows_of(n);
  for (std::uint32_t i = 0; i < n.windows; ++i)
    if (w[i].unit_tag == tag && w[i].window_s == window_s) return i;
  return none;
}

std::uint32_t memory_store::add_window(std::uint32_t n, char tag, std::uint32_t window_s, std::int64_t head) {
  node& x = nodes_[n];
  const layout l = layout_of(x);
  splice(x, l.baselines, 0, sizeof(window_rec));
  const std::uint32_t i = x.windows++;
  window_rec& w = windows_of(x)[i];
  w.head = head;
  w.window_s = window_s;
  w.unit_tag = tag;
  return i;
}

memory_store::baseline_rec* memory_store::find_baseline(node& n, std::uint32_t window_no) const {
  baseline_rec* b = baselines_of(n);
  for (std::size_t i = 0; i < n.baselines; ++i)
    if (b[i].window_no == window_no) return &b[i];
  return nullptr;
}

namespace {
std::int64_t epoch_of(std::int64_t now, std::int64_t familiar_ms) { return now / std::max<std::int64_t>(1, familiar_ms); }
bool bit_set(const std::uint64_t* bits, std::uint16_t b) { return (bits[b / 64] >> (b % 64)) & 1; }
}  // namespace

novelty_value memory_store::novelty_of(const familiar_rec* f, const counter_spec& c, std::int64_t now,
                                       std::int64_t familiar_ms) {
  novelty_value v;
  // As of now's epoch: the stored epochs that are still the current one or the one before (a clock that stepped
  // back reads the filter as it is).
  const std::int64_t e = f ? std::max(epoch_of(now, familiar_ms), f->epoch) : 0;
  const std::uint64_t* cur = f && f->epoch == e ? f->bits[0] : nullptr;
  const std::uint64_t* prev = !f ? nullptr : f->epoch == e ? f->bits[1] : f->epoch == e - 1 ? f->bits[0] : nullptr;
  for (std::uint16_t b : c.novel)
    if (!(cur && bit_set(cur, b)) && !(prev && bit_set(prev, b))) ++v.added;
  if (f) {
    v.present = true;
    v.history_ms = std::max<std::int64_t>(0, now - f->first_ms);
  }
  return v;
}

void memory_store::learn(std::uint32_t n, const counter_spec& c, std::int64_t now, std::int64_t familiar_ms) {
  node& x = nodes_[n];
  const std::int64_t e = epoch_of(now, familiar_ms);
  familiar_rec* f = find_familiar(x);
  if (f == nullptr) {
    const layout l = layout_of(x);
    splice(x, l.signals, 0, sizeof(familiar_rec));
    f = &familiars_of(x)[x.familiars++];
    f->epoch = e;
    f->first_ms = now;
  } else if (e > f->epoch) {
    // A new epoch: the current one becomes the one before, or both are forgotten after a whole epoch unused.
    if (e == f->epoch + 1) std::memcpy(f->bits[1], f->bits[0], sizeof f->bits[0]);
    else std::memset(f->bits[1], 0, sizeof f->bits[1]);
    std::memset(f->bits[0], 0, sizeof f->bits[0]);
    f->epoch = e;
  }
  for (std::uint16_t b : c.novel) f->bits[0][b / 64] |= std::uint64_t{1} << (b % 64);
  x.expires_ms = std::max(x.expires_ms, now + 2 * familiar_ms);
}

// --- counting ------------------------------------------------------------------------------------------------

std::uint64_t memory_store::slot_count(const window_rec& w, std::size_t slot) const {
  if (!w.wide) return w.count[slot];
  std::uint32_t idx;
  std::memcpy(&idx, w.count, sizeof idx);
  return wide_[idx][slot];
}

// Every bucket of the window that is not older than buckets_per_window counts whole (store.hpp).
std::uint64_t memory_store::count(const window_rec& w, std::int64_t now) const {
  const std::int64_t cur = now / bucket_width_ms(w.window_s);
  const std::int64_t hi = std::min(cur, w.head);
  std::int64_t b = std::max<std::int64_t>(0, std::max(cur, w.head) - static_cast<std::int64_t>(buckets_per_window));
  if (b > hi) return 0;
  // The first slot computed once, then the ring walked.
  auto s = static_cast<std::size_t>(b % static_cast<std::int64_t>(slots));
  std::uint64_t n = 0;
  for (; b <= hi; ++b) {
    n += slot_count(w, s);
    if (++s == slots) s = 0;
  }
  return n;
}

void memory_store::charge(window_rec& w, std::int64_t cur, std::uint32_t cost) {
  const auto ring = static_cast<std::int64_t>(slots);
  std::uint64_t* wide = nullptr;
  if (w.wide) {
    std::uint32_t idx;
    std::memcpy(&idx, w.count, sizeof idx);
    wide = wide_[idx].data();
  }
  if (cur > w.head) {
    for (std::int64_t b = std::max(w.head + 1, cur - ring + 1); b <= cur; ++b) {
      const auto s = static_cast<std::size_t>(b % ring);
      if (wide) wide[s] = 0;
      else w.count[s] = 0;
    }
    w.head = cur;
  } else if (cur < w.head - static_cast<std::int64_t>(buckets_per_window)) {
    return;  // the clock stepped back more than a window: older than any bucket the ring holds or counts
  }
  const auto s = static_cast<std::size_t>(cur % ring);
  if (!wide && w.count[s] + static_cast<std::uint64_t>(cost) > 0xffff) {
    std::uint32_t idx;
    if (!wide_free_.empty()) {
      idx = wide_free_.back();
      wide_free_.pop_back();
    } else {
      idx = static_cast<std::uint32_t>(wide_.size());
      wide_.emplace_back();
    }
    for (std::size_t i = 0; i < slots; ++i) wide_[idx][i] = w.count[i];
    w.wide = 1;
    std::memcpy(w.count, &idx, sizeof idx);
    wide = wide_[idx].data();
  }
  if (wide) wide[s] += cost;
  else w.count[s] = static_cast<std::uint16_t>(w.count[s] + cost);
}

namespace {
// The baseline fold of store.hpp, for the periods last..period-1; `x` is the count of period `last`.
double fold_average(double average, std::int64_t last, std::int64_t first, std::int64_t period, double x,
                    double factor, std::uint64_t floor, double alpha) {
  if (period <= last) return average;
  x = std::min(x, std::max(factor * average, static_cast<double>(floor)));
  const double n = static_cast<double>(last - first + 1);
  average += (x - average) * std::max(alpha, 1.0 / n);
  const std::int64_t g = period - last - 1;
  const std::int64_t mean_phase = static_cast<std::int64_t>(std::floor(1.0 / alpha)) - (last - first + 1);
  const std::int64_t m = std::min(g, std::max<std::int64_t>(0, mean_phase));
  average = average * n / (n + static_cast<double>(m));
  return average * std::pow(1.0 - alpha, static_cast<double>(g - m));
}
}  // namespace

baseline_value memory_store::baseline_at(const window_rec& w, const baseline_rec& b, std::int64_t period, double factor,
                                         std::uint64_t floor, double alpha) const {
  // The count of period `last`: its buckets are among the ring's (a burst counter's charge moves last with head).
  std::uint64_t x = 0;
  const auto per = static_cast<std::int64_t>(buckets_per_window);
  for (std::int64_t k = w.head - per; k <= w.head; ++k)
    if (k >= 0 && k / per == b.last_period) x += slot_count(w, static_cast<std::size_t>(k % static_cast<std::int64_t>(slots)));
  baseline_value v;
  v.present = true;
  v.average = fold_average(b.average, b.last_period, b.first_period, period, static_cast<double>(x), factor, floor, alpha);
  v.history_ms = (period - b.first_period) * static_cast<std::int64_t>(w.window_s) * 1000;
  return v;
}

std::uint64_t memory_store::distinct(node& n, std::uint32_t signal_no, std::int64_t now) const {
  const signal_rec& s = signals_of(n)[signal_no];
  const std::int64_t cur = now / signal_width_ms(s.window_s);
  if (cur == s.head) return s.values;  // every entry is within head - 4 .. head
  const std::uint64_t* v = values_of(n, signal_no);
  std::uint64_t total = 0;
  for (std::uint32_t i = 0; i < s.values; ++i) {
    const std::int64_t b = entry_bucket(v[i], s.head);
    if (b >= cur - static_cast<std::int64_t>(signal_buckets) && b <= cur) ++total;
  }
  return total;
}

std::uint64_t memory_store::observe(std::uint32_t n, const signal_spec& sig, std::int64_t now, bool add) {
  node& x = nodes_[n];
  const std::int64_t width = signal_width_ms(sig.window_s);
  const std::int64_t cur = now / width;
  std::uint32_t k = 0;
  while (k < x.signals && !(signals_of(x)[k].tag == sig.tag && signals_of(x)[k].window_s == sig.window_s)) ++k;
  if (k == x.signals) {
    if (!add) return 0;
    const layout l = layout_of(x);
    splice(x, l.values, 0, sizeof(signal_rec));
    ++x.signals;
    signal_rec& s = signals_of(x)[k];
    s.head = cur;
    s.window_s = sig.window_s;
    s.tag = sig.tag;
  }
  if (!add) return distinct(x, k, now);
  const auto keep = static_cast<std::int64_t>(signal_buckets);
  if (cur > signals_of(x)[k].head) {
    // The quarter moved on: drop the values last seen before the 5 buckets that count from now on.
    signal_rec& s = signals_of(x)[k];
    std::uint64_t* v = values_of(x, k);
    std::uint32_t kept = 0;
    for (std::uint32_t i = 0; i < s.values; ++i)
      if (entry_bucket(v[i], s.head) >= cur - keep) v[kept++] = v[i];
    const std::uint32_t dropped = s.values - kept;
    s.head = cur;
    if (dropped > 0) {
      const std::size_t at = static_cast<std::size_t>(reinterpret_cast<std::byte*>(v + kept) - x.blob.get());
      splice(x, at, dropped * sizeof(std::uint64_t), 0);
      signals_of(x)[k].values = kept;
    }
  }
  if (cur >= signals_of(x)[k].head - keep) {  // else the clock stepped back past what is kept: not added
    const std::uint64_t h = (hash_of(sig.value) & ~std::uint64_t{7}) | (static_cast<std::uint64_t>(cur) & 7);
    signal_rec& s = signals_of(x)[k];
    std::uint64_t* v = values_of(x, k);
    std::uint64_t* pos = std::lower_bound(v, v + s.values, h, [](std::uint64_t a, std::uint64_t b) { return (a >> 3) < (b >> 3); });
    const bool known = pos != v + s.values && (*pos >> 3) == (h >> 3);
    // A flood of distinct values cannot grow a bucket past the cap (the count then stops rising, far above any
    // limit); the store.hpp ring kept one set per bucket, here a value moves to the bucket it was last seen in.
    std::uint32_t in_cur = 0;
    if (s.values >= signal_memory_cap)
      for (std::uint32_t i = 0; i < s.values; ++i) in_cur += entry_bucket(v[i], s.head) == cur;
    if (in_cur < signal_memory_cap) {
      if (known) {
        if (entry_bucket(*pos, s.head) < cur) *pos = h;
      } else {
        const std::size_t at = static_cast<std::size_t>(reinterpret_cast<std::byte*>(pos) - x.blob.get());
        std::byte* b = splice(x, at, 0, sizeof(std::uint64_t));
        std::memcpy(b + at, &h, sizeof h);
        ++signals_of(x)[k].values;
      }
    }
  }
  x.expires_ms = std::max(x.expires_ms, now + static_cast<std::int64_t>(sig.window_s) * 1000 + 2 * width);
  return distinct(x, k, now);
}

// --- check ---------------------------------------------------------------------------------------------------

store_result memory_store::check(const store_request& req) {
  const std::int64_t now = req.now_ms != 0 ? req.now_ms : now_ms();
  if (req.once.empty() || !req.charge) return check_counts(req, now);
  const std::uint64_t token = hash_of(req.once);
  if (charged_before(token, now)) {
    store_request read = req;
    read.charge = false;
    store_result res = check_counts(read, now);
    if (res.ok) mark_repeat(res, req);
    return res;
  }
  store_result res = check_counts(req, now);
  if (res.charged) remember_charge(token, now);
  return res;
}

bool memory_store::charged_before(std::uint64_t token, std::int64_t now) {
  while (!once_order_.empty() && (once_order_.front().first <= now || once_order_.size() > once_cap)) {
    const auto it = once_.find(once_order_.front().second);
    if (it != once_.end() && it->second == once_order_.front().first) once_.erase(it);
    once_order_.pop_front();
  }
  const auto it = once_.find(token);
  return it != once_.end() && it->second > now;
}

void memory_store::remember_charge(std::uint64_t token, std::int64_t now) {
  const std::int64_t until = now + charge_once_ttl.count();
  once_[token] = until;
  once_order_.emplace_back(until, token);
}

store_result memory_store::check_counts(const store_request& req, std::int64_t now) {
  next_epoch();
  sweep_step(now);

  store_result res;
  const auto full = [&res] {
    res.ok = false;
    res.charged = false;
    res.error = store_full;
    res.counts.clear();
    res.baselines.clear();
    res.distinct.clear();
    res.locks.clear();
    return res;
  };
  const auto note_lock = [&](const std::string& name, std::uint32_t n) {
    // Each locked identity once, however many of its counters and signals the request has.
    const lock_state* l = lock_in_force(n, now);
    if (l != nullptr &&
        std::none_of(res.locks.begin(), res.locks.end(), [&](const lock_info& x) { return x.identity == name; }))
      res.locks.push_back({name, l->since_ms, l->until_ms, l->reason});
  };
  // Consecutive counters and signals usually share their identity: look it up once.
  const std::string* last_id = nullptr;
  std::uint32_t last_node = none;
  const auto lookup = [&](const std::string& id) {
    if (last_id == nullptr || *last_id != id) {
      last_id = &id;
      last_node = find(id);
      if (last_node != none) touch(last_node, now);
    }
    return last_node;
  };
  res.counts.reserve(req.counters.size());
  if (std::any_of(req.counters.begin(), req.counters.end(), [](const counter_spec& c) { return c.burst_factor > 0; }))
    res.baselines.resize(req.counters.size());
  if (std::any_of(req.counters.begin(), req.counters.end(), [](const counter_spec& c) { return !c.novel.empty(); }))
    res.novelty.resize(req.counters.size());
  // Reading creates nothing; identities and windows are made when charged (or, for signals, observed). A counter
  // is remembered as its node (none: unknown); node indices are stable, and nothing this call touched is evicted.
  // On the stack for the usual handful of counters.
  std::array<std::uint32_t, 32> found_small;
  std::vector<std::uint32_t> found_big;
  std::uint32_t* const found = req.counters.size() <= found_small.size()
                                   ? found_small.data()
                                   : (found_big.resize(req.counters.size()), found_big.data());
  std::fill_n(found, req.counters.size(), none);
  bool allowed = true;
  for (std::size_t i = 0; i < req.counters.size(); ++i) {
    const counter_spec& c = req.counters[i];
    const std::uint32_t n = lookup(c.identity);
    found[i] = n;
    std::uint64_t cnt = 0;
    std::uint32_t cost = c.cost;
    if (live(n, now)) {
      node& x = nodes_[n];
      if (!c.novel.empty()) {
        res.novelty[i] = novelty_of(find_familiar(x), c, now, req.familiar_ms);
        cost = res.novelty[i].added;
      }
      if (const std::uint32_t wi = find_window(x, c.unit_tag, c.window_s); wi != none) {
        const window_rec& w = windows_of(x)[wi];
        cnt = count(w, now);
        if (c.burst_factor > 0)
          if (const baseline_rec* b = find_baseline(x, wi))
            res.baselines[i] = baseline_at(w, *b, now / bucket_width_ms(c.window_s) / buckets_per_window,
                                           c.burst_factor, c.burst_floor, baseline_alpha(c.window_s, req.half_life_ms));
      }
      note_lock(c.identity, n);
    } else if (!c.novel.empty()) {
      res.novelty[i] = novelty_of(nullptr, c, now, req.familiar_ms);
      cost = res.novelty[i].added;
    }
    res.counts.push_back(cnt);
    // A novelty limit refuses only once it applies (novelty_warm): before, the engine lets the request through.
    if (c.refuse_limit > 0 && cnt + cost > c.refuse_limit &&
        (c.novel.empty() || novelty_warm(res.novelty[i], req.warmup_ms)))
      allowed = false;
    if (c.refuse_factor > 0 && !res.baselines.empty() && baseline_warm(res.baselines[i], c.window_s, req.warmup_ms)) {
      const double trip = std::max(c.refuse_factor * res.baselines[i].average, static_cast<double>(c.refuse_floor));
      if (trip < 1e18 && static_cast<double>(cnt + cost) > std::floor(trip)) allowed = false;
    }
  }
  // Signals are observations: the value is added even when a limit refuses the request.
  res.distinct.reserve(req.signals.size());
  for (const signal_spec& sig : req.signals) {
    std::uint32_t n = lookup(sig.identity);
    if (req.charge) {
      n = ensure(sig.identity, n, now);
      if (n == none) return full();
      last_node = n;
    }
    std::uint64_t d = 0;
    if (req.charge || live(n, now)) {
      d = observe(n, sig, now, req.charge);
      note_lock(sig.identity, n);
    }
    res.distinct.push_back(d);
    if (sig.refuse_limit > 0 && d > sig.refuse_limit) allowed = false;
  }
  res.ok = true;
  res.charged = req.charge && allowed;
  if (!res.charged) return res;
  // Every identity first (creating one may evict another, so nothing is charged until all exist), then the writes.
  for (std::size_t i = 0; i < req.counters.size(); ++i) {
    const std::string& id = req.counters[i].identity;
    std::uint32_t n = found[i];
    if (n == none) n = i > 0 && req.counters[i - 1].identity == id ? found[i - 1] : find(id);
    n = ensure(id, n, now);
    if (n == none) return full();
    found[i] = n;
  }
  const std::int64_t keep = baseline_keep_ms(req.half_life_ms);
  for (std::size_t i = 0; i < req.counters.size(); ++i) {
    const counter_spec& c = req.counters[i];
    const std::uint32_t n = found[i];
    std::uint32_t cost = c.cost;
    if (!c.novel.empty()) {
      learn(n, c, now, req.familiar_ms);
      cost = res.novelty[i].added;
      if (cost == 0) continue;  // nothing new: no window to make or move (as Redis writes no bucket)
    }
    const std::int64_t width = bucket_width_ms(c.window_s);
    const std::int64_t cur = now / width;
    std::uint32_t wi = find_window(nodes_[n], c.unit_tag, c.window_s);
    if (wi == none) wi = add_window(n, c.unit_tag, c.window_s, cur);
    node& x = nodes_[n];
    if (c.burst_factor > 0) {
      const std::int64_t period = cur / buckets_per_window;
      baseline_rec* b = find_baseline(x, wi);
      if (b == nullptr) {
        const layout l = layout_of(x);
        splice(x, l.familiars, 0, sizeof(baseline_rec));
        b = &baselines_of(x)[x.baselines++];
        b->window_no = wi;
        b->first_period = period;
        b->last_period = period;
        b->average = 0;
        x.expires_ms = std::max(x.expires_ms, now + keep);
      } else if (period > b->last_period) {
        b->average = res.baselines[i].average;  // folded as of now, above
        b->last_period = period;
        x.expires_ms = std::max(x.expires_ms, now + keep);
      }
    }
    charge(windows_of(x)[wi], cur, cost);
    x.expires_ms = std::max(x.expires_ms, now + static_cast<std::int64_t>(c.window_s) * 1000 + 2 * width);
  }
  return res;
}

// --- operator commands ---------------------------------------------------------------------------------------

identity_state memory_store::state_of(std::uint32_t n, std::int64_t now) {
  node& x = nodes_[n];
  identity_state st;
  st.identity = std::string(key_of(x));
  const window_rec* w = windows_of(x);
  for (std::size_t i = 0; i < x.windows; ++i) st.windows.push_back({w[i].unit_tag, w[i].window_s, count(w[i], now)});
  std::sort(st.windows.begin(), st.windows.end(), [](const window_count& a, const window_count& b) {
    return std::pair(a.unit_tag, a.window_s) < std::pair(b.unit_tag, b.window_s);
  });
  const baseline_rec* bl = baselines_of(x);
  for (std::size_t i = 0; i < x.baselines; ++i) {
    const window_rec& bw = w[bl[i].window_no];
    baseline_value b;
    b.present = true;
    b.average = bl[i].average;
    b.history_ms = (now / bucket_width_ms(bw.window_s) / buckets_per_window - bl[i].first_period) *
                   static_cast<std::int64_t>(bw.window_s) * 1000;
    st.baselines.push_back({bw.unit_tag, bw.window_s, b});
  }
  std::sort(st.baselines.begin(), st.baselines.end(), [](const baseline_state& a, const baseline_state& b) {
    return std::pair(a.unit_tag, a.window_s) < std::pair(b.unit_tag, b.window_s);
  });
  for (std::uint32_t k = 0; k < x.signals; ++k)
    if (const auto d = distinct(x, k, now); d > 0)
      st.signals.push_back({signals_of(x)[k].tag, signals_of(x)[k].window_s, d});
  std::sort(st.signals.begin(), st.signals.end(), [](const signal_count& a, const signal_count& b) {
    return std::pair(a.tag, a.window_s) < std::pair(b.tag, b.window_s);
  });
  if (const lock_state* l = lock_in_force(n, now)) st.lock = lock_info{st.identity, l->since_ms, l->until_ms, l->reason};
  return st;
}

admin_result memory_store::admin(const admin_request& req) {
  const std::int64_t now = req.now_ms != 0 ? req.now_ms : now_ms();
  next_epoch();
  sweep_step(now);
  admin_result r;
  r.ok = true;
  switch (req.op) {
    case admin_op::status: {
      const std::uint32_t n = find(req.identity);
      if (live(n, now)) {
        r.identities.push_back(state_of(n, now));
      } else {
        r.identities.emplace_back().identity = req.identity;
      }
      break;
    }
    case admin_op::lock: {
      if (req.ttl_ms <= 0) return admin_result{false, "lock: ttl must be positive", {}, {}, {}, {}};
      const std::uint32_t n = ensure(req.identity, find(req.identity), now);
      if (n == none) return admin_result{false, std::string(store_full), {}, {}, {}, {}};
      if (lock_in_force(n, now) == nullptr) {
        node& x = nodes_[n];
        lock_state& l = locks_[n];
        l = lock_state{now, now + req.ttl_ms, std::string(cut_field(req.reason))};
        x.flags |= has_lock;
        x.expires_ms = std::max(x.expires_ms, l.until_ms);
        unlink(n);
        push_front(locked_, n);
        r.changed = true;
      }
      const lock_state& l = locks_.at(n);
      identity_state& st = r.identities.emplace_back();
      st.identity = req.identity;
      st.lock = lock_info{req.identity, l.since_ms, l.until_ms, l.reason};
      break;
    }
    case admin_op::release: {
      const std::uint32_t n = find(req.identity);
      if (live(n, now) && (nodes_[n].flags & has_lock)) {
        r.changed = lock_in_force(n, now) != nullptr;
        locks_.erase(n);
        nodes_[n].flags = static_cast<std::uint8_t>(nodes_[n].flags & ~has_lock);
        unlink(n);
        push_front(lru_, n);
      }
      break;
    }
    case admin_op::reset: {
      const std::uint32_t n = find(req.identity);
      r.changed = live(n, now);
      if (n != none) free_node(n);
      break;
    }
    case admin_op::top:
      r.identities = top(req, now, r.truncated);
      break;
    case admin_op::journal_add:
      journal_add(req.record, now);
      r.holds.push_back(journal_.back());
      journal_trim(journal_.back().time_ms);
      break;
    case admin_op::journal_read:
      r.holds = journal_read(req);
      break;
  }
  return r;
}

std::vector<identity_state> memory_store::top(const admin_request& req, std::int64_t now, bool& truncated) {
  std::vector<std::pair<std::uint64_t, std::uint32_t>> hits;
  std::size_t examined = 0;
  for (std::uint32_t n = 0; n < nodes_.size(); ++n) {
    node& x = nodes_[n];
    if (!(x.flags & in_use) || x.expires_ms <= now || !key_of(x).starts_with(req.prefix)) continue;
    if (++examined > top_scan_max) {
      truncated = true;
      break;
    }
    if (const std::uint32_t wi = find_window(x, req.unit_tag, req.window_s); wi != none)
      if (const auto c = count(windows_of(x)[wi], now); c > 0) hits.emplace_back(c, n);
  }
  const std::size_t k = std::min(req.limit, hits.size());
  std::partial_sort(hits.begin(), hits.begin() + static_cast<std::ptrdiff_t>(k), hits.end(), [&](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : key_of(nodes_[a.second]) < key_of(nodes_[b.second]);
  });
  std::vector<identity_state> out;
  out.reserve(k);
  for (std::size_t i = 0; i < k; ++i) {
    identity_state st;
    st.identity = std::string(key_of(nodes_[hits[i].second]));
    st.windows.push_back({req.unit_tag, req.window_s, hits[i].first});
    if (const lock_state* l = lock_in_force(hits[i].second, now))
      st.lock = lock_info{st.identity, l->since_ms, l->until_ms, l->reason};
    out.push_back(std::move(st));
  }
  return out;
}

// Ids follow a Redis stream's rule: "ms-seq", ms never going back (a clock that steps back keeps the last ms
// and counts seq up), so the ids of both stores sort and compare the same way.
void memory_store::journal_add(hold_record rec, std::int64_t now) {
  if (now > journal_last_ms_) {
    journal_last_ms_ = now;
    journal_last_seq_ = 0;
  } else {
    ++journal_last_seq_;
  }
  rec.time_ms = journal_last_ms_;
  rec.id = std::to_string(journal_last_ms_) + "-" + std::to_string(journal_last_seq_);
  for (std::string* f : {&rec.queue_id, &rec.instance, &rec.key, &rec.rule, &rec.reason, &rec.client, &rec.sender})
    f->resize(cut_field(*f).size());
  journal_.push_back(std::move(rec));
}

void memory_store::journal_trim(std::int64_t newest_ms) {
  while (journal_.size() > caps_.max_entries) journal_.pop_front();
  const std::int64_t oldest_kept = newest_ms - caps_.max_age.count();
  while (!journal_.empty() && journal_.front().time_ms < oldest_kept) journal_.pop_front();
}

std::vector<hold_record> memory_store::journal_read(const admin_request& req) const {
  std::vector<hold_record> out;
  for (auto it = journal_.rbegin(); it != journal_.rend() && out.size() < req.limit; ++it) {
    if (it->time_ms < req.since_ms) break;
    if (req.key.empty() || it->key == req.key) out.push_back(*it);
  }
  std::reverse(out.begin(), out.end());
  return out;
}

}  // namespace rg
