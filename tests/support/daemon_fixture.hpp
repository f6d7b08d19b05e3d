// Test fixture: runs the real rateguardd binary in a private temp directory (its own config, limits,
// unix socket, control socket and log file), a small blocking policy client, and rateguardctl against it.
// Kills only the process it started.
#pragma once

#include <string>
#include <sys/types.h>
#include <vector>

namespace rg::test {

class daemon_process {
 public:
  // `settings` are extra rateguard.conf lines (store, redis, mode...). Starts and waits until it answers.
  daemon_process(const std::string& limits, const std::string& settings = "");
  ~daemon_process();
  daemon_process(const daemon_process&) = delete;
  daemon_process& operator=(const daemon_process&) = delete;

  const std::string& socket_path() const { return socket_; }
  std::string control_path() const { return dir_ + "/control"; }
  std::string config_path() const { return dir_ + "/rateguard.conf"; }
  // Runs rateguardctl -c <this daemon's config> ARGS (bounded by its own deadlines); returns its exit status,
  // stdout and stderr into `output`.
  int ctl(const std::vector<std::string>& args, std::string* output = nullptr) const;
  const std::string& dir() const { return dir_; }
  pid_t pid() const { return pid_; }
  void write_limits(const std::string& limits);
  void signal(int sig);
  // SIGTERM and wait (bounded); returns the exit status (-1 if it had to be killed).
  int stop();
  // Waits for an exit without signalling: the exit status, -1 if killed by a signal, -2 if still running
  // after `timeout_ms`.
  int wait_exit(int timeout_ms);
  std::string log() const;
  // Waits (bounded) until the log contains `text`; returns whether it did.
  // The default bound is for a slow, busy machine; the wait ends as soon as the line is there.
  bool wait_for_log(const std::string& text, int timeout_ms = 10000) const;
  // Occurrences of `text` in the log.
  std::size_t log_count(const std::string& text) const;

 private:
  std::string dir_, socket_;
  pid_t pid_ = -1;
};

// A persistent policy connection, like one smtpd process's.
class policy_client {
 public:
  explicit policy_client(const std::string& unix_path);
  ~policy_client();
  policy_client(const policy_client&) = delete;
  policy_client& operator=(const policy_client&) = delete;

  // Sends raw bytes; returns false if the peer has closed.
  bool send(const std::string& bytes);
  // Reads one reply up to the empty line (bounded by timeout); returns the action value, or "" on EOF.
  std::string read_action(int timeout_ms = 3000);
  std::string ask(const std::string& request) {
    return send(request) ? read_action() : std::string();
  }
  bool closed_by_peer(int timeout_ms = 3000);

 private:
  int fd_ = -1;
  std::string buf_;
};

// A RCPT request as Postfix 3.7 sends it (all 28 attributes).
std::string rcpt_request(const std::string& sasl_username, const std::string& instance,
                         const std::string& queue_id = "", const std::string& client = "127.0.0.1",
                         const std::string& sender = "alice@example.com",
                         const std::string& state = "RCPT");

// Runs a command, returns its exit status; stdout+stderr into `output`.
int run_command(const std::vector<std::string>& argv, std::string* output = nullptr);

}  // namespace rg::test
