// The real daemon under test, in a temp directory, plus a blocking policy client (tests only).
#include "daemon_fixture.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#ifndef RG_DAEMON
#error "RG_DAEMON must name the rateguardd binary"
#endif
#ifndef RG_CTL
#error "RG_CTL must name the rateguardctl binary"
#endif

namespace rg::test {

namespace {

void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
}

bool wait_pid(pid_t pid, int timeout_ms, int* status) {
  for (int i = 0; i < timeout_ms / 10; ++i) {
    if (waitpid(pid, status, WNOHANG) == pid) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

}  // namespace

daemon_process::daemon_process(const std::string& limits, const std::string& settings) {
  char tmpl[] = "/tmp/rg-daemon-XXXXXX";
  if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;
  socket_ = dir_ + "/policy.sock";
  write_limits(limits);
  // Stays root in its private 0700 dir (allow_root); `settings` may name a user instead (test_privileges).
  write_file(dir_ + "/rateguard.conf", "listen = unix:" + socket_ + "\nlimits = limits.conf\nlog_target = file:" +
                                           dir_ + "/rateguardd.log\nallow_root = yes\ncontrol_socket = " +
                                           control_path() + "\n" + settings);
  pid_ = fork();
  if (pid_ == 0) {
    std::string conf = dir_ + "/rateguard.conf";
    int devnull = ::open("/dev/null", O_WRONLY);
    if (devnull >= 0) {
      dup2(devnull, 1);
    }
    int errfd = ::open((dir_ + "/stderr").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (errfd >= 0) dup2(errfd, 2);
    execl(RG_DAEMON, RG_DAEMON, "-c", conf.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  // Ready when the socket accepts a connection and the daemon has logged that it started (bounded: 20 s, for a
  // sanitized daemon on a busy machine; it is usually ready in well under 100 ms). The socket alone is not enough:
  // it is the first of the listeners, and a test's own inet or milter listener is bound after it, so on a loaded
  // machine a test could connect to one before it existed (seen as a refused connection in loaded sanitizer runs).
  for (int i = 0; i < 2000; ++i) {
    int st = 0;
    if (waitpid(pid_, &st, WNOHANG) == pid_) {
      pid_ = -1;
      std::ifstream e(dir_ + "/stderr");
      std::stringstream ss;
      ss << e.rdbuf();
      const std::string why = "rateguardd exited at start: " + ss.str() + log();
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);  // no destructor runs for a throwing constructor
      throw std::runtime_error(why);
    }
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, socket_.c_str(), sizeof a.sun_path - 1);
    bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    if (ok && log().find(" started: store=") != std::string::npos) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  stop();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
  throw std::runtime_error("rateguardd did not start within 20 s");
}

daemon_process::~daemon_process() {
  stop();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

void daemon_process::write_limits(const std::string& limits) {
  // Write then rename, so a reload never sees half a file.
  write_file(dir_ + "/limits.conf.tmp", limits);
  std::filesystem::rename(dir_ + "/limits.conf.tmp", dir_ + "/limits.conf");
}

void daemon_process::signal(int sig) {
  if (pid_ > 0) ::kill(pid_, sig);
}

int daemon_process::stop() {
  if (pid_ <= 0) return -1;
  int st = 0;
  ::kill(pid_, SIGTERM);
  if (!wait_pid(pid_, 10000, &st)) {
    ::kill(pid_, SIGKILL);
    waitpid(pid_, &st, 0);
    pid_ = -1;
    return -1;
  }
  pid_ = -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int daemon_process::wait_exit(int timeout_ms) {
  if (pid_ <= 0) return -1;
  int st = 0;
  if (!wait_pid(pid_, timeout_ms, &st)) return -2;
  pid_ = -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int daemon_process::ctl(const std::vector<std::string>& args, std::string* output) const {
  std::vector<std::string> argv{RG_CTL, "-c", config_path()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, output);
}

std::string daemon_process::log() const {
  std::ifstream f(dir_ + "/rateguardd.log");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool daemon_process::wait_for_log(const std::string& text, int timeout_ms) const {
  for (int i = 0; i < timeout_ms / 10; ++i) {
    if (log().find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

std::size_t daemon_process::log_count(const std::string& text) const {
  const std::string s = log();
  std::size_t n = 0;
  for (auto p = s.find(text); p != std::string::npos; p = s.find(text, p + text.size())) ++n;
  return n;
}

policy_client::policy_client(const std::string& unix_path) {
  fd_ = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, unix_path.c_str(), sizeof a.sun_path - 1);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    throw std::runtime_error("connect " + unix_path + ": " + std::strerror(errno));
}

policy_client::~policy_client() {
  if (fd_ >= 0) ::close(fd_);
}

bool policy_client::send(const std::string& bytes) {
  std::size_t off = 0;
  while (off < bytes.size()) {
    auto n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<std::size_t>(n);
  }
  return true;
}

std::string policy_client::read_action(int timeout_ms) {
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    if (auto end = buf_.find("\n\n"); end != std::string::npos) {
      std::string reply = buf_.substr(0, end);
      buf_.erase(0, end + 2);
      return reply.rfind("action=", 0) == 0 ? reply.substr(7) : "malformed reply: " + reply;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    if (left.count() <= 0) return "timeout";
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char tmp[4096];
    auto n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) return "";
    buf_.append(tmp, static_cast<std::size_t>(n));
  }
}

bool policy_client::closed_by_peer(int timeout_ms) {
  pollfd p{fd_, POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) <= 0) return false;
  char tmp[64];
  return ::recv(fd_, tmp, sizeof tmp, 0) <= 0;
}

std::string rcpt_request(const std::string& user, const std::string& instance, const std::string& queue_id,
                         const std::string& client, const std::string& sender, const std::string& state) {
  return "request=smtpd_access_policy\nprotocol_state=" + state +
         "\nprotocol_name=ESMTP\nclient_address=" + client +
         "\nclient_name=localhost\nclient_port=35902\nreverse_client_name=localhost\nserver_address=127.0.0.1\n"
         "server_port=587\nhelo_name=client.test\nsender=" + sender +
         "\nrecipient=rcpt@example.net\nrecipient_count=0\nqueue_id=" + queue_id + "\ninstance=" + instance +
         "\nsize=0\netrn_domain=\nstress=\nsasl_method=" + (user.empty() ? "" : "PLAIN") +
         "\nsasl_username=" + user +
         "\nsasl_sender=\nccert_subject=\nccert_issuer=\nccert_fingerprint=\nccert_pubkey_fingerprint=\n"
         "encryption_protocol=\nencryption_cipher=\nencryption_keysize=0\npolicy_context=submission\n\n";
}

int run_command(const std::vector<std::string>& argv, std::string* output) {
  int pipefd[2];
  if (pipe(pipefd) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(pipefd[1], 1);
    dup2(pipefd[1], 2);
    ::close(pipefd[0]);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  ::close(pipefd[1]);
  std::string out;
  char tmp[4096];
  ssize_t n;
  while ((n = ::read(pipefd[0], tmp, sizeof tmp)) > 0) out.append(tmp, static_cast<std::size_t>(n));
  ::close(pipefd[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  if (output) *output = out;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

}  // namespace rg::test
