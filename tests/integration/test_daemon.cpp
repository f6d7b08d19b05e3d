// The real rateguardd over its unix socket: limits at the exact count on both stores, concurrency, two
// daemons on one Redis, HOLD, reload with SIGHUP (good and bad files), --check, graceful SIGTERM, log reopen on
// SIGUSR1 (a rotation under load loses no line), systemd readiness (NOTIFY_SOCKET).
// Malformed input, slow requests and the connection cap are in test_hostile.cpp, faults in test_faults.cpp.
#include <catch2/catch.hpp>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "config.hpp"
#include "daemon_fixture.hpp"
#include "redis_fixture.hpp"
#include "setting_examples.hpp"

using namespace rg::test;

namespace {


}  // namespace

TEST_CASE("150 messages against 100/1h: exactly 100 pass and 50 are deferred - on both stores", "[daemon]") {
  redis_server redis;
  for (const std::string store : {"memory", "redis"}) {
    DYNAMIC_SECTION("store " << store) {
      daemon_process d("sasl_username * 100/1h defer\n", store == "redis" ? redis.daemon_settings() : "");
      policy_client c(d.socket_path());
      int dunno = 0, deferred = 0;
      for (int i = 0; i < 150; ++i) {
        auto a = c.ask(rcpt_request("alice", store + "-m" + std::to_string(i)));
        if (a == "DUNNO") ++dunno;
        else if (a.rfind("450 4.7.1 ", 0) == 0 && a.find("100 messages per 1h") != std::string::npos) ++deferred;
        else FAIL("unexpected answer: " << a);
      }
      CHECK(dunno == 100);
      CHECK(deferred == 50);
      REQUIRE(d.wait_for_log("instance=" + store + "-m149"));
      CHECK(d.log_count("NOQUEUE: defer: key=sasl_username:alice rule=" + d.dir() + "/limits.conf:1 window=1h") == 50);
      CHECK(d.log_count("count=101 limit=100 unit=messages") == 50);
    }
  }
}

TEST_CASE("8 concurrent connections x 50 requests against a limit of 100 admit exactly 100", "[daemon]") {
  redis_server redis;
  for (const std::string store : {"memory", "redis"}) {
    DYNAMIC_SECTION("store " << store) {
      daemon_process d("sasl_username * 100/1h defer\n", store == "redis" ? redis.daemon_settings() : "");
      std::atomic<int> dunno{0}, deferred{0}, other{0};
      std::vector<std::thread> threads;
      for (int t = 0; t < 8; ++t)
        threads.emplace_back([&, t] {
          policy_client c(d.socket_path());
          for (int i = 0; i < 50; ++i) {
            auto a = c.ask(rcpt_request("bob", store + "-t" + std::to_string(t) + "-" + std::to_string(i)));
            if (a == "DUNNO") ++dunno;
            else if (a.rfind("450 ", 0) == 0) ++deferred;
            else ++other;
          }
        });
      for (auto& th : threads) th.join();
      CHECK(dunno == 100);
      CHECK(deferred == 300);
      CHECK(other == 0);
    }
  }
}

TEST_CASE("two daemons sharing one Redis admit exactly the limit together", "[daemon][redis]") {
  redis_server redis;
  daemon_process a("sasl_username * 100/1h defer\n", redis.daemon_settings());
  daemon_process b("sasl_username * 100/1h defer\n", redis.daemon_settings());
  std::atomic<int> dunno{0}, deferred{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      policy_client c(t % 2 ? a.socket_path() : b.socket_path());
      for (int i = 0; i < 40; ++i) {
        auto ans = c.ask(rcpt_request("carol", "n" + std::to_string(t) + "-" + std::to_string(i)));
        if (ans == "DUNNO") ++dunno;
        else if (ans.rfind("450 ", 0) == 0) ++deferred;
      }
    });
  for (auto& th : threads) th.join();
  CHECK(dunno == 100);
  CHECK(deferred == 220);
}

TEST_CASE("a hold rule parks the message: HOLD for all its RCPTs - logged with the queue ID", "[daemon]") {
  daemon_process d("sasl_username * 1/1h hold\n");
  policy_client c(d.socket_path());
  REQUIRE(c.ask(rcpt_request("dave", "first")) == "DUNNO");
  auto a1 = c.ask(rcpt_request("dave", "second"));
  CHECK(a1.rfind("HOLD ", 0) == 0);
  auto a2 = c.ask(rcpt_request("dave", "second", "4F2A1B3C"));
  CHECK(a2 == a1);
  REQUIRE(d.wait_for_log("4F2A1B3C: hold: key=sasl_username:dave"));
  CHECK(d.log_count("NOQUEUE: hold: key=sasl_username:dave") == 1);
  CHECK(d.log_count("4F2A1B3C: hold: ") == 1);
}

TEST_CASE("requests split across reads and pipelined: each answer and log line has its own request's values",
          "[daemon]") {
  // The daemon's request values are views of its read buffer (common/protocol): a request that straddles two
  // reads, or shares one with the next request, must still be decided and logged with its own bytes.
  daemon_process d("sasl_username * 1/1h defer\n");
  policy_client c(d.socket_path());
  constexpr int users = 20;
  std::string stream;
  for (int m = 0; m < 2; ++m)  // every user's first message, then every user's second (deferred, logged)
    for (int u = 0; u < users; ++u)
      stream += rcpt_request("user" + std::to_string(u), "u" + std::to_string(u) + "-m" + std::to_string(m), "",
                             "127.0.0.1", "s" + std::to_string(u) + "@example.com");
  // Pieces of 1 to 2500 bytes a millisecond apart: most reads end inside a request, some hold several.
  std::mt19937 rng(17);
  for (std::size_t off = 0; off < stream.size();) {
    const std::size_t n = std::min<std::size_t>(1 + rng() % 2500, stream.size() - off);
    REQUIRE(c.send(stream.substr(off, n)));
    off += n;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  for (int i = 0; i < 2 * users; ++i) {
    CAPTURE(i);
    const std::string a = c.read_action();
    if (i < users)
      CHECK(a == "DUNNO");
    else
      CHECK(a.rfind("450 4.7.1 ", 0) == 0);
  }
  REQUIRE(d.wait_for_log("instance=u" + std::to_string(users - 1) + "-m1"));
  for (int u = 0; u < users; ++u) {
    const std::string n = std::to_string(u);
    CAPTURE(u);
    CHECK(d.log_count("NOQUEUE: defer: key=sasl_username:user" + n + " ") == 1);
    CHECK(d.log_count(" client=127.0.0.1 sasl_username=user" + n + " sender=<s" + n +
                      "@example.com> recipient=<rcpt@example.net> instance=u" + n + "-m1") == 1);
  }
}

TEST_CASE("SIGHUP applies new limits on the same connection - a bad file is refused and the old rules stay",
          "[daemon]") {
  daemon_process d("sasl_username * 2/1h defer\n");
  policy_client c(d.socket_path());
  for (int i = 0; i < 2; ++i) REQUIRE(c.ask(rcpt_request("erin", "a" + std::to_string(i))) == "DUNNO");
  REQUIRE(c.ask(rcpt_request("erin", "a2")).rfind("450 ", 0) == 0);

  d.write_limits("sasl_username * 4/1h defer\n");
  d.signal(SIGHUP);
  REQUIRE(d.wait_for_log("reload: "));
  CHECK(c.ask(rcpt_request("erin", "b0")) == "DUNNO");
  CHECK(c.ask(rcpt_request("erin", "b1")) == "DUNNO");
  CHECK(c.ask(rcpt_request("erin", "b2")).rfind("450 ", 0) == 0);

  d.write_limits("sasl_username * 100/1h defer\nsasl_username * 10/1x defer\n");
  d.signal(SIGHUP);
  REQUIRE(d.wait_for_log("reload refused: keeping the previous"));
  CHECK(d.log().find("limits.conf:2: ") != std::string::npos);
  CHECK(c.ask(rcpt_request("erin", "c0")).rfind("450 ", 0) == 0);  // still 4/1h, not 100/1h
}

TEST_CASE("rateguardd --check accepts good files and refuses bad ones with file:line and exit 78", "[daemon]") {
  daemon_process d("sasl_username * 100/1h defer\n");
  std::string out;
  CHECK(run_command({RG_DAEMON, "--check", "-c", d.dir() + "/rateguard.conf"}, &out) == 0);
  d.write_limits("sasl_username * 100/1h defer\nsender nobody 5/1m defer\n");
  CHECK(run_command({RG_DAEMON, "--check", "-c", d.dir() + "/rateguard.conf"}, &out) == 78);
  CHECK(out.find("limits.conf:2: ") != std::string::npos);
}

TEST_CASE("SIGTERM exits 0 and removes the unix socket", "[daemon]") {
  daemon_process d("sasl_username * 100/1h defer\n");
  {
    policy_client idle(d.socket_path());
    policy_client c(d.socket_path());
    REQUIRE(c.ask(rcpt_request("gina", "t")) == "DUNNO");
    CHECK(d.stop() == 0);
  }
  CHECK_FALSE(std::filesystem::exists(d.socket_path()));
}

namespace {

// The loopback address of `family` with `port`, ready for bind() or connect().
socklen_t loopback(int family, int port, sockaddr_storage& ss) {
  ss = {};
  if (family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<std::uint16_t>(port));
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sizeof(sockaddr_in);
  }
  auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
  a->sin6_family = AF_INET6;
  a->sin6_port = htons(static_cast<std::uint16_t>(port));
  a->sin6_addr = in6addr_loopback;
  return sizeof(sockaddr_in6);
}

int free_port(int family) {
  int fd = ::socket(family, SOCK_STREAM, 0);
  sockaddr_storage ss;
  socklen_t len = loopback(family, 0, ss);
  ::bind(fd, reinterpret_cast<sockaddr*>(&ss), len);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  int port = ntohs(family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                     : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  ::close(fd);
  return port;
}

// One request over TCP; returns the raw reply. `what`, if given, says how it went (for failure messages).
std::string tcp_ask(int family, int port, const std::string& request, std::string* what = nullptr) {
  int fd = ::socket(family, SOCK_STREAM, 0);
  sockaddr_storage ss;
  const socklen_t len = loopback(family, port, ss);
  std::string reply, how;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    how = std::string("connect: ") + std::strerror(errno);
  } else if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size())) {
    how = std::string("send: ") + std::strerror(errno);
  } else {
    timeval tv{3, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[512];
    ssize_t n = 0;
    while (reply.find("\n\n") == std::string::npos && (n = ::recv(fd, buf, sizeof buf, 0)) > 0)
      reply.append(buf, static_cast<std::size_t>(n));
    how = n == 0 ? "closed by the daemon" : std::string("recv: ") + std::strerror(errno);
  }
  ::close(fd);
  if (what) *what = how;
  return reply;
}

}  // namespace

TEST_CASE("inet listeners on IPv4 and IPv6 loopback serve the same rules and counters", "[daemon]") {
  const int p4 = free_port(AF_INET), p6 = free_port(AF_INET6);
  daemon_process d("sasl_username * 2/1h defer\n",
                   "listen = inet:127.0.0.1:" + std::to_string(p4) + "\nlisten = inet:[::1]:" + std::to_string(p6) + "\n");
  CHECK(tcp_ask(AF_INET, p4, rcpt_request("hank", "v4")) == "action=DUNNO\n\n");
  CHECK(tcp_ask(AF_INET6, p6, rcpt_request("hank", "v6")) == "action=DUNNO\n\n");
  CHECK(tcp_ask(AF_INET, p4, rcpt_request("hank", "v4b")).rfind("action=450 4.7.1 ", 0) == 0);
  policy_client unix_side(d.socket_path());  // the unix listener is still there too
  CHECK(unix_side.ask(rcpt_request("hank", "u")).rfind("450 4.7.1 ", 0) == 0);
}

TEST_CASE("unix socket gets the configured mode and a stale socket file is replaced", "[daemon]") {
  daemon_process d("sasl_username * 2/1h defer\n", "unix_socket_mode = 0660\n");
  struct stat st {};
  REQUIRE(::stat(d.socket_path().c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0660);
  // Kill it hard: the socket file stays behind; a new daemon on the same path must start anyway.
  ::kill(d.pid(), SIGKILL);
  CHECK(d.stop() == -1);
  REQUIRE(std::filesystem::exists(d.socket_path()));
  std::string out;
  auto pid = fork();
  if (pid == 0) {
    execl(RG_DAEMON, RG_DAEMON, "-c", (d.dir() + "/rateguard.conf").c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  bool served = false;
  for (int i = 0; i < 1000 && !served; ++i) {  // 10 s at least: a sanitized start on a busy machine
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    try {
      policy_client c(d.socket_path());
      served = c.ask(rcpt_request("ivy", "s")) == "DUNNO";
    } catch (const std::exception&) {
    }
  }
  CHECK(served);
  ::kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("inet listeners serve only allow_clients: loopback by default", "[daemon]") {
  const int p1 = free_port(AF_INET), p2 = free_port(AF_INET);
  {
    daemon_process d("sasl_username * 2/1h defer\n", "listen = inet:127.0.0.1:" + std::to_string(p1) + "\n");
    CHECK(tcp_ask(AF_INET, p1, rcpt_request("lee", "a")) == "action=DUNNO\n\n");
  }
  daemon_process d("sasl_username * 2/1h defer\n",
                   "listen = inet:127.0.0.1:" + std::to_string(p2) + "\nallow_clients = 192.0.2.0/24, 2001:db8::/32\n");
  std::string how;
  CHECK(tcp_ask(AF_INET, p2, rcpt_request("lee", "b"), &how).empty());  // closed without an answer
  // Seen twice in loaded sanitizer runs: no such line within the wait. What the client saw, whether the daemon
  // still runs, and its log say what happened instead.
  const bool found = d.wait_for_log("connection from 127.0.0.1:");
  INFO("client: " << how << "; daemon alive: " << (::kill(d.pid(), 0) == 0) << "; daemon log:\n" << d.log());
  REQUIRE(found);
  CHECK(d.log().find("refused: not in allow_clients") != std::string::npos);
  policy_client unix_side(d.socket_path());  // unix sockets are not subject to allow_clients
  CHECK(unix_side.ask(rcpt_request("lee", "c")) == "DUNNO");
}

namespace {
// `sig` in /proc/PID/status's SigBlk (blocked) or SigCgt (caught) line of process `pid`.
bool signal_in(pid_t pid, const char* field, int sig) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  const unsigned long long bit = 1ULL << (sig - 1);
  for (std::string line; std::getline(f, line);)
    if (line.rfind(field, 0) == 0) return (std::stoull(line.substr(std::strlen(field)), nullptr, 16) & bit) != 0;
  return false;
}

pid_t start_daemon(const std::string& conf, const std::string& errors) {
  const pid_t pid = fork();
  if (pid == 0) {
    const int fd = ::open(errors.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || dup2(fd, 2) < 0) _exit(126);
    execl(RG_DAEMON, RG_DAEMON, "-c", conf.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}
}  // namespace

// systemd's reload, or an admin's kill -HUP, can come while the daemon is still reading its files: the signal
// must wait for the daemon to run, then reload it, instead of ending it (SIGHUP's default action).
TEST_CASE("a SIGHUP while the daemon starts is a reload once it runs, not its end", "[daemon][reload]") {
  daemon_process d("sasl_username * 2/1h defer\n");
  CHECK(d.stop() == 0);
  // Catch the daemon inside the start window (SIGHUP blocked, not yet caught by its signal_set): the window is
  // short, so a start in which the poll sees only the caught state is stopped and tried again (bounded).
  bool sent_while_starting = false;
  pid_t pid = -1;
  for (int attempt = 0; attempt < 20 && !sent_while_starting; ++attempt) {
    pid = start_daemon(d.config_path(), d.dir() + "/early-hup.stderr");
    bool caught = false;
    for (int i = 0; i < 2'000'000 && !sent_while_starting && !caught; ++i) {  // bounded busy poll
      if (signal_in(pid, "SigBlk:", SIGHUP)) sent_while_starting = ::kill(pid, SIGHUP) == 0;
      else caught = signal_in(pid, "SigCgt:", SIGHUP);
      int st = 0;
      REQUIRE(waitpid(pid, &st, WNOHANG) == 0);  // the daemon must never die of it
    }
    if (!sent_while_starting) {
      ::kill(pid, SIGTERM);
      int st = 0;
      waitpid(pid, &st, 0);
    }
  }
  REQUIRE(sent_while_starting);
  bool served = false;
  for (int i = 0; i < 2000 && !served; ++i) {  // 20 s at most
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    try {
      policy_client c(d.socket_path());
      served = c.ask(rcpt_request("early", "h")) == "DUNNO";
    } catch (const std::exception&) {
    }
  }
  CHECK(served);
  int status = 0;
  CHECK(waitpid(pid, &status, WNOHANG) == 0);  // still running
  CHECK(d.wait_for_log("reload: "));  // the first daemon of this log file never reloaded
  ::kill(pid, SIGTERM);
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("SIGUSR1 (and a reload) reopens the log file: renamed 5 times while a client sends, no decision "
          "line is lost", "[daemon][logs]") {
  // COUNT 0: every request is deferred, and every deferral is one decision line.
  daemon_process d("sasl_username * 0/1h defer\n");
  const std::string log = d.dir() + "/rateguardd.log";
  const std::string line = "NOQUEUE: defer: key=sasl_username:rotate ";
  std::atomic<bool> done{false};
  std::atomic<int> answered{0}, wrong{0};
  std::thread client([&] {
    policy_client c(d.socket_path());
    for (int i = 0; i < 200000 && !done; ++i) {  // bounded; normally stopped by `done`
      auto a = c.ask(rcpt_request("rotate", "rot" + std::to_string(i)));
      if (a.rfind("450 ", 0) != 0) {
        ++wrong;
        break;
      }
      ++answered;
    }
  });
  // Like logrotate: rename, then signal; the daemon writes to the renamed file until it has reopened. The
  // third rotation signals a reload instead (a postrotate that runs `systemctl reload`).
  constexpr int rotations = 5;
  for (int r = 1; r <= rotations; ++r) {
    const int before = answered;
    for (int i = 0; i < 2000 && answered < before + 50; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::filesystem::rename(log, log + "." + std::to_string(r));
    d.signal(r == 3 ? SIGHUP : SIGUSR1);
    REQUIRE(d.wait_for_log("reopened log file " + log));
  }
  // Some requests after the last reopen, then stop sending.
  const int before = answered;
  for (int i = 0; i < 2000 && answered < before + 50; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  done = true;
  client.join();
  REQUIRE(wrong == 0);
  const int n = answered;
  auto count_in = [&](const std::string& path) {
    std::ifstream f(path);
    int k = 0;
    for (std::string l; std::getline(f, l);) k += l.find(line) != std::string::npos;
    return k;
  };
  auto total = [&] {
    int k = count_in(log);
    for (int r = 1; r <= rotations; ++r) k += count_in(log + "." + std::to_string(r));
    return k;
  };
  for (int i = 0; i < 500 && total() < n; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  INFO("requests answered " << n);
  CHECK(total() == n);
  // Each file got its share: the rotations happened while requests were flowing.
  for (int r = 2; r <= rotations; ++r) CHECK(count_in(log + "." + std::to_string(r)) > 0);
  CHECK(count_in(log) > 0);
  CHECK(d.log_count("cannot reopen") == 0);
}

TEST_CASE("SIGUSR1 when the log file cannot be reopened: an error, and the daemon keeps its old file",
          "[daemon][logs]") {
  daemon_process d("sasl_username * 0/1h defer\n");
  const std::string log = d.dir() + "/rateguardd.log";
  // A directory where the file was: opening it for writing fails (EISDIR), even as root.
  std::filesystem::rename(log, log + ".1");
  std::filesystem::create_directory(log);
  d.signal(SIGUSR1);
  policy_client c(d.socket_path());
  REQUIRE(c.ask(rcpt_request("stuck", "s1")).rfind("450 ", 0) == 0);
  std::string old;
  for (int i = 0; i < 1000; ++i) {  // bounded: 10 s
    std::ifstream f(log + ".1");
    old.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    if (old.find("key=sasl_username:stuck") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(old.find("error: cannot reopen log file: " + log + ": Is a directory") != std::string::npos);
  CHECK(old.find("key=sasl_username:stuck") != std::string::npos);
  std::filesystem::remove(log);
}

TEST_CASE("NOTIFY_SOCKET: READY=1 once serving, RELOADING=1 then READY=1 around reloads, STOPPING=1 at TERM",
          "[daemon][systemd]") {
  // systemd's side: a datagram socket the daemon is told about in NOTIFY_SOCKET.
  char tmpl[] = "/tmp/rg-notify-XXXXXX";
  REQUIRE(mkdtemp(tmpl));
  const std::string dir = tmpl, path = dir + "/notify";
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  auto next_message = [&]() -> std::string {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 10000) != 1) return "(none within 10 s)";
    char buf[4096];
    auto n = ::recv(fd, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "(recv failed)";
  };
  ::setenv("NOTIFY_SOCKET", path.c_str(), 1);  // inherited by the daemon the fixture forks
  std::optional<daemon_process> d;
  d.emplace("sasl_username * 2/1h defer\n");
  ::unsetenv("NOTIFY_SOCKET");
  CHECK(next_message() == "READY=1");
  {  // READY=1 came after the listeners were up: the fixture also waited for them, so ask once more
    policy_client c(d->socket_path());
    CHECK(c.ask(rcpt_request("notified", "n1")) == "DUNNO");
  }
  d->signal(SIGHUP);
  CHECK(next_message() == "RELOADING=1");
  CHECK(next_message() == "READY=1");
  d->write_limits("sasl_username * nonsense defer\n");  // refused: the old rules stay, and it is ready again
  d->signal(SIGHUP);
  CHECK(next_message() == "RELOADING=1");
  CHECK(next_message() == "READY=1");
  CHECK(d->stop() == 0);
  CHECK(next_message() == "STOPPING=1");
  d.reset();
  ::close(fd);
  std::filesystem::remove_all(dir);
}

namespace {

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Rewrites the daemon's rateguard.conf as `base` plus `extra` lines (a later line wins), sends SIGHUP and waits
// for the reload's summary line; returns the log lines the reload wrote.
std::string reload_with(daemon_process& d, const std::string& base, const std::string& extra) {
  const std::string before = d.log();
  {
    std::ofstream f(d.config_path() + ".tmp");
    f << base << extra;
  }
  std::filesystem::rename(d.config_path() + ".tmp", d.config_path());
  const std::size_t reloads = d.log_count("settings applied: ");
  d.signal(SIGHUP);
  for (int i = 0; i < 1000 && d.log_count("settings applied: ") == reloads; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  REQUIRE(d.log_count("settings applied: ") == reloads + 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the restart warning follows the summary line
  return d.log().substr(before.size());
}

// The names in the reload's "settings applied: a, b" line, or in its "warning: reload: a, b changed: restart" line.
std::set<std::string> names_after(const std::string& lines, const std::string& marker, const std::string& end) {
  std::set<std::string> out;
  const auto a = lines.find(marker);
  if (a == std::string::npos) return out;
  const auto b = lines.find(end, a + marker.size());
  std::stringstream list(lines.substr(a + marker.size(), b - a - marker.size()));
  for (std::string n; std::getline(list, n, ',');) {
    n.erase(0, n.find_first_not_of(' '));
    out.insert(n);
  }
  return out;
}

}  // namespace

TEST_CASE("a reload applies request_timeout at once and names listen as needing a restart", "[daemon][reload]") {
  const int port = free_port(AF_INET);
  daemon_process d("sasl_username * 2/1h defer\n");
  const std::string base = read_text(d.config_path());
  const std::string lines =
      reload_with(d, base, "request_timeout = 1s\nlisten = inet:127.0.0.1:" + std::to_string(port) + "\n");
  CHECK(names_after(lines, "settings applied: ", "\n") == std::set<std::string>{"request_timeout"});
  CHECK(names_after(lines, "warning: reload: ", " changed: restart") == std::set<std::string>{"listen"});
  // The running daemon keeps its listeners: nothing answers on the new port until a restart...
  CHECK(tcp_ask(AF_INET, port, rcpt_request("lee", "a")).empty());
  // ... while the new request_timeout cuts a request that never ends after 1 s, not the 10 s it started with.
  policy_client slow(d.socket_path());
  REQUIRE(slow.send("request=smtpd_access_policy\nprotocol_state=RCPT\nsender="));
  const auto t = std::chrono::steady_clock::now();
  CHECK(slow.closed_by_peer(8000));
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
  CHECK(ms >= 900);
  CHECK(ms < 8000);  // the old 10 s would not have cut it by now
  CHECK(d.wait_for_log("request not complete within request_timeout (1s)"));
}

TEST_CASE("a reload names each changed setting: applied, or needing a restart", "[daemon][reload]") {
  daemon_process d("sasl_username * 2/1h defer\n");
  const std::string base = read_text(d.config_path());
  const std::string other_limits = d.dir() + "/other-limits.conf";
  std::ofstream(other_limits) << "sasl_username * 5/1h defer\n";
  auto examples = rg::test::setting_examples(other_limits);
  examples["allow_root"].value = "no";  // the fixture runs with allow_root = yes
  const auto docs = rg::settings_doc();
  REQUIRE(examples.size() == docs.size());
  // log_level = warning last: the summary lines of later reloads are info lines.
  std::vector<rg::setting_doc> order = docs;
  std::stable_partition(order.begin(), order.end(), [](const rg::setting_doc& x) { return x.name != "log_level"; });
  std::set<std::string> running_changed;  // reloadable settings the running daemon has changed so far
  for (const auto& s : order) {
    INFO(s.name);
    REQUIRE(examples.count(s.name) == 1);
    const auto& ex = examples.at(s.name);
    const std::string lines = reload_with(d, base, s.name + " = " + ex.value + "\n" + ex.also);
    INFO(lines);
    const auto applied = names_after(lines, "settings applied: ", "\n");
    const auto restart = names_after(lines, "warning: reload: ", " changed: restart");
    CHECK((s.reloadable ? applied : restart).count(s.name) == 1);
    CHECK((s.reloadable ? restart : applied).count(s.name) == 0);
    // The previous example reverts with this reload: a reloadable one is applied back, a restart-only one never
    // changed in the running daemon, so it is not named again.
    for (const auto& name : running_changed) CHECK(applied.count(name) == 1);
    running_changed.clear();
    if (s.reloadable) running_changed.insert(s.name);
    CHECK(d.log_count("reload refused") == 0);
  }
  // The daemon still answers as before: restart-only settings kept their running values (store, listen, ...).
  policy_client c(d.socket_path());
  CHECK(c.ask(rcpt_request("zed", "z1")) == "DUNNO");
}
