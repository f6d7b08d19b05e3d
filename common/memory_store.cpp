// In-process bucketed sliding windows: a ring of 13 buckets per identity, unit and window. Expired
// identities are swept at most every few seconds, and the number of identities is capped so a flood of
// made-up senders cannot grow memory without bound (past the cap the store answers with an error and the
// daemon applies on_store_error).
#include "memory_store.hpp"

#include <algorithm>
#include <chrono>

namespace rg {

namespace {
std::int64_t bucket_width_ms(std::uint32_t window_s) {
  return std::max<std::int64_t>(1, static_cast<std::int64_t>(window_s) * 1000 / buckets_per_window);
}
}  // namespace

memory_store::memory_store(std::size_t max_keys, clock_fn clock) : max_keys_(max_keys), clock_(std::move(clock)) {}

std::int64_t memory_store::now_ms() const {
  if (clock_) return clock_();
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void memory_store::start_check(store_request req, boost::asio::any_completion_handler<void(store_result)> done) {
  std::move(done)(check(req));
}

void memory_store::sweep(std::int64_t now) {
  last_sweep_ms_ = now;
  std::erase_if(identities_, [now](const auto& kv) { return kv.second.expires_ms <= now; });
}

store_result memory_store::check(const store_request& req) {
  const std::int64_t now = req.now_ms != 0 ? req.now_ms : now_ms();
  if (now - last_sweep_ms_ > 5000 || identities_.size() >= max_keys_) sweep(now);

  store_result res;
  res.counts.reserve(req.counters.size());
  // Find (or, when charging, create) each counter; reading never creates state. A counter is remembered as
  // (identity, window index): map nodes never move and indices survive a window vector's growth.
  std::vector<std::pair<identity*, std::size_t>> found(req.counters.size(), {nullptr, 0});
  bool allowed = true;
  for (std::size_t i = 0; i < req.counters.size(); ++i) {
    const counter_spec& c = req.counters[i];
    auto it = identities_.find(c.identity);
    if (it == identities_.end() && req.charge) {
      if (identities_.size() >= max_keys_) {
        res.error = "memory store full (memory_max_keys)";
        res.counts.clear();
        return res;
      }
      it = identities_.emplace(c.identity, identity{}).first;
    }
    std::uint64_t count = 0;
    if (it != identities_.end()) {
      auto& windows = it->second.windows;
      auto w = std::find_if(windows.begin(), windows.end(),
                            [&](const window_counter& x) { return x.unit_tag == c.unit_tag && x.window_s == c.window_s; });
      if (w == windows.end() && req.charge) {
        window_counter fresh{c.unit_tag, c.window_s, {}, {}};
        fresh.index.fill(-1);
        windows.push_back(fresh);
        w = std::prev(windows.end());
      }
      if (w != windows.end()) {
        found[i] = {&it->second, static_cast<std::size_t>(w - windows.begin())};
        const std::int64_t cur = now / bucket_width_ms(c.window_s);
        for (std::size_t s = 0; s < slots; ++s)
          if (w->index[s] >= cur - static_cast<std::int64_t>(buckets_per_window) && w->index[s] <= cur) count += w->count[s];
      }
    }
    res.counts.push_back(count);
    if (c.refuse_limit > 0 && count + c.cost > c.refuse_limit) allowed = false;
  }
  res.ok = true;
  res.charged = req.charge && allowed;
  if (!res.charged) return res;
  for (std::size_t i = 0; i < req.counters.size(); ++i) {
    const counter_spec& c = req.counters[i];
    auto [id, wi] = found[i];
    window_counter& w = id->windows[wi];
    const std::int64_t width = bucket_width_ms(c.window_s);
    const std::int64_t cur = now / width;
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

// Placeholder until the admin operations land (branch store-admin): every command fails cleanly.
void memory_store::start_admin(admin_request, boost::asio::any_completion_handler<void(admin_result)> done) {
  admin_result r;
  r.error = "not implemented yet";
  std::move(done)(std::move(r));
}

}  // namespace rg
