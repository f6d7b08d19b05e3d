// In-process bucketed sliding windows: a ring of 13 buckets per identity, unit and window (with its adaptive
// baseline), exact sets for the distinct-value signals, a lock beside them, and the hold journal as a ring
// capped by length and age. Expired identities are swept at most
// every few seconds, and the number of identities is capped so a flood of made-up senders cannot grow
// memory without bound (past the cap the store answers with an error and the daemon applies on_store_error).
#include "memory_store.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>

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
}  // namespace

memory_store::memory_store(std::size_t max_keys, clock_fn clock, journal_caps caps)
    : max_keys_(max_keys), clock_(std::move(clock)), caps_(caps) {}

std::int64_t memory_store::now_ms() const {
  if (clock_) return clock_();
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void memory_store::start_check(store_request req, boost::asio::any_completion_handler<void(store_result)> done) {
  std::move(done)(check(req));
}

void memory_store::start_admin(admin_request req, boost::asio::any_completion_handler<void(admin_result)> done) {
  std::move(done)(admin(req));
}

void memory_store::sweep(std::int64_t now) {
  last_sweep_ms_ = now;
  std::erase_if(identities_, [now](const auto& kv) { return kv.second.expires_ms <= now; });
}

memory_store::identity* memory_store::live(const std::string& id, std::int64_t now) {
  const auto it = identities_.find(id);
  return it == identities_.end() || it->second.expires_ms <= now ? nullptr : &it->second;
}

memory_store::identity* memory_store::live_or_new(const std::string& id, std::int64_t now) {
  auto it = identities_.find(id);
  if (it == identities_.end()) {
    if (identities_.size() >= max_keys_) return nullptr;
    return &identities_.emplace(id, identity{}).first->second;
  }
  // Redis would have dropped the key by now: start afresh, not with its old windows and lock. (0: created by
  // this or a refused request and never charged; keep the windows a previous counter just added.)
  if (it->second.expires_ms != 0 && it->second.expires_ms <= now) it->second = identity{};
  return &it->second;
}

// Every bucket of the window that is not older than buckets_per_window counts whole (store.hpp).
std::uint64_t memory_store::count(const window_counter& w, std::int64_t now) {
  const std::int64_t cur = now / bucket_width_ms(w.window_s);
  std::uint64_t n = 0;
  for (std::size_t s = 0; s < slots; ++s)
    if (w.index[s] >= cur - static_cast<std::int64_t>(buckets_per_window) && w.index[s] <= cur) n += w.count[s];
  return n;
}

const memory_store::lock_state* memory_store::lock_in_force(const identity& i, std::int64_t now) {
  return i.lock && i.lock->until_ms > now ? &*i.lock : nullptr;
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

baseline_value memory_store::baseline_at(const window_counter& w, std::int64_t period, double factor,
                                         std::uint64_t floor, double alpha) {
  std::uint64_t x = 0;
  for (std::size_t s = 0; s < slots; ++s)
    if (w.index[s] >= 0 && w.index[s] / static_cast<std::int64_t>(buckets_per_window) == w.last_period) x += w.count[s];
  baseline_value b;
  b.present = true;
  b.average =
      fold_average(w.average, w.last_period, w.first_period, period, static_cast<double>(x), factor, floor, alpha);
  b.history_ms = (period - w.first_period) * static_cast<std::int64_t>(w.window_s) * 1000;
  return b;
}

std::uint64_t memory_store::distinct(const signal_state& s, std::int64_t now) {
  const std::int64_t cur = now / signal_width_ms(s.window_s);
  const std::unordered_set<std::string>* live_sets[signal_slots];
  std::size_t n = 0;
  for (std::size_t i = 0; i < signal_slots; ++i)
    if (s.index[i] >= cur - static_cast<std::int64_t>(signal_buckets) && s.index[i] <= cur && !s.values[i].empty())
      live_sets[n++] = &s.values[i];
  if (n == 0) return 0;
  std::size_t biggest = 0;
  for (std::size_t i = 1; i < n; ++i)
    if (live_sets[i]->size() > live_sets[biggest]->size()) biggest = i;
  // The union: the biggest set whole, plus what the others have that no earlier set has.
  std::uint64_t total = live_sets[biggest]->size();
  for (std::size_t i = 0; i < n; ++i) {
    if (i == biggest) continue;
    for (const std::string& v : *live_sets[i]) {
      bool seen = live_sets[biggest]->contains(v);
      for (std::size_t j = 0; j < i && !seen; ++j) seen = j != biggest && live_sets[j]->contains(v);
      if (!seen) ++total;
    }
  }
  return total;
}

std::uint64_t memory_store::observe(identity& id, const signal_spec& sig, std::int64_t now, bool add) {
  auto it = std::find_if(id.signals.begin(), id.signals.end(),
                         [&](const signal_state& x) { return x.tag == sig.tag && x.window_s == sig.window_s; });
  if (it == id.signals.end()) {
    if (!add) return 0;
    signal_state fresh{sig.tag, sig.window_s, {}, {}};
    fresh.index.fill(-1);
    id.signals.push_back(std::move(fresh));
    it = std::prev(id.signals.end());
  }
  if (add) {
    const std::int64_t width = signal_width_ms(sig.window_s);
    const std::int64_t cur = now / width;
    const std::size_t slot = static_cast<std::size_t>(cur % static_cast<std::int64_t>(signal_slots));
    if (it->index[slot] != cur) {
      it->index[slot] = cur;
      it->values[slot].clear();
    }
    // A flood of distinct values cannot grow a set past the cap (the count then stops rising, far above any limit).
    if (it->values[slot].size() < signal_memory_cap) it->values[slot].insert(sig.value);
    id.expires_ms = std::max(id.expires_ms, now + static_cast<std::int64_t>(sig.window_s) * 1000 + 2 * width);
  }
  return distinct(*it, now);
}

store_result memory_store::check(const store_request& req) {
  const std::int64_t now = req.now_ms != 0 ? req.now_ms : now_ms();
  if (now - last_sweep_ms_ > 5000 || identities_.size() >= max_keys_) sweep(now);

  store_result res;
  const auto full = [&res] {
    res.error = store_full;
    res.counts.clear();
    res.baselines.clear();
    res.distinct.clear();
    res.locks.clear();
    return res;
  };
  const auto note_lock = [&](const std::string& name, const identity& id) {
    // Each locked identity once, however many of its counters and signals the request has.
    const lock_state* l = lock_in_force(id, now);
    if (l != nullptr &&
        std::none_of(res.locks.begin(), res.locks.end(), [&](const lock_info& x) { return x.identity == name; }))
      res.locks.push_back({name, l->since_ms, l->until_ms, l->reason});
  };
  res.counts.reserve(req.counters.size());
  if (std::any_of(req.counters.begin(), req.counters.end(), [](const counter_spec& c) { return c.burst_factor > 0; }))
    res.baselines.resize(req.counters.size());
  // Find (or, when charging, create) each counter; reading never creates state. A counter is remembered as
  // (identity, window index): map nodes never move and indices survive a window vector's growth.
  std::vector<std::pair<identity*, std::size_t>> found(req.counters.size(), {nullptr, 0});
  bool allowed = true;
  for (std::size_t i = 0; i < req.counters.size(); ++i) {
    const counter_spec& c = req.counters[i];
    identity* id = req.charge ? live_or_new(c.identity, now) : live(c.identity, now);
    if (id == nullptr && req.charge) return full();
    std::uint64_t n = 0;
    if (id != nullptr) {
      auto& windows = id->windows;
      auto w = std::find_if(windows.begin(), windows.end(),
                            [&](const window_counter& x) { return x.unit_tag == c.unit_tag && x.window_s == c.window_s; });
      if (w == windows.end() && req.charge) {
        window_counter fresh{c.unit_tag, c.window_s, {}, {}, false, 0, 0, 0};
        fresh.index.fill(-1);
        windows.push_back(fresh);
        w = std::prev(windows.end());
      }
      if (w != windows.end()) {
        found[i] = {id, static_cast<std::size_t>(w - windows.begin())};
        n = count(*w, now);
        if (c.burst_factor > 0 && w->has_baseline)
          res.baselines[i] = baseline_at(*w, now / bucket_width_ms(c.window_s) / buckets_per_window, c.burst_factor,
                                         c.burst_floor, baseline_alpha(c.window_s, req.half_life_ms));
      }
      note_lock(c.identity, *id);
    }
    res.counts.push_back(n);
    if (c.refuse_limit > 0 && n + c.cost > c.refuse_limit) allowed = false;
  }
  // Signals are observations: the value is added even when a limit refuses the request.
  res.distinct.reserve(req.signals.size());
  for (const signal_spec& sig : req.signals) {
    identity* id = req.charge ? live_or_new(sig.identity, now) : live(sig.identity, now);
    if (id == nullptr && req.charge) return full();
    const std::uint64_t n = id != nullptr ? observe(*id, sig, now, req.charge) : 0;
    if (id != nullptr) note_lock(sig.identity, *id);
    res.distinct.push_back(n);
    if (sig.refuse_limit > 0 && n > sig.refuse_limit) allowed = false;
  }
  res.ok = true;
  res.charged = req.charge && allowed;
  if (!res.charged) return res;
  const std::int64_t keep = baseline_keep_ms(req.half_life_ms);
  for (std::size_t i = 0; i < req.counters.size(); ++i) {
    const counter_spec& c = req.counters[i];
    auto [id, wi] = found[i];
    window_counter& w = id->windows[wi];
    const std::int64_t width = bucket_width_ms(c.window_s);
    const std::int64_t cur = now / width;
    if (c.burst_factor > 0) {
      const std::int64_t period = cur / buckets_per_window;
      if (!w.has_baseline || period > w.last_period) {
        w.average = w.has_baseline ? res.baselines[i].average : 0.0;  // folded as of now, above
        if (!w.has_baseline) w.first_period = period;
        w.has_baseline = true;
        w.last_period = period;
        id->expires_ms = std::max(id->expires_ms, now + keep);
      }
    }
    const std::size_t slot = static_cast<std::size_t>(cur % static_cast<std::int64_t>(slots));
    if (w.index[slot] != cur) {
      w.index[slot] = cur;
      w.count[slot] = 0;
    }
    w.count[slot] += c.cost;
    id->expires_ms = std::max(id->expires_ms, now + static_cast<std::int64_t>(c.window_s) * 1000 + 2 * width);
  }
  return res;
}

// --- operator commands ---------------------------------------------------------------------------------------

identity_state memory_store::state_of(const std::string& id, const identity& i, std::int64_t now) {
  identity_state st;
  st.identity = id;
  for (const auto& w : i.windows) {
    // A window created by a refused request was never charged: Redis has no field for it either.
    if (std::all_of(w.index.begin(), w.index.end(), [](std::int64_t x) { return x < 0; })) continue;
    st.windows.push_back({w.unit_tag, w.window_s, count(w, now)});
  }
  std::sort(st.windows.begin(), st.windows.end(), [](const window_count& a, const window_count& b) {
    return std::pair(a.unit_tag, a.window_s) < std::pair(b.unit_tag, b.window_s);
  });
  for (const auto& w : i.windows) {
    if (!w.has_baseline) continue;
    baseline_value b;
    b.present = true;
    b.average = w.average;
    b.history_ms = (now / bucket_width_ms(w.window_s) / buckets_per_window - w.first_period) *
                   static_cast<std::int64_t>(w.window_s) * 1000;
    st.baselines.push_back({w.unit_tag, w.window_s, b});
  }
  std::sort(st.baselines.begin(), st.baselines.end(), [](const baseline_state& a, const baseline_state& b) {
    return std::pair(a.unit_tag, a.window_s) < std::pair(b.unit_tag, b.window_s);
  });
  for (const auto& sig : i.signals)
    if (const auto n = distinct(sig, now); n > 0) st.signals.push_back({sig.tag, sig.window_s, n});
  std::sort(st.signals.begin(), st.signals.end(), [](const signal_count& a, const signal_count& b) {
    return std::pair(a.tag, a.window_s) < std::pair(b.tag, b.window_s);
  });
  if (const lock_state* l = lock_in_force(i, now)) st.lock = lock_info{id, l->since_ms, l->until_ms, l->reason};
  return st;
}

admin_result memory_store::admin(const admin_request& req) {
  const std::int64_t now = req.now_ms != 0 ? req.now_ms : now_ms();
  if (now - last_sweep_ms_ > 5000 || identities_.size() >= max_keys_) sweep(now);
  admin_result r;
  r.ok = true;
  switch (req.op) {
    case admin_op::status: {
      const identity* i = live(req.identity, now);
      if (i != nullptr) {
        r.identities.push_back(state_of(req.identity, *i, now));
      } else {
        r.identities.emplace_back().identity = req.identity;
      }
      break;
    }
    case admin_op::lock: {
      if (req.ttl_ms <= 0) return admin_result{false, "lock: ttl must be positive", {}, {}, {}, {}};
      identity* i = live_or_new(req.identity, now);
      if (i == nullptr) return admin_result{false, std::string(store_full), {}, {}, {}, {}};
      if (lock_in_force(*i, now) == nullptr) {
        i->lock = lock_state{now, now + req.ttl_ms, std::string(cut_field(req.reason))};
        i->expires_ms = std::max(i->expires_ms, i->lock->until_ms);
        r.changed = true;
      }
      identity_state& st = r.identities.emplace_back();
      st.identity = req.identity;
      st.lock = lock_info{req.identity, i->lock->since_ms, i->lock->until_ms, i->lock->reason};
      break;
    }
    case admin_op::release: {
      identity* i = live(req.identity, now);
      if (i != nullptr && i->lock) {
        r.changed = lock_in_force(*i, now) != nullptr;
        i->lock.reset();
      }
      break;
    }
    case admin_op::reset:
      r.changed = live(req.identity, now) != nullptr;
      identities_.erase(req.identity);
      break;
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

std::vector<identity_state> memory_store::top(const admin_request& req, std::int64_t now, bool& truncated) const {
  std::vector<std::pair<std::uint64_t, const std::string*>> hits;
  std::size_t examined = 0;
  for (const auto& [id, i] : identities_) {
    if (!id.starts_with(req.prefix) || i.expires_ms <= now) continue;
    if (++examined > top_scan_max) {
      truncated = true;
      break;
    }
    for (const auto& w : i.windows) {
      if (w.unit_tag != req.unit_tag || w.window_s != req.window_s) continue;
      if (const auto n = count(w, now); n > 0) hits.emplace_back(n, &id);
    }
  }
  const std::size_t n = std::min(req.limit, hits.size());
  std::partial_sort(hits.begin(), hits.begin() + static_cast<std::ptrdiff_t>(n), hits.end(),
                    [](const auto& a, const auto& b) { return a.first != b.first ? a.first > b.first : *a.second < *b.second; });
  std::vector<identity_state> out;
  out.reserve(n);
  for (std::size_t k = 0; k < n; ++k) {
    const identity& i = identities_.at(*hits[k].second);
    identity_state st;
    st.identity = *hits[k].second;
    st.windows.push_back({req.unit_tag, req.window_s, hits[k].first});
    if (const lock_state* l = lock_in_force(i, now)) st.lock = lock_info{st.identity, l->since_ms, l->until_ms, l->reason};
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
