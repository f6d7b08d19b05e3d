// The embedded counter store: bucketed sliding windows in this process, for one box and quick starts.
// Same semantics as the Redis script (see store.hpp); nothing is shared with other nodes or survives a
// restart. Single-threaded: call it from the event loop only.
#pragma once

#include <array>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "store.hpp"

namespace rg {

class memory_store final : public store {
 public:
  using clock_fn = std::function<std::int64_t()>;  // milliseconds since the epoch

  explicit memory_store(std::size_t max_keys = 1000000, clock_fn clock = {});

  std::string name() const override { return "memory"; }
  // The synchronous core (the async entry point just calls it).
  store_result check(const store_request& req);
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
  };
  struct identity {
    std::vector<window_counter> windows;
    std::int64_t expires_ms = 0;
  };

  std::int64_t now_ms() const;
  void sweep(std::int64_t now);

  std::size_t max_keys_;
  clock_fn clock_;
  std::unordered_map<std::string, identity> identities_;
  std::int64_t last_sweep_ms_ = 0;
};

}  // namespace rg
