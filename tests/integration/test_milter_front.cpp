// The milter front through the real daemon: sendmail mail over a local_user limit is quarantined, the account is
// locked and each held queue ID is journaled; the same SMTP traffic gets the same decisions from the milter front
// as from the policy front, and one sender counter serves both; hostile milter input closes only its own
// connection while another milter connection is served.
#include <pwd.h>
#include <stdlib.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "daemon_fixture.hpp"
#include "milter_client.hpp"
#include "timing.hpp"

using namespace rg::test;
using namespace std::chrono_literals;
using rg::milter::be32;

namespace {

// A private directory for the milter socket (the daemon's own directory is made by its fixture).
struct socket_dir {
  socket_dir() {
    char tmpl[] = "/tmp/rg-milter-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~socket_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string endpoint() const { return "unix:" + path + "/milter.sock"; }
  std::string path;
};

// An account of this machine, for the submitter header (its name is what the log must show).
std::pair<std::string, std::string> local_account() {
  const passwd* pw = ::getpwnam("nobody");
  REQUIRE(pw != nullptr);
  return {pw->pw_name, std::to_string(pw->pw_uid)};
}

// What cleanup-local sends for one sendmail message: rg-pickup's connection, the X-RG-Submitter header that its
// header_checks PREPEND first, then the script's headers.
milter_outcome pickup_message(const std::string& endpoint, const std::string& queue_id, const std::string& uid,
                              const std::vector<std::pair<std::string, std::string>>& script_headers = {},
                              const std::string& daemon_name = "rg-pickup", std::string submitter_id = "") {
  if (submitter_id.empty()) submitter_id = queue_id;
  milter_client c(endpoint);
  REQUIRE(c.negotiate());
  milter_connection conn;
  for (auto& [name, value] : conn.macros)
    if (name == "{daemon_name}") value = daemon_name;
  REQUIRE(c.open(conn).ok());
  auto msg = sendmail_message(queue_id, "www-data@host.example", {"a@example.net", "b@example.org"});
  msg.headers.insert(msg.headers.begin(), script_headers.begin(), script_headers.end());
  msg.headers.insert(msg.headers.begin(), {"X-RG-Submitter", "uid=" + uid + " id=" + submitter_id});
  auto out = c.send(msg);
  c.quit();
  return out;
}

// smtpd's shape: the client's address at CONNECT, {auth_authen} at MAIL, the queue ID from the second RCPT on.
milter_outcome smtpd_message(milter_client& c, const std::string& login, const std::string& sender,
                             const std::string& queue_id) {
  milter_message m;
  m.mail_macros = {{"{auth_type}", "PLAIN"}, {"{auth_authen}", login}, {"{mail_addr}", sender}};
  m.mail_args = {"<" + sender + ">"};
  m.rcpts.push_back({{"<x@example.net>"}, {{"{rcpt_addr}", "x@example.net"}}});
  m.headers = {{"Subject", "hello"}};
  m.eom_macros = {{"i", queue_id}};
  m.body = "hello\r\n";
  return c.send(m);
}

// The EOM answer as the policy front would word it: "DUNNO", "HOLD", or the 4xx/5xx reply text.
std::string answer(const milter_outcome& o) {
  if (!o.ok()) return "error: " + o.error;
  if (o.quarantined()) return "HOLD";
  if (o.final_command() == 'c') return "DUNNO";
  if (o.final_command() == 'y') return o.eom.back().data;
  return std::string("reply ") + o.final_command();
}

}  // namespace

TEST_CASE("milter front: sendmail mail over a local_user limit is quarantined, locked and journaled", "[milter]") {
  socket_dir dir;
  const auto [name, uid] = local_account();
  daemon_process d("local_user * 3/1h hold\n", "milter = " + dir.endpoint() + "\nlock_time = 1h\n");
  std::vector<std::string> got;
  for (int i = 1; i <= 6; ++i) got.push_back(answer(pickup_message(dir.endpoint(), "QM" + std::to_string(i), uid)));
  CHECK(got == std::vector<std::string>{"DUNNO", "DUNNO", "DUNNO", "HOLD", "HOLD", "HOLD"});
  // The 4th trips the rule and locks the account; the 5th and 6th are held by the lock. Each line starts with the
  // queue ID and names the account, the recipients and the fake client Postfix gives local mail.
  REQUIRE(d.wait_for_log("QM6: hold:"));
  CHECK(d.log_count("QM4: hold: key=local_user:" + name + " rule=") == 1);
  CHECK(d.log_count("NOQUEUE: lock: key=local_user:" + name) + d.log_count("QM4: lock: key=local_user:" + name) == 1);
  CHECK(d.log_count("locked=local_user:" + name) == 2);
  CHECK(d.log_count(" recipients=2 local_user=" + name) == 3);
  // Every held queue ID is in the hold journal.
  std::string holds;
  for (int i = 0; i < 100; ++i) {  // journal writes complete after the answers: bounded wait
    REQUIRE(d.ctl({"holds"}, &holds) == 0);
    if (holds.find("QM6") != std::string::npos) break;
    std::this_thread::sleep_for(20ms);
  }
  for (const char* q : {"QM4", "QM5", "QM6"}) CHECK(holds.find(q) != std::string::npos);
  CHECK(holds.find("QM3") == std::string::npos);
  // status shows the account's count (the held messages were accepted into the hold queue, so they count).
  std::string status;
  REQUIRE(d.ctl({"status", "local_user:" + name}, &status) == 0);
  INFO(status);
  CHECK(std::regex_search(status, std::regex(R"(messages +1h +6 )")));
  CHECK(status.find("locked until") != std::string::npos);
}

TEST_CASE("milter front: forged submitter headers never change the account", "[milter]") {
  socket_dir dir;
  const auto [name, uid] = local_account();
  daemon_process d("local_user * 1/1h warn\n", "milter = " + dir.endpoint() + "\n");
  // The script's own X-RG-Submitter naming root (header_checks would have removed it, but even when it comes
  // second it is not trusted), a forged X-PHP-Originating-Script (only a hint), and a forged Received.
  CHECK(answer(pickup_message(dir.endpoint(), "QF1", uid,
                              {{"X-RG-Submitter", "uid=0 id=QF1"},
                               {"X-PHP-Originating-Script", "0:/root/evil.php"},
                               {"Received", "by mx (Postfix, from userid 0) id QF1; now"}})) == "DUNNO");
  CHECK(answer(pickup_message(dir.endpoint(), "QF2", uid)) == "DUNNO");  // 2 > 1: warn, still accepted
  REQUIRE(d.wait_for_log("QF2: warn:"));
  CHECK(d.log_count("key=local_user:" + name + " ") == 1);
  CHECK(d.log_count("local_user:root") == 0);
  CHECK(d.log_count("local_user:0") == 0);
  // A header naming another queue ID (what a forged one would have), or from a cleanup other than rg-pickup,
  // gives no account at all: nothing is counted under local_user.
  CHECK(answer(pickup_message(dir.endpoint(), "QF3", "0", {}, "rg-pickup", "FORGED")) == "DUNNO");
  CHECK(answer(pickup_message(dir.endpoint(), "QF4", uid, {}, "mx.example")) == "DUNNO");
  std::string status;
  REQUIRE(d.ctl({"status", "local_user:" + name}, &status) == 0);
  INFO(status);
  CHECK(std::regex_search(status, std::regex(R"(messages +1h +2 )")));
}

TEST_CASE("milter front: the same SMTP traffic gets the policy front's decisions, and one sender counter serves both",
          "[milter]") {
  socket_dir dir;
  daemon_process d("sasl_username * 3/1h defer\nsender shop@example.com 4/1h defer\n",
                   "milter = " + dir.endpoint() + "\n");
  // alice through the policy front, bob through the milter front (smtpd_milters): one message each, 5 times.
  policy_client policy(d.socket_path());
  milter_client m(dir.endpoint());
  REQUIRE(m.negotiate());
  milter_connection conn;
  conn.host = "[192.0.2.7]";
  conn.port = 40000;
  conn.address = "192.0.2.7";
  REQUIRE(m.open(conn).ok());
  for (int i = 1; i <= 5; ++i) {
    const std::string via_policy = policy.ask(rcpt_request("alice", "p" + std::to_string(i)));
    const std::string via_milter = answer(smtpd_message(m, "bob", "bob@example.com", "QS" + std::to_string(i)));
    INFO("message " << i);
    // Same answers, with the user's name the only difference.
    CHECK(via_milter == via_policy);
  }
  CHECK(d.log_count("key=sasl_username:bob rule=") == 2);
  // A sender limit of 4: 2 messages through each front fill it, the 5th is refused on either.
  milter_client m2(dir.endpoint());
  REQUIRE(m2.negotiate());
  REQUIRE(m2.open(conn).ok());
  CHECK(policy.ask(rcpt_request("carol", "s1", "", "127.0.0.1", "shop@example.com")) == "DUNNO");
  CHECK(answer(smtpd_message(m2, "dave", "shop@example.com", "QT1")) == "DUNNO");
  CHECK(policy.ask(rcpt_request("carol", "s2", "", "127.0.0.1", "shop@example.com")) == "DUNNO");
  CHECK(answer(smtpd_message(m2, "dave", "shop@example.com", "QT2")) == "DUNNO");
  CHECK(answer(smtpd_message(m2, "dave", "shop@example.com", "QT3")).rfind("450 4.7.1 ", 0) == 0);
  CHECK(policy.ask(rcpt_request("carol", "s3", "", "127.0.0.1", "shop@example.com")).rfind("450 4.7.1 ", 0) == 0);
}

TEST_CASE("milter front: hostile input closes only its own connection", "[milter][hostile]") {
  socket_dir dir;
  const auto [name, uid] = local_account();
  daemon_process d("local_user * 1000000/1h hold\n", "milter = " + dir.endpoint() + "\nrequest_timeout = 1s\n");
  // A connection in the middle of a message (as smtpd keeps one) must see none of it.
  milter_client bystander(dir.endpoint());
  REQUIRE(bystander.negotiate());
  REQUIRE(bystander.open(milter_connection{}).ok());
  const std::string negotiate = rg::milter::encode('O', be32(6) + be32(0x1ff) + be32(0x1fffff));
  struct row {
    const char* what;
    std::string bytes;
    const char* log;
  };
  const std::vector<row> attacks = {
      {"zero length", be32(0), "bad milter packet"},
      {"negative length (2^32 - 1)", be32(0xffffffff), "bad milter packet"},
      {"oversized (1 MB)", be32(1 << 20) + "O", "bad milter packet"},
      {"unknown command", negotiate + rg::milter::encode('Z', "x"), "unknown milter command 0x5a"},
      {"command before negotiation", rg::milter::encode('M', "<a@b>\0"), "command before option negotiation"},
      {"malformed connect", negotiate + rg::milter::encode('C', "host"), "malformed connect packet"},
      // Nothing answered first, so the end of the stream is the first thing the daemon meets after the fragment.
      {"truncated packet, then close", be32(100) + "O" + be32(6), "not complete when the connection closed"},
  };
  for (const auto& a : attacks) {
    INFO(a.what);
    const std::size_t before = d.log_count(a.log);
    milter_client evil(dir.endpoint());
    evil.send_raw(a.bytes);
    if (std::string(a.what).find("truncated") != std::string::npos) {
      evil.quit();  // closes: the daemon sees the end of the stream in the middle of the packet
    } else {
      CHECK(evil.read_until_close(5000ms).closed);
    }
    bool logged = false;
    for (int i = 0; i < 500 && !logged; ++i) {
      logged = d.log_count(a.log) > before;
      if (!logged) std::this_thread::sleep_for(10ms);
    }
    CHECK(logged);
    // The bystander's message still gets its answer.
    CHECK(answer(bystander.send(sendmail_message("QB", "www-data@host.example", {"a@example.net"}))) == "DUNNO");
    bystander.abort();
  }
  // A slow sender: half a packet, then silence, is cut at request_timeout, not before.
  milter_client slow(dir.endpoint());
  slow.send_raw(negotiate + be32(50) + "M");
  const auto t = std::chrono::steady_clock::now();
  CHECK(slow.read_until_close(10000ms).closed);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
  CHECK(ms >= 900);
  RG_CHECK_TIMING(ms <= 3000);
  CHECK(d.wait_for_log("milter packet not complete within request_timeout (1s)"));
  CHECK(answer(bystander.send(sendmail_message("QB2", "www-data@host.example", {"a@example.net"}))) == "DUNNO");
  CHECK(d.stop() == 0);
}
