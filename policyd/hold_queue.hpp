// Postfix's hold queue in view: the number of messages in hold_queue_dir and the age of the oldest (by file
// modification time), sampled at start and then once a minute on a thread of its own, so a scan of a large
// queue never delays a policy answer. The results are handed to the event loop, which owns the metrics.
// Not here: reading or changing the messages (postsuper does that).
#pragma once

#include <boost/asio/io_context.hpp>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <string>
#include <thread>

#include "metrics.hpp"
#include "rate_limited_warning.hpp"

namespace rg {

// One look at the directory: every file below it (Postfix may hash the queue into subdirectories), up to
// `max_entries`.
struct hold_queue_sample {
  std::string error;          // not empty: the directory could not be read (the counts are not meaningful)
  std::size_t messages = 0;
  double oldest_age_s = 0;    // 0 when empty
  bool truncated = false;     // more than max_entries entries: messages is a lower bound
};
hold_queue_sample scan_hold_queue(const std::string& dir, std::size_t max_entries);

class hold_queue_sampler {
 public:
  // A queue of more entries than this is a disaster already; the scan stops there instead of taking minutes.
  static constexpr std::size_t max_entries = 200000;

  hold_queue_sampler(boost::asio::io_context& io, std::string dir, metrics::registry& reg);
  ~hold_queue_sampler();  // stops and joins the thread
  hold_queue_sampler(const hold_queue_sampler&) = delete;
  hold_queue_sampler& operator=(const hold_queue_sampler&) = delete;

 private:
  void run(std::stop_token stop);
  void publish(const hold_queue_sample& s);  // on the event loop

  boost::asio::io_context& io_;
  std::string dir_;
  metrics::gauge& messages_;
  metrics::gauge& oldest_;
  std::mutex mutex_;
  std::condition_variable_any wake_;
  rate_limited_warning warning_{std::chrono::hours(1)};
  std::jthread thread_;  // last: started once everything above exists, joined before it goes
};

}  // namespace rg
