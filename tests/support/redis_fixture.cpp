// Test fixture implementation: fork/exec of redis-server with a private temp dir, readiness by PING, and a
// blocking hiredis client for assertions. Blocking is fine here (tests only); the store never uses this.
// Only the pid this fixture forked is ever signalled.
#include "redis_fixture.hpp"
#include "daemon_fixture.hpp"

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace rg::test {

namespace {

using namespace std::chrono_literals;

struct context_deleter {
  void operator()(redisContext* c) const noexcept { redisFree(c); }
};
using context_ptr = std::unique_ptr<redisContext, context_deleter>;
struct reply_deleter {
  void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
using reply_ptr = std::unique_ptr<redisReply, reply_deleter>;

std::string print(const redisReply& r) {
  switch (r.type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
      return std::string(r.str, r.len);
    case REDIS_REPLY_INTEGER:
      return std::to_string(r.integer);
    case REDIS_REPLY_NIL:
      return "(nil)";
    case REDIS_REPLY_ERROR:
      return "(error) " + std::string(r.str, r.len);
    case REDIS_REPLY_ARRAY: {
      std::string out = "[";
      for (std::size_t i = 0; i < r.elements; ++i) out += (i ? ", " : "") + print(*r.element[i]);
      return out + "]";
    }
    default:
      return "(unknown reply type " + std::to_string(r.type) + ")";
  }
}

// The socket path must fit sockaddr_un (108 bytes): a long $TMPDIR falls back to /tmp.
std::string make_temp_dir() {
  std::string base = "/tmp";
  if (const char* t = std::getenv("TMPDIR"); t != nullptr && *t == '/' && std::strlen(t) < 60) base = t;
  std::string templ = base + "/rg-redis-XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp: " + std::string(std::strerror(errno)));
  return templ;
}


std::string read_log(const std::string& dir) {
  std::ifstream in(dir + "/redis.log");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

int free_loopback_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket: " + std::string(std::strerror(errno)));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = 0;
  socklen_t len = sizeof sa;
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("bind 127.0.0.1:0: " + std::string(std::strerror(errno)));
  }
  ::close(fd);
  return ntohs(sa.sin_port);
}

tls_files make_tls_files(const std::string& dir) {
  tls_files f{dir};
  if (std::filesystem::exists(f.other_ca())) return f;  // made last
  std::string out;
  if (run_command({"sh", RG_MAKE_TLS_CERTS, dir}, &out) != 0) throw std::runtime_error("openssl: " + out);
  return f;
}

const tls_files* tls_from_environment() {
  static const std::optional<tls_files> files = []() -> std::optional<tls_files> {
    const char* dir = std::getenv("RG_REDIS_TLS");
    if (dir == nullptr || *dir == '\0') return std::nullopt;
    return make_tls_files(dir);
  }();
  return files ? &*files : nullptr;
}

std::string redis_server::daemon_settings() const {
  std::string s = "store = redis\nredis = " + address() + "\n";
  if (opts_.tls) s += "redis_tls = yes\nredis_tls_ca_file = " + opts_.tls->ca() + "\n";
  return s;
}

redis_server::redis_server(redis_server_options opts) : opts_(std::move(opts)), dir_(make_temp_dir()) {
  socket_path_ = dir_ + "/redis.sock";
  try {
    if (opts_.tcp || opts_.tls) tcp_port_ = free_loopback_port();
    start();
  } catch (...) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
    throw;
  }
}

redis_server::~redis_server() {
  try {
    stop();
  } catch (...) {
    // A destructor must not throw; stop() already escalated to SIGKILL.
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

void redis_server::start() {
  if (pid_ > 0) return;
  spawn();
  try {
    wait_ready(5s);
  } catch (...) {
    stop();
    throw;
  }
}

void redis_server::spawn() {
  std::vector<std::string> args = {opts_.program};
  if (!opts_.config_text.empty()) {
    const std::string conf = dir_ + "/redis.conf";
    if (!std::filesystem::exists(conf)) {  // a restarted sentinel keeps what it learned
      std::ofstream out(conf);
      out << opts_.config_text;
      if (!out.flush()) throw std::runtime_error("cannot write " + conf);
    }
    args.push_back(conf);
  }
  args.insert(args.end(), {
      "--port", std::to_string(opts_.tls ? 0 : tcp_port_),
      "--bind", "127.0.0.1",
      "--unixsocket", socket_path_,
      "--unixsocketperm", "700",
      "--save", "",
      "--appendonly", opts_.persistence ? "yes" : "no",
      "--dir", dir_,
      "--daemonize", "no",
      "--logfile", "",
  });
  if (opts_.persistence) args.insert(args.end(), {"--appendfsync", "always"});
  if (!opts_.password.empty()) args.insert(args.end(), {"--requirepass", opts_.password});
  if (opts_.tls) {
    args.insert(args.end(), {"--tls-port", std::to_string(tcp_port_), "--tls-cert-file", opts_.tls->server_cert(),
                             "--tls-key-file", opts_.tls->server_key(), "--tls-ca-cert-file", opts_.tls->ca(),
                             "--tls-auth-clients", "optional"});
  }
  args.insert(args.end(), opts_.extra_args.begin(), opts_.extra_args.end());
  // Everything the child needs is prepared before fork: after it, only async-signal-safe calls.
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string log_path = dir_ + "/redis.log";
  const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log_fd < 0) throw std::runtime_error("open " + log_path + ": " + std::strerror(errno));
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    ::close(log_fd);
    throw std::runtime_error("fork: " + std::string(std::strerror(errno)));
  }
  if (pid == 0) {
    // A crashed test run must not leave a redis-server behind.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    execvp(argv[0], argv.data());
    _exit(127);
  }
  ::close(log_fd);
  pid_ = pid;
  paused_ = false;
}

void redis_server::wait_ready(std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = 0;
      throw std::runtime_error("redis-server exited at start-up:\n" + read_log(dir_));
    }
    const timeval tv{0, 200'000};
    context_ptr ctx(redisConnectUnixWithTimeout(socket_path_.c_str(), tv));
    if (ctx && ctx->err == 0) {
      redisSetTimeout(ctx.get(), tv);
      reply_ptr r(static_cast<redisReply*>(redisCommand(ctx.get(), "PING")));
      if (r && r->type == REDIS_REPLY_STATUS && std::string_view(r->str, r->len) == "PONG") return;
      // With requirepass, NOAUTH also proves it is serving (and not still loading).
      if (r && r->type == REDIS_REPLY_ERROR && std::string_view(r->str, r->len).starts_with("NOAUTH")) return;
    }
    std::this_thread::sleep_for(10ms);
  }
  throw std::runtime_error("redis-server did not answer PING within " + std::to_string(limit.count()) +
                           " ms:\n" + read_log(dir_));
}

void redis_server::stop() {
  if (pid_ <= 0) return;
  if (paused_) ::kill(pid_, SIGCONT);  // a stopped process would not act on SIGTERM
  paused_ = false;
  ::kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = 0;
      return;
    }
    std::this_thread::sleep_for(5ms);
  }
  ::kill(pid_, SIGKILL);
  waitpid(pid_, &status, 0);
  pid_ = 0;
}

void redis_server::kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = 0;
  paused_ = false;
}

void redis_server::pause() {
  if (pid_ <= 0) throw std::logic_error("redis_server::pause: not running");
  ::kill(pid_, SIGSTOP);
  paused_ = true;
}

void redis_server::resume() {
  if (pid_ <= 0) throw std::logic_error("redis_server::resume: not running");
  ::kill(pid_, SIGCONT);
  paused_ = false;
}

namespace {

reply_ptr send_command(redisContext* ctx, const std::vector<std::string>& argv) {
  std::vector<const char*> ptrs;
  std::vector<std::size_t> lens;
  for (const auto& a : argv) {
    ptrs.push_back(a.data());
    lens.push_back(a.size());
  }
  reply_ptr r(static_cast<redisReply*>(redisCommandArgv(ctx, static_cast<int>(argv.size()), ptrs.data(), lens.data())));
  if (!r) throw std::runtime_error("redis command failed: " + std::string(ctx->errstr));
  return r;
}

reply_ptr run_command(const std::string& socket_path, const std::string& password, int db,
                      const std::vector<std::string>& argv) {
  // 20 s: a test's own setup (an EVAL writing 100,000 keys) took over 2 s on a machine busy with other
  // work; no test relies on this client timing out.
  const timeval tv{20, 0};
  context_ptr ctx(redisConnectUnixWithTimeout(socket_path.c_str(), tv));
  if (!ctx || ctx->err != 0) {
    throw std::runtime_error("connect " + socket_path + ": " + (ctx ? ctx->errstr : "out of memory"));
  }
  redisSetTimeout(ctx.get(), tv);
  if (!password.empty()) {
    if (auto r = send_command(ctx.get(), {"AUTH", password}); r->type == REDIS_REPLY_ERROR) {
      throw std::runtime_error("AUTH: " + print(*r));
    }
  }
  if (db != 0) {
    if (auto r = send_command(ctx.get(), {"SELECT", std::to_string(db)}); r->type == REDIS_REPLY_ERROR) {
      throw std::runtime_error("SELECT: " + print(*r));
    }
  }
  return send_command(ctx.get(), argv);
}

}  // namespace

std::string redis_server::command(const std::vector<std::string>& argv, int db) {
  return print(*run_command(socket_path_, opts_.password, db, argv));
}

std::vector<std::string> redis_server::command_list(const std::vector<std::string>& argv, int db) {
  const auto r = run_command(socket_path_, opts_.password, db, argv);
  if (r->type != REDIS_REPLY_ARRAY) throw std::runtime_error("not an array reply: " + print(*r));
  std::vector<std::string> out;
  for (std::size_t i = 0; i < r->elements; ++i) out.push_back(print(*r->element[i]));
  return out;
}

std::uint64_t redis_count(redis_server& r, const std::string& user) {
  const auto flat = r.command_list({"HGETALL", "rg:{u:" + user + "}"});
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i + 1 < flat.size(); i += 2)
    if (flat[i].starts_with("m3600:")) sum += std::stoull(flat[i + 1]);
  return sum;
}

}  // namespace rg::test
