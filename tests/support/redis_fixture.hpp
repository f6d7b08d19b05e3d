// Test fixture: a private redis-server (from PATH) on a unix socket in its own temp dir, optionally also on a
// free loopback TCP port (plain or TLS); start/stop/pause/resume it and send it commands through a small
// blocking hiredis client on the unix socket. For tests only (blocking calls, throws on failure); never kills
// any process but its own child.
//
// RG_REDIS_TLS=<dir> (the "tls:" rerun of the [redis] tests, tests/CMakeLists.txt): every server serves its
// TCP port over TLS only, with certificates made once in <dir>, and address()/daemon_settings() point the store
// there over TLS; the fixture's own client stays on the unix socket.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace rg::test {

// A test CA and what it signed (tests/support/make_tls_certs.sh says which files): ca.pem, server.pem/key,
// client.pem/key, and other-ca.pem, a CA that signed nothing here (the "wrong CA").
struct tls_files {
  std::string dir;
  std::string ca() const { return dir + "/ca.pem"; }
  std::string other_ca() const { return dir + "/other-ca.pem"; }
  std::string server_cert() const { return dir + "/server.pem"; }
  std::string server_key() const { return dir + "/server.key"; }
  std::string client_cert() const { return dir + "/client.pem"; }
  std::string client_key() const { return dir + "/client.key"; }
};
// Makes them in `dir` (created if missing) unless they are there already; throws if openssl fails.
tls_files make_tls_files(const std::string& dir);
// The files of RG_REDIS_TLS, or nullptr when it is not set (made on first use).
const tls_files* tls_from_environment();

struct redis_server_options {
  bool tcp = false;          // also listen on 127.0.0.1:<free port>
  bool persistence = false;  // AOF on (appendfsync always), so data survives stop()/start()
  std::string password;      // --requirepass; the fixture's own client authenticates with it
  std::vector<std::string> extra_args;  // more redis-server flags
  // "redis-sentinel" runs a sentinel (needs tcp, and config_text with its "sentinel monitor" line).
  std::string program = "redis-server";
  std::string config_text;  // written to <dir>/redis.conf, given first (a sentinel rewrites its file)
  // Serve the TCP port over TLS only (implies tcp), clients' certificates optional; default: RG_REDIS_TLS's.
  const tls_files* tls = tls_from_environment();
};

class redis_server {
 public:
  explicit redis_server(redis_server_options opts = {});  // starts it; throws if it does not answer in 5 s
  ~redis_server();                                         // SIGTERM, bounded wait, SIGKILL; removes the dir
  redis_server(const redis_server&) = delete;
  redis_server& operator=(const redis_server&) = delete;

  const std::string& socket_path() const { return socket_path_; }
  // Where a store reaches it: the unix socket, or with TLS "127.0.0.1:<port>".
  std::string address() const { return opts_.tls ? "127.0.0.1:" + std::to_string(tcp_port_) : socket_path_; }
  const tls_files* tls() const { return opts_.tls; }
  // The rateguard.conf lines that point rateguardd at this server: "store = redis\nredis = <address>\n", and
  // with TLS redis_tls and redis_tls_ca_file.
  std::string daemon_settings() const;
  int tcp_port() const { return tcp_port_; }  // 0 without TCP
  const std::string& dir() const { return dir_; }
  pid_t pid() const { return pid_; }  // 0 while stopped
  bool running() const { return pid_ > 0; }

  void stop();    // graceful (SIGTERM), bounded; returns when the process is gone
  void kill();    // SIGKILL (a crash: no shutdown save); returns when the process is gone
  void start();   // again, on the same socket, port and dir; waits until it answers PING
  void pause();   // SIGSTOP: connections are accepted by the kernel, nothing is answered
  void resume();  // SIGCONT

  // A command through a blocking client on the unix socket (20 s timeout). The reply printed: strings and
  // status as is, integers in decimal, nil as "(nil)", errors as "(error) ...", arrays as "[a, b]".
  // `db`: SELECT first (each call uses a fresh connection).
  std::string command(const std::vector<std::string>& argv, int db = 0);
  // The elements of an array reply, each printed as above (HGETALL, KEYS, ...).
  std::vector<std::string> command_list(const std::vector<std::string>& argv, int db = 0);

 private:
  void spawn();
  void wait_ready(std::chrono::milliseconds limit);

  redis_server_options opts_;
  std::string dir_;
  std::string socket_path_;
  int tcp_port_ = 0;
  pid_t pid_ = 0;
  bool paused_ = false;
};

// A free TCP port on 127.0.0.1 (bound to port 0 and given back: a small race with other processes, fine for tests).
int free_loopback_port();

// The message count of sasl_username `user` in its 1h window, read from `r` (all of its m3600 buckets, with the
// default key prefix).
std::uint64_t redis_count(redis_server& r, const std::string& user);

}  // namespace rg::test
