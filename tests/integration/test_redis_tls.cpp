// TLS to Redis with real processes: redis-server (and redis-sentinel) serving TLS only, with a CA and
// certificates the test makes with openssl, and the real daemon. What must be refused is refused with a line
// that says why (a wrong CA, a certificate for another name, no client certificate where one is required).
// The whole [redis] suite also runs over TLS: the "tls:" tests (tests/CMakeLists.txt, RG_REDIS_TLS).
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <unistd.h>

#include "daemon_fixture.hpp"
#include "redis_fixture.hpp"

using namespace rg::test;
using namespace std::chrono_literals;

namespace {

const std::string limits = "sasl_username * 3/1h defer\n";

// This process's certificates (RG_REDIS_TLS's when set), removed at exit if made here.
const tls_files& certificates() {
  struct made {
    made() : files(tls_from_environment() ? *tls_from_environment() : make_tls_files(dir())) {}
    ~made() {
      if (!tls_from_environment()) {
        std::error_code ignored;
        std::filesystem::remove_all(files.dir, ignored);
      }
    }
    static std::string dir() { return "/tmp/rg-tls-test-" + std::to_string(getpid()); }
    tls_files files;
  };
  static const made m;
  return m.files;
}

redis_server_options tls_server(std::vector<std::string> args = {}) {
  redis_server_options o;
  o.tls = &certificates();
  o.extra_args = std::move(args);
  return o;
}

std::string tls_settings(const redis_server& r, const std::string& ca) {
  return "store = redis\nredis = " + r.address() + "\nredis_tls = yes\nredis_tls_ca_file = " + ca +
         "\nredis_timeout = 1s\non_store_error = defer\n";
}

// Three requests of `user`: the answers' first words, "DUNNO DUNNO DUNNO" when Redis counts.
std::string ask_three(const daemon_process& d, const std::string& user) {
  policy_client c(d.socket_path());
  std::string out;
  for (int i = 0; i < 3; ++i) {
    const auto a = c.ask(rcpt_request(user, user + std::to_string(i)));
    out += (out.empty() ? "" : " ") + a.substr(0, a.find(' '));
  }
  return out;
}

}  // namespace

TEST_CASE("TLS: the store counts over TLS and a wrong CA is refused with a clear log line", "[redis_tls]") {
  redis_server redis(tls_server());
  const auto& tls = certificates();
  SECTION("the right CA") {
    daemon_process d(limits, tls_settings(redis, tls.ca()));
    REQUIRE(d.wait_for_log("redis " + redis.address() + ": connected"));
    CHECK(ask_three(d, "tina") == "DUNNO DUNNO DUNNO");
    CHECK(redis_count(redis, "tina") == 3);
  }
  SECTION("a wrong CA: refused, and the log says why") {
    daemon_process d(limits, tls_settings(redis, tls.other_ca()));
    d.wait_for_log("cannot connect");
    INFO(d.log());
    // "... certificate verify failed (SSL routines) (self-signed certificate in certificate chain, server name
    // 127.0.0.1)": OpenSSL's words for a chain that does not end at the configured CA.
    CHECK(d.wait_for_log("warning: redis " + redis.address() + ": cannot connect: TLS handshake: certificate verify failed"));
    CHECK(d.wait_for_log("certificate chain, server name 127.0.0.1)"));
    CHECK(ask_three(d, "tina") == "451 451 451");  // on_store_error
    CHECK(redis_count(redis, "tina") == 0);
  }
  SECTION("a certificate for another name: refused") {
    daemon_process d(limits, tls_settings(redis, tls.ca()) + "redis_tls_server_name = redis.example\n");
    d.wait_for_log("cannot connect");
    INFO(d.log());
    CHECK(d.wait_for_log("warning: redis " + redis.address() + ": cannot connect: TLS handshake: certificate verify failed"));
    CHECK(ask_three(d, "tina") == "451 451 451");
  }
  SECTION("the name the certificate carries, other than the address") {
    daemon_process d(limits, tls_settings(redis, tls.ca()) + "redis_tls_server_name = localhost\n");
    REQUIRE(d.wait_for_log("redis " + redis.address() + ": connected"));
    CHECK(ask_three(d, "tina") == "DUNNO DUNNO DUNNO");
  }
}

TEST_CASE("TLS: a server that requires client certificates gets the configured one", "[redis_tls]") {
  redis_server redis(tls_server({"--tls-auth-clients", "yes"}));
  const auto& tls = certificates();
  SECTION("without one: refused by the server") {
    daemon_process d(limits, tls_settings(redis, tls.ca()));
    CHECK(d.wait_for_log("warning: redis " + redis.address() + ": cannot connect: "));
    CHECK(ask_three(d, "ted") == "451 451 451");
  }
  SECTION("with redis_tls_cert_file and redis_tls_key_file") {
    daemon_process d(limits, tls_settings(redis, tls.ca()) + "redis_tls_cert_file = " + tls.client_cert() +
                                 "\nredis_tls_key_file = " + tls.client_key() + "\n");
    REQUIRE(d.wait_for_log("redis " + redis.address() + ": connected"));
    CHECK(ask_three(d, "ted") == "DUNNO DUNNO DUNNO");
    CHECK(redis_count(redis, "ted") == 3);
  }
}

TEST_CASE("TLS: a missing CA file is refused at start-up with the setting's name", "[redis_tls]") {
  redis_server redis(tls_server());
  const std::string dir = redis.dir() + "/daemon";
  std::filesystem::create_directory(dir);
  std::ofstream(dir + "/limits.conf") << limits;
  std::ofstream(dir + "/rateguard.conf") << "allow_root = yes\nlimits = limits.conf\nlisten = unix:" << dir
                                         << "/s.sock\ncontrol_socket =\n"
                                         << tls_settings(redis, dir + "/no-such-ca.pem");
  std::string out;
  CHECK(run_command({"timeout", "20", RG_DAEMON, "-c", dir + "/rateguard.conf"}, &out) == 78);
  CHECK(out.find("redis_tls_ca_file " + dir + "/no-such-ca.pem: ") != std::string::npos);
}

TEST_CASE("TLS with Sentinel: the sentinels and the master over TLS", "[redis_tls][sentinel]") {
  // Sentinels reach the master and the replica over TLS (tls-replication), as rateguardd reaches them.
  redis_server master(tls_server());
  redis_server_options so = tls_server({"--tls-replication", "yes"});
  so.program = "redis-sentinel";
  so.config_text = "sentinel monitor rgm 127.0.0.1 " + std::to_string(master.tcp_port()) + " 1\n";
  redis_server sentinel(so);
  const auto& tls = certificates();
  daemon_process d(limits, "store = redis\nsentinels = 127.0.0.1:" + std::to_string(sentinel.tcp_port()) +
                               "\nsentinel_master = rgm\nredis_tls = yes\nredis_tls_ca_file = " + tls.ca() +
                               "\nredis_timeout = 1s\non_store_error = defer\n");
  REQUIRE(d.wait_for_log("redis master \"rgm\" at 127.0.0.1:" + std::to_string(master.tcp_port()) + ": connected"));
  CHECK(ask_three(d, "tess") == "DUNNO DUNNO DUNNO");
  CHECK(redis_count(master, "tess") == 3);
}
