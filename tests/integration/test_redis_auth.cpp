// The real rateguardd against a real redis-server that demands AUTH: requirepass and an ACL user (the
// ACL line README documents), a wrong password (clear log line, on_store_error answers, reconnects once
// Redis accepts it), redis_db, the password file's handling, and the password never printed anywhere.
// Not here: the store's counting itself (test_redis_store.cpp).
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "daemon_fixture.hpp"
#include "redis_fixture.hpp"

using namespace rg::test;

namespace {

// Distinctive, so a grep cannot match anything else.
const std::string password = "pw-7f3Kq9-never-logged";
// README's least-privilege ACL for rateguard (key pattern = redis_prefix).
const std::vector<std::string> acl_rules = {"on",      ">" + password, "~rg:*",      "resetchannels",
                                            "-@all",   "+@read",       "+@write",    "+@scripting",
                                            "+select", "+time",        "-@dangerous"};

// requirepass, optionally also on a loopback TCP port.
redis_server_options with_requirepass(bool tcp = false) {
  redis_server_options o;
  o.tcp = tcp;
  o.password = password;
  return o;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A password file in a directory of its own (the daemon's directory exists only once it runs).
struct secret_file {
  std::string dir, path;
  explicit secret_file(const std::string& content, mode_t mode = 0600) {
    char tmpl[] = "/tmp/rg-secret-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    dir = tmpl;
    path = dir + "/redis.password";
    std::ofstream(path) << content;
    REQUIRE(chmod(path.c_str(), mode) == 0);
  }
  ~secret_file() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

// Everything the daemon ever printed, plus its -n output.
std::string everything_printed(const daemon_process& d) {
  std::string n;
  run_command({"timeout", "20", RG_DAEMON, "-n", "-c", d.dir() + "/rateguard.conf"}, &n);
  return d.log() + read_file(d.dir() + "/stderr") + n;
}

// Sends `n` messages from `user`; returns how many were answered DUNNO.
int dunno_count(policy_client& c, const std::string& user, int n, const std::string& tag) {
  int dunno = 0;
  for (int i = 0; i < n; ++i) dunno += c.ask(rcpt_request(user, tag + std::to_string(i))) == "DUNNO";
  return dunno;
}

}  // namespace

TEST_CASE("requirepass: the password from a file with a trailing newline authenticates and is never printed",
          "[redis_auth]") {
  redis_server redis(with_requirepass());
  secret_file secret(password + "\n");
  daemon_process d("sasl_username * 3/1h defer\n",
                   redis.daemon_settings() + "redis_password_file = " + secret.path + "\n");
  REQUIRE(d.wait_for_log("redis " + redis.socket_path() + ": connected"));
  policy_client c(d.socket_path());
  CHECK(dunno_count(c, "alice", 5, "rp") == 3);  // the limit holds: counted in Redis
  CHECK(redis.command({"EXISTS", "rg:{u:alice}"}) == "1");
  const auto printed = everything_printed(d);
  CHECK(printed.find("redis_password_file = " + secret.path) != std::string::npos);  // -n names the file
  CHECK(printed.find(password) == std::string::npos);
}

TEST_CASE("an ACL user with README's rules works with redis_username and redis_password_file",
          "[redis_auth]") {
  std::vector<std::string> args = {"--user", "rateguard"};
  args.insert(args.end(), acl_rules.begin(), acl_rules.end());
  redis_server_options opts;
  opts.extra_args = args;
  redis_server redis(opts);
  secret_file secret(password + "\r\n");
  daemon_process d("sasl_username * 3/1h defer\n",
                   redis.daemon_settings() + "redis_username = rateguard\nredis_password_file = " +
                       secret.path + "\n");
  REQUIRE(d.wait_for_log("redis " + redis.socket_path() + ": connected"));
  policy_client c(d.socket_path());
  CHECK(dunno_count(c, "bob", 5, "acl") == 3);
  CHECK(redis.command({"EXISTS", "rg:{u:bob}"}) == "1");
  // The connection is really the ACL user's, and the user really is restricted.
  CHECK(redis.command({"CLIENT", "LIST"}).find("user=rateguard") != std::string::npos);
  CHECK(redis.command({"ACL", "DRYRUN", "rateguard", "FLUSHALL"}).find("no permissions") !=
        std::string::npos);
  CHECK(everything_printed(d).find(password) == std::string::npos);
}

TEST_CASE(
    "a refused AUTH is logged clearly without the password and answered per on_store_error until Redis "
    "accepts it",
    "[redis_auth]") {
  redis_server redis;  // no user "rateguard" yet: AUTH fails with WRONGPASS
  secret_file secret(password + "\n");
  daemon_process d("sasl_username * 2/1h defer\n",
                   redis.daemon_settings() + "redis_username = rateguard\nredis_password_file = " +
                       secret.path + "\non_store_error = defer\n");
  REQUIRE(d.wait_for_log("redis " + redis.socket_path() + ": cannot connect: AUTH: WRONGPASS"));
  policy_client c(d.socket_path());
  CHECK(c.ask(rcpt_request("carol", "w1")).rfind("451 4.3.0 ", 0) == 0);
  CHECK(d.wait_for_log("store-error: error=\"redis not connected\""));
  // The reconnect backoff goes on: once Redis knows the user, the daemon gets in by itself.
  std::vector<std::string> setuser = {"ACL", "SETUSER", "rateguard"};
  setuser.insert(setuser.end(), acl_rules.begin(), acl_rules.end());
  REQUIRE(redis.command(setuser) == "OK");
  REQUIRE(d.wait_for_log("redis " + redis.socket_path() + ": connection restored", 5000));
  CHECK(dunno_count(c, "carol", 3, "w") == 2);
  const auto printed = everything_printed(d);
  CHECK(printed.find(password) == std::string::npos);
}

TEST_CASE("redis_db = 3 puts every key in database 3 and none in 0", "[redis_auth]") {
  redis_server redis(with_requirepass());
  secret_file secret(password);  // no line ending at all
  daemon_process d("sasl_username * 3/1h defer\n",
                   redis.daemon_settings() + "redis_db = 3\nredis_password_file = " + secret.path + "\n");
  REQUIRE(d.wait_for_log("redis " + redis.socket_path() + ": connected"));
  policy_client c(d.socket_path());
  CHECK(dunno_count(c, "dave", 4, "db") == 3);
  CHECK(redis.command({"EXISTS", "rg:{u:dave}"}, 3) == "1");
  const auto keys = redis.command_list({"KEYS", "*"}, 3);
  CHECK(std::to_string(keys.size()) == redis.command({"DBSIZE"}, 3));
  for (const auto& k : keys) CHECK(k.rfind("rg:", 0) == 0);
  CHECK(redis.command({"DBSIZE"}, 0) == "0");
}

TEST_CASE("the password file must exist and hold a password and should be private", "[redis_auth]") {
  redis_server redis(with_requirepass());
  const std::string base = redis.daemon_settings();
  // A start expected to fail, from a rateguard.conf in `dir`; returns the exit status, output in `out`.
  auto start_in = [&](const std::string& dir, const std::string& password_file, std::string& out) {
    std::ofstream(dir + "/limits.conf") << "sasl_username * 3/1h defer\n";
    std::ofstream(dir + "/rateguard.conf")
        << "allow_root = yes\nlimits = limits.conf\nlisten = unix:" << dir << "/s.sock\n"
        << base << "redis_password_file = " << password_file << "\n";
    return run_command({"timeout", "20", RG_DAEMON, "-c", dir + "/rateguard.conf"}, &out);
  };
  SECTION("missing: fatal at start-up with the file name") {
    secret_file secret(password);
    const std::string missing = secret.dir + "/no-such-file";
    std::string out;
    CHECK(start_in(secret.dir, missing, out) == 78);
    CHECK(out.find("fatal: " + secret.dir + "/rateguard.conf: redis_password_file " + missing +
                   ": No such file or directory") != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(secret.dir + "/s.sock"));
  }
  SECTION("empty or blank: fatal, not a silent start without AUTH") {
    for (const std::string content : {"", "\n", "  \r\n"}) {
      secret_file secret(content);
      std::string out;
      CHECK(start_in(secret.dir, secret.path, out) == 78);
      CHECK(out.find("fatal: " + secret.dir + "/rateguard.conf: redis_password_file " + secret.path +
                     ": the first line is empty") != std::string::npos);
      CHECK_FALSE(std::filesystem::exists(secret.dir + "/s.sock"));
    }
  }
  SECTION("readable by every user: a warning, and it still works") {
    secret_file secret(password + "\n", 0644);
    daemon_process d("sasl_username * 3/1h defer\n", base + "redis_password_file = " + secret.path + "\n");
    CHECK(d.wait_for_log("warning: redis_password_file " + secret.path + " is readable by every user"));
    CHECK(d.wait_for_log("redis " + redis.socket_path() + ": connected"));
    CHECK(everything_printed(d).find(password) == std::string::npos);
  }
}

TEST_CASE("dropped to nobody the daemon still authenticates with a root-only password file", "[redis_auth]") {
  // Over TCP: the fixture's unix socket sits in root's 0700 dir, out of nobody's reach.
  redis_server redis(with_requirepass(true));
  secret_file secret(password + "\n", 0600);
  daemon_process d("sasl_username * 2/1h defer\n",
                   "store = redis\nredis = 127.0.0.1:" + std::to_string(redis.tcp_port()) +
                       "\nredis_password_file = " + secret.path + "\nuser = nobody\n");
  REQUIRE(d.wait_for_log("running as user nobody"));
  REQUIRE(d.wait_for_log(": connected"));
  policy_client c(d.socket_path());
  CHECK(dunno_count(c, "erin", 3, "nb") == 2);
  CHECK(redis.command({"EXISTS", "rg:{u:erin}"}) == "1");
  CHECK(everything_printed(d).find(password) == std::string::npos);
}
