// Interval figures as differences of the service's monotonic totals.
#include "daemon_stats.hpp"

#include "metrics.hpp"

namespace rg {

namespace {
std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}
}  // namespace

daemon_stats::daemon_stats(const policy_service& service, server& srv)
    : service_(service), srv_(srv), since_ms_(now_ms()), base_(service.counts()) {}

stats_figures daemon_stats::figures(bool restart) {
  const service_counts now = service_.counts();
  stats_figures f;
  f.since_ms = since_ms_;
  f.uptime_s = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started_).count();
  f.requests = now.requests - base_.requests;
  for (const auto& [action_name, n] : now.decisions) {
    const auto was = base_.decisions.find(action_name);
    if (const auto d = n - (was == base_.decisions.end() ? 0 : was->second); d > 0) f.decisions[action_name] = d;
  }
  std::vector<std::uint64_t> buckets = now.store_buckets;
  for (std::size_t i = 0; i < buckets.size() && i < base_.store_buckets.size(); ++i) buckets[i] -= base_.store_buckets[i];
  f.store_p99_s = metrics::bucket_quantile(policy_service::store_latency_bounds(), buckets, 0.99);
  f.connections = srv_.connections();
  f.peak_connections = srv_.peak_connections();
  f.locks_set = now.locks_set - base_.locks_set;
  f.holds_journaled = now.holds_journaled - base_.holds_journaled;
  if (restart) {
    base_ = now;
    since_ms_ = now_ms();
    srv_.restart_peak();
  }
  return f;
}

}  // namespace rg
