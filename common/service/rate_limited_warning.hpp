// One kind of warning logged at most once per interval, with a count of the ones left out: a flood (of
// connections, refused clients, store errors) must not turn into a log flood. Used by the fronts and the
// policy service; single-threaded like the event loop that owns it. Not a general rate limiter.
#pragma once

#include <chrono>
#include <cstdint>
#include <spdlog/spdlog.h>
#include <utility>

namespace rg {

class rate_limited_warning {
 public:
  using clock = std::chrono::steady_clock;

  explicit rate_limited_warning(clock::duration interval = std::chrono::seconds(1)) : interval_(interval) {}

  // Whether a line may be logged now (and the interval starts again); when not, the line is counted as
  // left out. The first call always allows one.
  bool ready(clock::time_point now = clock::now()) {
    if (logged_ && now - last_ < interval_) {
      ++pending_;
      return false;
    }
    logged_ = true;
    last_ = now;
    suppressed_ = std::exchange(pending_, 0);
    return true;
  }

  // After ready() returned true: how many lines were left out between the previous line and this one.
  std::uint64_t suppressed() const { return suppressed_; }

  // Logs the warning if ready(); the arguments are formatted only then.
  template <typename... Args>
  void warn(spdlog::format_string_t<Args...> fmt, Args&&... args) {
    if (ready()) spdlog::warn(fmt, std::forward<Args>(args)...);
  }

 private:
  clock::duration interval_;
  clock::time_point last_{};
  bool logged_ = false;
  std::uint64_t pending_ = 0, suppressed_ = 0;
};

}  // namespace rg
