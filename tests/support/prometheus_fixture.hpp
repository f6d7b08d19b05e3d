// Test fixture: Debian's real prometheus on a free loopback port with its own config and data directory,
// scraping the targets given every second; started and killed by PID (never the system's prometheus
// service). Also a bounded HTTP GET on loopback, for the daemon's /metrics and /healthz and Prometheus's API.
#pragma once

#include <chrono>
#include <string>
#include <sys/types.h>
#include <vector>

namespace rg::test {

struct http_reply {
  int status = 0;  // 0: no answer (refused, closed, timed out)
  std::string content_type, body;
};

// GET http://127.0.0.1:PORT/TARGET, bounded by `timeout` as a whole.
http_reply http_get(unsigned short port, const std::string& target,
                    std::chrono::milliseconds timeout = std::chrono::seconds(10));

class prometheus_process {
 public:
  // Scrapes `targets` ("127.0.0.1:PORT") every second; `rule_files` are loaded too (and must be valid).
  // Waits (bounded) until it is ready; throws with its log if it is not.
  explicit prometheus_process(const std::vector<std::string>& targets, const std::vector<std::string>& rule_files = {});
  ~prometheus_process();
  prometheus_process(const prometheus_process&) = delete;
  prometheus_process& operator=(const prometheus_process&) = delete;

  // An instant query's result vector as "labels -> value" pairs: each element's metric labels rendered
  // {a="x",b="y"} (sorted, without __name__), and its value; empty on an error or no data.
  std::vector<std::pair<std::string, double>> query(const std::string& promql) const;
  unsigned short port() const { return port_; }
  std::string log() const;

 private:
  std::string dir_;
  unsigned short port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace rg::test
