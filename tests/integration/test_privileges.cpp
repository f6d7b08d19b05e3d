// The real rateguardd started as root: it binds, then runs as the configured user (checked in
// /proc/PID/status), its unix socket in a Postfix-like private directory gets the configured owner and
// mode, it refuses root without `user`, rejects unknown names, reloads after the drop, and the sample
// config of README's quick start drops to nobody.
// Not here: Redis AUTH (test_redis_auth.cpp). Needs root, like the e2e suite.
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "daemon_fixture.hpp"

using namespace rg::test;

namespace {

// The values of one "Key:\tv1\tv2..." line of /proc/PID/status.
std::vector<std::string> status_fields(pid_t pid, const std::string& key) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(key + ":", 0) != 0) continue;
    std::istringstream in(line.substr(key.size() + 1));
    std::vector<std::string> out;
    for (std::string v; in >> v;) out.push_back(v);
    return out;
  }
  return {};
}

uid_t uid_of(const std::string& user) {
  const passwd* pw = getpwnam(user.c_str());
  REQUIRE(pw != nullptr);
  return pw->pw_uid;
}

gid_t gid_of(const std::string& group) {
  const struct group* gr = getgrnam(group.c_str());
  REQUIRE(gr != nullptr);
  return gr->gr_gid;
}

// What initgroups(user, gid) gives, sorted as /proc prints it.
std::vector<std::string> expected_groups(const std::string& user, gid_t gid) {
  std::vector<gid_t> groups(256);
  int n = static_cast<int>(groups.size());
  REQUIRE(getgrouplist(user.c_str(), gid, groups.data(), &n) >= 0);
  groups.resize(static_cast<std::size_t>(n));
  std::sort(groups.begin(), groups.end());
  groups.erase(std::unique(groups.begin(), groups.end()), groups.end());
  std::vector<std::string> out;
  for (gid_t g : groups) out.push_back(std::to_string(g));
  return out;
}

std::vector<std::string> four(unsigned id) { return std::vector<std::string>(4, std::to_string(id)); }

// A directory of our own with a rateguard.conf and limits.conf, for starts that are expected to fail.
struct conf_dir {
  std::string dir;
  explicit conf_dir(const std::string& settings) {
    char tmpl[] = "/tmp/rg-priv-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    dir = tmpl;
    std::ofstream(dir + "/limits.conf") << "sasl_username * 10/1h defer\n";
    std::ofstream(dir + "/rateguard.conf")
        << "listen = unix:" << dir << "/policy.sock\nlimits = limits.conf\ncontrol_socket = " << dir
        << "/control.sock\n" << settings;
  }
  ~conf_dir() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::string conf() const { return dir + "/rateguard.conf"; }
};

// Forks a child that becomes `uid`/`gid` (no other groups) and asks one policy request over `path`.
// Returns 0 when it was answered DUNNO, 2 when connect failed, 3 for any other answer.
int ask_as(uid_t uid, gid_t gid, const std::string& path) {
  const pid_t pid = fork();
  if (pid == 0) {
    if (setgroups(0, nullptr) != 0 || setgid(gid) != 0 || setuid(uid) != 0) _exit(4);
    try {
      policy_client c(path);
      _exit(c.ask(rcpt_request("carol", "as-" + std::to_string(uid))) == "DUNNO" ? 0 : 3);
    } catch (...) {
      _exit(2);
    }
  }
  int st = 0;
  for (int i = 0; i < 500 && waitpid(pid, &st, WNOHANG) != pid; ++i) usleep(10000);
  if (!WIFEXITED(st)) {
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
  }
  return WEXITSTATUS(st);
}

// Postfix's own account when installed (CI installs Postfix), else Debian's "daemon".
std::string postfix_account() { return getpwnam("postfix") ? "postfix" : "daemon"; }

}  // namespace

TEST_CASE("started as root with user = nobody the daemon serves as nobody with no capability left",
          "[privileges]") {
  REQUIRE(geteuid() == 0);
  const uid_t nobody = uid_of("nobody");
  for (const std::string group : {"", "mail"}) {
    DYNAMIC_SECTION("group = " << group) {
      const gid_t gid = group.empty() ? getpwnam("nobody")->pw_gid : gid_of(group);
      daemon_process d("sasl_username * 2/1h defer\n",
                       "user = nobody\n" + (group.empty() ? "" : "group = " + group + "\n"));
      policy_client c(d.socket_path());
      // Answered means started, and the drop happens before serving.
      CHECK(c.ask(rcpt_request("alice", "p1")) == "DUNNO");
      REQUIRE(d.wait_for_log("running as user nobody (uid " + std::to_string(nobody) + ", gid " +
                             std::to_string(gid) + ")"));
      CHECK(status_fields(d.pid(), "Uid") == four(nobody));  // real, effective, saved, file system
      CHECK(status_fields(d.pid(), "Gid") == four(gid));
      CHECK(status_fields(d.pid(), "Groups") == expected_groups("nobody", gid));
      CHECK(status_fields(d.pid(), "CapEff") == std::vector<std::string>{"0000000000000000"});
      CHECK(status_fields(d.pid(), "CapPrm") == std::vector<std::string>{"0000000000000000"});
      // Still counting after the drop, and the root-opened log file still written.
      CHECK(c.ask(rcpt_request("alice", "p2")) == "DUNNO");
      CHECK(c.ask(rcpt_request("alice", "p3")).rfind("450 4.7.1 ", 0) == 0);
      CHECK(d.wait_for_log("NOQUEUE: defer: key=sasl_username:alice"));
      CHECK(d.stop() == 0);
    }
  }
}

TEST_CASE("a unix socket in a Postfix-like private dir gets the configured owner and mode before the drop",
          "[privileges]") {
  REQUIRE(geteuid() == 0);
  const std::string owner = postfix_account();
  const uid_t owner_uid = uid_of(owner);
  const gid_t owner_gid = getpwnam(owner.c_str())->pw_gid;
  const std::string owner_group = getgrgid(owner_gid)->gr_name;
  // Like /var/spool/postfix/private: owned by Postfix's account, 0700, inside a world-traversable dir.
  conf_dir spool("");
  const std::string priv = spool.dir + "/private";
  std::filesystem::create_directory(priv);
  REQUIRE(chown(priv.c_str(), owner_uid, 0) == 0);
  REQUIRE(chmod(priv.c_str(), 0700) == 0);
  REQUIRE(chmod(spool.dir.c_str(), 0755) == 0);
  const std::string sock = priv + "/rateguard";

  daemon_process d("sasl_username * 10/1h defer\n", "listen = unix:" + sock +
                                                        "\nunix_socket_owner = " + owner + ":" + owner_group +
                                                        "\nunix_socket_mode = 0660\nuser = nobody\n");
  REQUIRE(d.wait_for_log("running as user nobody"));
  struct stat st {};
  REQUIRE(lstat(sock.c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK(st.st_uid == owner_uid);
  CHECK(st.st_gid == owner_gid);
  CHECK((st.st_mode & 07777) == 0660);
  // Postfix's account reaches the daemon (which runs as nobody); nobody else gets through the directory.
  CHECK(ask_as(owner_uid, owner_gid, sock) == 0);
  CHECK(ask_as(uid_of("nobody"), gid_of("nogroup"), sock) == 2);
}

TEST_CASE("as root without user it refuses to start with exit 78 naming the user setting", "[privileges]") {
  REQUIRE(geteuid() == 0);
  conf_dir c("");
  std::string out;
  CHECK(run_command({"timeout", "20", RG_DAEMON, "-c", c.conf()}, &out) == 78);
  CHECK(out.find("fatal: " + c.conf() + ": refusing to run as root: set user = ") != std::string::npos);
  CHECK(out.find("allow_root = yes") != std::string::npos);
  // Refused before binding: no socket was created.
  CHECK_FALSE(std::filesystem::exists(c.dir + "/policy.sock"));
  // --check says the same, so ExecStartPre stops a unit that would fail.
  CHECK(run_command({"timeout", "20", RG_DAEMON, "--check", "-c", c.conf()}, &out) == 78);
  CHECK(out.find("refusing to run as root") != std::string::npos);
}

TEST_CASE("unknown user or group and root accounts are fatal at start-up with exit 78", "[privileges]") {
  struct bad {
    std::string settings, message;
  };
  for (const auto& b :
       {bad{"user = rg-no-such-user\n", "user: unknown user \"rg-no-such-user\""},
        bad{"user = nobody\ngroup = rg-no-such-group\n", "group: unknown group \"rg-no-such-group\""},
        bad{"user = root\n", "user: \"root\" has uid 0"},
        bad{"user = nobody\ngroup = root\n", "group: \"root\" has gid 0"},
        bad{"group = nogroup\n", "group is set but user is not"}}) {
    DYNAMIC_SECTION(b.settings) {
      conf_dir c(b.settings);
      std::string out;
      CHECK(run_command({"timeout", "20", RG_DAEMON, "-c", c.conf()}, &out) == 78);
      CHECK(out.find("fatal: " + c.conf() + ": " + b.message) != std::string::npos);
      CHECK_FALSE(std::filesystem::exists(c.dir + "/policy.sock"));
      CHECK(run_command({"timeout", "20", RG_DAEMON, "--check", "-c", c.conf()}, &out) == 78);
      CHECK(out.find(b.message) != std::string::npos);
    }
  }
}

TEST_CASE("allow_root = yes without user keeps running as root and says so", "[privileges]") {
  REQUIRE(geteuid() == 0);
  daemon_process d("sasl_username * 10/1h defer\n", "allow_root = yes\n");
  policy_client c(d.socket_path());
  CHECK(c.ask(rcpt_request("alice", "r1")) == "DUNNO");
  CHECK(d.wait_for_log("warning: running as root (allow_root = yes)"));
  CHECK(status_fields(d.pid(), "Uid") == four(0));
  CHECK(d.log().find("running as user") == std::string::npos);
}

TEST_CASE("SIGHUP after the drop reloads limits readable by the user and refuses unreadable ones",
          "[privileges]") {
  REQUIRE(geteuid() == 0);
  daemon_process d("sasl_username * 5/1h defer\n", "user = nobody\n");
  policy_client c(d.socket_path());
  REQUIRE(d.wait_for_log("running as user nobody"));
  // Answered: the event loop runs, so the SIGHUP handler is installed (main.cpp installs it after logging
  // "running as user" and "started"; a SIGHUP before that would end the daemon, as it did once in a loaded
  // sanitizer run).
  REQUIRE(c.ask(rcpt_request("alice", "h0")) == "DUNNO");
  // The fixture's dir is root's 0700: as nobody the daemon cannot read its limits any more.
  d.write_limits("sasl_username * 1/1h defer\n");
  d.signal(SIGHUP);
  REQUIRE(d.wait_for_log("reload refused: keeping the previous configuration and limits"));
  CHECK(d.log().find("Permission denied") != std::string::npos);
  CHECK(c.ask(rcpt_request("alice", "h1")) == "DUNNO");
  CHECK(c.ask(rcpt_request("alice", "h2")) == "DUNNO");  // still 5/1h
  // Readable by the user (what README asks for): the new limit applies to the next message.
  REQUIRE(chmod(d.dir().c_str(), 0755) == 0);
  d.signal(SIGHUP);
  REQUIRE(d.wait_for_log("reload: " + d.dir() + "/limits.conf (1 rules)"));
  CHECK(c.ask(rcpt_request("alice", "h3")).find("at most 1 messages per 1h") != std::string::npos);
  CHECK(status_fields(d.pid(), "Uid") == four(uid_of("nobody")));
}

TEST_CASE("started unprivileged it runs as user only when it already is that user", "[privileges]") {
  REQUIRE(geteuid() == 0);
  conf_dir c("user = nobody\n");
  REQUIRE(chmod(c.dir.c_str(), 0777) == 0);  // so nobody can create its socket there
  std::string out;
  // As nobody itself: nothing to switch, it serves until timeout(1) stops it (TERM, then exit 124). 5 s: by
  // then even a sanitized daemon on a busy machine has logged "started".
  CHECK(run_command({"timeout", "5", "setpriv", "--reuid=nobody", "--regid=nogroup", "--init-groups",
                     RG_DAEMON, "-c", c.conf()},
                    &out) == 124);
  CHECK(out.find("rateguardd " RG_VERSION " started") != std::string::npos);
  CHECK(out.find("running as user") == std::string::npos);
  // As another unprivileged account it cannot become nobody: refused before binding.
  CHECK(run_command({"timeout", "20", "setpriv", "--reuid=daemon", "--regid=daemon", "--init-groups",
                     RG_DAEMON, "-c", c.conf()},
                    &out) == 78);
  CHECK(out.find("fatal: " + c.conf() + ": user: started as uid " + std::to_string(uid_of("daemon")) +
                 ", not as root nor as \"nobody\"") != std::string::npos);
}

TEST_CASE("the sample configuration of README's quick start runs as nobody when started as root",
          "[privileges]") {
  REQUIRE(geteuid() == 0);
  std::string out;
  CHECK(run_command({"timeout", "20", RG_DAEMON, "--check", "-c", RG_SAMPLE_CONF "/rateguard.conf"}, &out) ==
        0);
  CHECK(run_command({"timeout", "20", RG_DAEMON, "-n", "-c", RG_SAMPLE_CONF "/rateguard.conf"}, &out) == 0);
  CHECK(out.find("user = nobody\ngroup = nogroup\n") != std::string::npos);
  // A copy listening on a unix socket of its own instead of the shared port 10033.
  conf_dir c("");
  REQUIRE(chmod(c.dir.c_str(), 0755) == 0);
  std::ifstream in(RG_SAMPLE_CONF "/rateguard.conf");
  std::ofstream conf(c.conf());
  for (std::string line; std::getline(in, line);)
    conf << (line.rfind("listen =", 0) == 0 ? "listen = unix:" + c.dir + "/policy.sock" : line) << "\n";
  conf << "control_socket = " << c.dir << "/control.sock\n";
  conf.close();
  std::filesystem::copy_file(RG_SAMPLE_CONF "/limits.conf", c.dir + "/limits.conf",
                             std::filesystem::copy_options::overwrite_existing);
  CHECK(run_command({"timeout", "5", RG_DAEMON, "-c", c.conf()}, &out) ==
        124);  // ran until timeout stopped it (5 s: long enough to have logged its start on a busy machine)
  CHECK(out.find("running as user nobody (uid " + std::to_string(uid_of("nobody"))) != std::string::npos);
  CHECK(out.find("rateguardd " RG_VERSION " started") != std::string::npos);
}
