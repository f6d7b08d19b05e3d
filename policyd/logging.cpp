// Sink selection and the Postfix style line layout. Syslog and journald add their own time stamp and
// program name; a log file gets the syslog layout so it reads like mail.log.
#include "logging.hpp"

#include <syslog.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>

namespace rg {

namespace {

spdlog::level::level_enum level_of(const std::string& log_level) {
  return log_level == "debug" ? spdlog::level::debug : log_level == "warning" ? spdlog::level::warn : spdlog::level::info;
}

// %* -> "warning: ", "error: ", "fatal: " or nothing, like Postfix's msg_warn/msg_error/msg_fatal.
class severity_flag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& m, const std::tm&, spdlog::memory_buf_t& dest) override {
    std::string_view p;
    switch (m.level) {
      case spdlog::level::warn: p = "warning: "; break;
      case spdlog::level::err: p = "error: "; break;
      case spdlog::level::critical: p = "fatal: "; break;
      case spdlog::level::debug:
      case spdlog::level::trace: p = "debug: "; break;
      default: break;
    }
    dest.append(p.data(), p.data() + p.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<severity_flag>(); }
};

int facility(const std::string& name) {
  static const std::pair<const char*, int> table[] = {
      {"mail", LOG_MAIL},     {"daemon", LOG_DAEMON}, {"user", LOG_USER},     {"local0", LOG_LOCAL0},
      {"local1", LOG_LOCAL1}, {"local2", LOG_LOCAL2}, {"local3", LOG_LOCAL3}, {"local4", LOG_LOCAL4},
      {"local5", LOG_LOCAL5}, {"local6", LOG_LOCAL6}, {"local7", LOG_LOCAL7}};
  for (auto& [n, f] : table)
    if (name == n) return f;
  return LOG_MAIL;
}

std::unique_ptr<spdlog::formatter> formatter(const std::string& pattern) {
  auto f = std::make_unique<spdlog::pattern_formatter>();
  f->add_flag<severity_flag>('*').set_pattern(pattern);
  return f;
}

std::FILE* open_append(const std::string& path, std::string& error) {
  std::FILE* f = std::fopen(path.c_str(), "ae");  // "e": O_CLOEXEC
  if (!f) error = path + ": " + std::strerror(errno);
  return f;
}

}  // namespace

reopenable_file_sink::reopenable_file_sink(std::string path) : path_(std::move(path)) {
  std::string error;
  file_ = open_append(path_, error);
  if (!file_) throw spdlog::spdlog_ex("cannot open " + error);
}

reopenable_file_sink::~reopenable_file_sink() {
  if (file_) std::fclose(file_);
}

std::string reopenable_file_sink::reopen() {
  std::string error;
  std::FILE* fresh = open_append(path_, error);
  if (!fresh) return error;
  std::lock_guard lock(mutex_);
  std::fclose(file_);
  file_ = fresh;
  return {};
}

void reopenable_file_sink::sink_it_(const spdlog::details::log_msg& msg) {
  spdlog::memory_buf_t line;
  formatter_->format(msg, line);
  std::fwrite(line.data(), 1, line.size(), file_);
}

void reopenable_file_sink::flush_() { std::fflush(file_); }

log_setup setup_logging(const daemon_config& c) {
  spdlog::sink_ptr sink;
  std::shared_ptr<reopenable_file_sink> file;
  std::string pattern = "%*%v";
  if (c.log_target == "syslog") {
    sink = std::make_shared<spdlog::sinks::syslog_sink_mt>(c.syslog_name, LOG_PID, facility(c.syslog_facility),
                                                           /*enable_formatting=*/true);
  } else if (c.log_target.rfind("file:", 0) == 0) {
    file = std::make_shared<reopenable_file_sink>(c.log_target.substr(5));
    sink = file;
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    pattern = "%b %d %H:%M:%S " + std::string(host) + " " + c.syslog_name + "[%P]: %*%v";
  } else {
    sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    // Under systemd, journald stamps time and unit; elsewhere a time stamp helps.
    if (!std::getenv("JOURNAL_STREAM")) pattern = "%Y-%m-%d %H:%M:%S.%e " + c.syslog_name + "[%P]: %*%v";
  }
  sink->set_formatter(formatter(pattern));
  auto logger = std::make_shared<spdlog::logger>(c.syslog_name, sink);
  logger->set_level(level_of(c.log_level));
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
  return {logger, file};
}

void apply_log_level(const std::string& log_level) { spdlog::default_logger()->set_level(level_of(log_level)); }

}  // namespace rg
