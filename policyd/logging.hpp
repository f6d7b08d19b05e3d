// Log sinks for the daemon and rateguardctl: stderr (journald), syslog (facility mail by default) or a
// file that can be reopened after logrotate renamed it (SIGUSR1), Postfix style severity prefixes
// ("warning: ", "fatal: "). Formatting of decisions is elsewhere.
#pragma once

#include <cstdio>
#include <memory>
#include <mutex>
#include <spdlog/logger.h>
#include <spdlog/sinks/base_sink.h>
#include <string>

#include "config.hpp"

namespace rg {

// log_target = file:PATH. Appends to PATH; reopen() opens PATH anew (after a rename by logrotate) and
// switches to it only once it is open, so a failed reopen (the daemon, no longer root, may not create files
// in a root-owned directory: logrotate's `create` makes the new file for it) keeps the old file and loses
// nothing. Every line is flushed as it is written.
class reopenable_file_sink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  // Throws spdlog::spdlog_ex when the file cannot be opened.
  explicit reopenable_file_sink(std::string path);
  ~reopenable_file_sink() override;
  reopenable_file_sink(const reopenable_file_sink&) = delete;
  reopenable_file_sink& operator=(const reopenable_file_sink&) = delete;
  // "" when the file was reopened; otherwise why not (the old file stays in use).
  std::string reopen();
  const std::string& path() const { return path_; }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override;
  void flush_() override;

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

struct log_setup {
  std::shared_ptr<spdlog::logger> logger;
  std::shared_ptr<reopenable_file_sink> file;  // set for log_target = file: only
};

// Builds the logger described by the config and makes it spdlog's default. Throws spdlog::spdlog_ex when a
// log file cannot be opened.
log_setup setup_logging(const daemon_config& c);
// log_level on the running logger (a reload applies it).
void apply_log_level(const std::string& log_level);

}  // namespace rg
