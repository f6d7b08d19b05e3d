// The hold queue scan (std::filesystem, bounded) and its thread: a first sample at once, then one a minute
// until the daemon stops.
#include "hold_queue.hpp"

#include <boost/asio/post.hpp>
#include <chrono>
#include <filesystem>
#include <spdlog/spdlog.h>

namespace rg {

namespace fs = std::filesystem;

hold_queue_sample scan_hold_queue(const std::string& dir, std::size_t max_entries) {
  hold_queue_sample s;
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, ec), end;
  if (ec) {
    s.error = ec.message();
    return s;
  }
  const auto now = fs::file_time_type::clock::now();
  std::size_t seen = 0;
  for (; it != end; it.increment(ec)) {
    if (ec) {
      s.error = ec.message();
      return s;
    }
    if (++seen > max_entries) {
      s.truncated = true;
      break;
    }
    std::error_code fe;
    if (!it->is_regular_file(fe)) continue;
    const auto mtime = it->last_write_time(fe);
    if (fe) continue;  // gone meanwhile: released or deleted
    ++s.messages;
    s.oldest_age_s = std::max(s.oldest_age_s, std::chrono::duration<double>(now - mtime).count());
  }
  return s;
}

hold_queue_sampler::hold_queue_sampler(boost::asio::io_context& io, std::string dir, metrics::registry& reg)
    : io_(io), dir_(std::move(dir)),
      messages_(reg.add_gauge("rateguard_hold_queue_messages",
                              "Messages in Postfix's hold queue (hold_queue_dir), sampled once a minute; -1: "
                              "the directory could not be read")),
      oldest_(reg.add_gauge("rateguard_hold_queue_oldest_age_seconds",
                            "Age of the oldest message in Postfix's hold queue, by its file's modification time")),
      thread_([this](std::stop_token stop) { run(stop); }) {}

hold_queue_sampler::~hold_queue_sampler() {
  thread_.request_stop();  // wakes the wait below
}

void hold_queue_sampler::run(std::stop_token stop) {
  std::unique_lock lock(mutex_);
  while (!stop.stop_requested()) {
    lock.unlock();
    hold_queue_sample s = scan_hold_queue(dir_, max_entries);
    boost::asio::post(io_, [this, s = std::move(s)] { publish(s); });
    lock.lock();
    wake_.wait_for(lock, stop, std::chrono::minutes(1), [] { return false; });
  }
}

void hold_queue_sampler::publish(const hold_queue_sample& s) {
  if (!s.error.empty()) {
    messages_.set(-1);
    warning_.warn("hold_queue_dir {}: cannot read it: {} (Postfix keeps it mode 0700: see README, \"Postfix's hold "
                  "queue\")",
                  dir_, s.error);
    return;
  }
  if (s.truncated)
    warning_.warn("hold_queue_dir {}: more than {} entries: counted only the first ones", dir_, max_entries);
  messages_.set(static_cast<double>(s.messages));
  oldest_.set(s.oldest_age_s);
}

}  // namespace rg
