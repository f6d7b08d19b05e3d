// The figures of `rateguardctl stats` and of the stats line, per interval: what the service and the fronts
// counted since the last stats line (or the start). Reads their totals and keeps the interval's start; it
// counts nothing itself.
#pragma once

#include <chrono>
#include <cstdint>

#include "control.hpp"
#include "policy_service.hpp"
#include "server.hpp"

namespace rg {

class daemon_stats {
 public:
  daemon_stats(const policy_service& service, server& srv);
  // The figures since the interval began; with `restart`, the next interval begins now (the stats line).
  stats_figures figures(bool restart);

 private:
  const policy_service& service_;
  server& srv_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::int64_t since_ms_;
  service_counts base_;  // the totals when the interval began
};

}  // namespace rg
