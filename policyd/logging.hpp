// Log sinks for the daemon and rateguardctl: stderr (journald), syslog (facility mail by default) or a
// file, Postfix style severity prefixes ("warning: ", "fatal: "). Formatting of decisions is elsewhere.
#pragma once

#include <memory>
#include <spdlog/logger.h>

#include "config.hpp"

namespace rg {

// Builds the logger described by the config and makes it spdlog's default. Throws spdlog::spdlog_ex when a
// log file cannot be opened.
std::shared_ptr<spdlog::logger> setup_logging(const daemon_config& c);
// log_level on the running logger (a reload applies it).
void apply_log_level(const std::string& log_level);

}  // namespace rg
