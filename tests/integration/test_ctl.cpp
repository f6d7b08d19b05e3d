// rateguardctl against the real rateguardd on both stores: a hold rule trips and locks its key (logged once),
// later messages are held by the lock, the hold journal lists them with their queue IDs and postsuper lines,
// lock / release / reset by hand, top ordering, explain without charging, --json, exit codes.
#include <catch2/catch.hpp>
#include <sys/stat.h>

#include <boost/json.hpp>
#include <chrono>
#include <thread>

#include "daemon_fixture.hpp"
#include "redis_fixture.hpp"

using namespace rg::test;
namespace json = boost::json;

namespace {

int count_lines_with(const std::string& log, const std::string& needle) {
  int n = 0;
  for (std::size_t p = 0; (p = log.find(needle, p)) != std::string::npos; p += needle.size()) ++n;
  return n;
}

std::string with_state(std::string req, const std::string& state, const std::string& rcpts) {
  auto replace = [&](const std::string& from, const std::string& to) {
    auto p = req.find(from);
    REQUIRE(p != std::string::npos);
    req.replace(p, from.size(), to);
  };
  replace("protocol_state=RCPT", "protocol_state=" + state);
  replace("recipient_count=0", "recipient_count=" + rcpts);
  return req;
}

// One message as Postfix sends it: RCPT (no queue ID yet), a second RCPT with the queue ID, END-OF-MESSAGE
// with the queue ID and recipient_count. Returns the first RCPT's answer; all RCPTs must agree.
std::string send_message(policy_client& c, const std::string& user, const std::string& instance,
                         const std::string& queue_id) {
  const std::string first = c.ask(rcpt_request(user, instance));
  CHECK(c.ask(rcpt_request(user, instance, queue_id)) == first);
  CHECK(c.ask(with_state(rcpt_request(user, instance, queue_id), "END-OF-MESSAGE", "2")) == "DUNNO");
  return first;
}

json::object ctl_json(const daemon_process& d, std::vector<std::string> args, int want_rc = 0) {
  args.insert(args.begin(), "--json");
  std::string out;
  const int rc = d.ctl(args, &out);
  INFO("rateguardctl output: " << out);
  CHECK(rc == want_rc);
  boost::system::error_code ec;
  auto v = json::parse(out, ec);
  REQUIRE(!ec);
  REQUIRE(v.is_object());
  return v.as_object();
}

std::uint64_t count_of(const json::object& status, const std::string& unit, const std::string& window) {
  for (const auto& c : status.at("counters").as_array()) {
    const auto& o = c.as_object();
    if (o.at("unit").as_string() == unit && o.at("window").as_string() == window) return o.at("count").to_number<std::uint64_t>();
  }
  FAIL("no counter " << unit << " " << window);
  return 0;
}

// The journal is written after the reply: wait (bounded) until it has `n` records.
json::array wait_holds(const daemon_process& d, std::size_t n, std::vector<std::string> args = {"holds"}) {
  json::array holds;
  for (int i = 0; i < 1000; ++i) {  // 10 s at least: a slow machine, not a slow journal
    holds = ctl_json(d, args).at("holds").as_array();
    if (holds.size() >= n) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return holds;
}


}  // namespace

TEST_CASE("a hold rule locks the sender - rateguardctl reviews and ends it - on both stores", "[ctl]") {
  redis_server redis;
  for (const std::string store : {"memory", "redis"}) {
    DYNAMIC_SECTION("store " << store) {
      daemon_process d("sasl_username * 3/1h hold\nsasl_username * 1000/1d defer\n",
                       store == "redis" ? redis.daemon_settings() : "");
      policy_client c(d.socket_path());
      const std::string rule = d.dir() + "/limits.conf:1";

      for (int i = 1; i <= 3; ++i) REQUIRE(send_message(c, "alice", "a" + std::to_string(i), "A00" + std::to_string(i)) == "DUNNO");
      // The 4th trips the hold rule: held, and alice is locked (logged once, with the rule and what was exceeded).
      CHECK(send_message(c, "alice", "a4", "A004").rfind("HOLD rateguard: rate limit of 3 messages per 1h", 0) == 0);
      REQUIRE(d.wait_for_log("NOQUEUE: lock: key=sasl_username:alice rule=" + rule + " until="));
      CHECK(d.log().find("reason=\"" + rule + " 4 messages in 1h, limit 3\"") != std::string::npos);
      // Later messages are held by the lock (the reply says so), and the lock is not logged again.
      for (int i = 5; i <= 6; ++i)
        CHECK(send_message(c, "alice", "a" + std::to_string(i), "A00" + std::to_string(i)) ==
              "HOLD rateguard: this sasl_username is locked, message held for review");
      REQUIRE(d.wait_for_log("A006: hold: key=sasl_username:alice"));
      CHECK(count_lines_with(d.log(), ": lock: key=sasl_username:alice") == 1);
      CHECK(d.log().find("locked=sasl_username:alice lock_until=") != std::string::npos);

      // status: counters with their limits, and the lock.
      auto st = ctl_json(d, {"status", "sasl_username:alice"});
      CHECK(st.at("found").as_bool());
      CHECK(count_of(st, "messages", "1h") == 6);
      CHECK(count_of(st, "messages", "1d") == 6);
      REQUIRE(st.at("lock").is_object());
      CHECK(st.at("lock").as_object().at("reason").as_string() == rule + " 4 messages in 1h, limit 3");
      std::string out;
      CHECK(d.ctl({"status", "sasl_username:Alice"}, &out) == 0);  // keys are normalized like requests
      CHECK(out.find("locked until ") != std::string::npos);
      CHECK(out.find("3 hold (" + rule + ")") != std::string::npos);

      // holds: one record per held message, with the queue ID, written when the message finished.
      auto holds = wait_holds(d, 3);
      REQUIRE(holds.size() == 3);
      const char* qids[] = {"A004", "A005", "A006"};
      for (std::size_t i = 0; i < 3; ++i) {
        const auto& h = holds[i].as_object();
        CHECK(h.at("queue_id").as_string() == qids[i]);
        CHECK(h.at("key").as_string() == "sasl_username:alice");
        CHECK(h.at("recipients").to_number<int>() == 2);
        CHECK(h.at("client").as_string() == "127.0.0.1");
      }
      CHECK(holds[0].as_object().at("rule").as_string() == rule);
      CHECK(holds[1].as_object().at("reason").as_string() == "locked: " + rule + " 4 messages in 1h, limit 3");
      CHECK(d.ctl({"holds"}, &out) == 0);
      for (const char* q : qids) {
        CHECK(out.find(std::string("postsuper -H ") + q + "\n") != std::string::npos);
        CHECK(out.find(std::string("postsuper -d ") + q + "\n") != std::string::npos);
      }
      CHECK(out.find("postsuper -H A003") == std::string::npos);  // delivered, never held
      CHECK(wait_holds(d, 0, {"holds", "--key", "sasl_username:bob"}).empty());
      CHECK(wait_holds(d, 3, {"holds", "--key", "sasl_username:alice", "--since", "1h"}).size() == 3);
      CHECK(wait_holds(d, 0, {"holds", "--since", "2100-01-01T00:00:00Z"}).empty());

      // A lock by hand holds the next message; release ends it.
      CHECK(send_message(c, "carol", "c1", "C001") == "DUNNO");
      CHECK(ctl_json(d, {"lock", "sasl_username:carol", "--reason", "phished"}).at("changed").as_bool());
      CHECK_FALSE(ctl_json(d, {"lock", "sasl_username:carol"}, 1).at("changed").as_bool());  // kept as it is
      CHECK(send_message(c, "carol", "c2", "C002") == "HOLD rateguard: this sasl_username is locked, message held for review");
      REQUIRE(d.wait_for_log("C002: hold: "));
      CHECK(d.log().find("lock_reason=\"phished\"") != std::string::npos);
      CHECK(d.ctl({"release", "sasl_username:carol"}, &out) == 0);
      CHECK(d.ctl({"release", "sasl_username:carol"}, &out) == 1);
      CHECK(send_message(c, "carol", "c3", "C003") == "DUNNO");
      CHECK(send_message(c, "bob", "b1", "B001") == "DUNNO");

      // top: heaviest first.
      auto top = ctl_json(d, {"top", "--by", "sasl_username", "--window", "1h"}).at("top").as_array();
      REQUIRE(top.size() == 3);
      CHECK(top[0].as_object().at("key").as_string() == "sasl_username:alice");
      CHECK(top[0].as_object().at("count").to_number<int>() == 6);
      CHECK(top[0].as_object().at("locked").as_bool());
      CHECK(top[1].as_object().at("key").as_string() == "sasl_username:carol");
      CHECK(top[1].as_object().at("count").to_number<int>() == 3);
      CHECK(top[2].as_object().at("key").as_string() == "sasl_username:bob");
      CHECK(d.ctl({"top", "-n", "1"}, &out) == 0);
      CHECK(out.find("sasl_username:alice") != std::string::npos);
      CHECK(out.find("sasl_username:carol") == std::string::npos);

      // explain: the rules and counts and the decision, without charging anything.
      auto ex = ctl_json(d, {"explain", "sasl_username=Alice", "client_address=127.0.0.1", "sender=a@example.com"});
      CHECK_FALSE(ex.at("charged").as_bool());
      const auto& dec = ex.at("decision").as_object();
      CHECK(dec.at("action").as_string() == "hold");
      CHECK(dec.at("locked_key").as_string() == "sasl_username:alice");
      const auto& keys = ex.at("keys").as_array();
      REQUIRE(keys.size() == 1);
      const auto& k = keys[0].as_object();
      CHECK(k.at("compared").as_string() == "alice");
      CHECK(k.at("selector").as_string() == "*");
      const auto& rules = k.at("rules").as_array();
      REQUIRE(rules.size() == 2);
      CHECK(rules[0].as_object().at("rule").as_string() == rule);
      CHECK(rules[0].as_object().at("limits").as_array()[0].as_object().at("count").to_number<int>() == 6);
      CHECK(ctl_json(d, {"status", "sasl_username:alice"}).at("counters") == st.at("counters"));  // not charged
      // From stdin, as Postfix's lines.
      CHECK(run_command({"/bin/sh", "-c", "printf 'sasl_username=dave\\nprotocol_state=RCPT\\n' | " RG_CTL " -c " +
                                              d.config_path() + " explain"},
                        &out) == 0);
      CHECK(out.find("decision  dunno") != std::string::npos);
      CHECK(out.find("sasl_username \"dave\" counted as sasl_username:dave: selector *") != std::string::npos);
      CHECK(ctl_json(d, {"status", "sasl_username:dave"}, 1).at("found").as_bool() == false);

      // reset: counters and lock gone, the next message passes.
      CHECK(d.ctl({"reset", "sasl_username:alice"}, &out) == 0);
      CHECK(d.ctl({"status", "sasl_username:alice"}, &out) == 1);
      CHECK(send_message(c, "alice", "a7", "A007") == "DUNNO");
      CHECK(count_lines_with(d.log(), ": lock: ") == 1);
    }
  }
}

TEST_CASE("rateguardctl exit codes and the control socket's mode", "[ctl]") {
  daemon_process d("sasl_username * 3/1h hold\n");
  struct stat st {};
  REQUIRE(::stat(d.control_path().c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 0777) == 0600);
  std::string out;
  CHECK(d.ctl({"status"}, &out) == 64);                        // no key
  CHECK(d.ctl({"status", "alice"}, &out) == 64);               // not KIND:VALUE
  CHECK(d.ctl({"status", "user:alice"}, &out) == 64);          // the daemon refuses the kind
  CHECK(out.find("unknown key kind") != std::string::npos);
  CHECK(d.ctl({"frobnicate"}, &out) == 64);
  CHECK(d.ctl({"top", "--ttl", "1h"}, &out) == 64);            // an option of another command
  CHECK(d.ctl({"top", "--window", "soon"}, &out) == 64);
  CHECK(d.ctl({"holds", "--since", "yesterday"}, &out) == 64);
  CHECK(d.ctl({"lock", "sasl_username:x", "--ttl", "0"}, &out) == 64);
  CHECK(d.ctl({"status", "sasl_username:nobody"}, &out) == 1);
  CHECK(run_command({RG_CTL, "-c", d.dir() + "/missing.conf", "top"}, &out) == 78);
  CHECK(run_command({RG_CTL, "--socket", d.dir() + "/no-such-socket", "top"}, &out) == 69);
  CHECK(d.ctl({"--help"}, &out) == 0);
  CHECK(out.find("Exit codes:") != std::string::npos);
  REQUIRE(d.stop() == 0);
  CHECK(::stat(d.control_path().c_str(), &st) != 0);  // removed at exit
  CHECK(d.ctl({"top"}, &out) == 69);                  // daemon gone
}

TEST_CASE("a held message is journaled when the next message begins or the connection closes", "[ctl]") {
  daemon_process d("sasl_username * 1/1h hold\n", "lock_time = 0\n");
  {
    policy_client c(d.socket_path());
    REQUIRE(send_message(c, "erin", "e1", "E001") == "DUNNO");
    // No END-OF-MESSAGE (Postfix without smtpd_end_of_data_restrictions): the next instance finishes it.
    REQUIRE(c.ask(rcpt_request("erin", "e2")).rfind("HOLD ", 0) == 0);
    REQUIRE(c.ask(rcpt_request("erin", "e2", "E002")).rfind("HOLD ", 0) == 0);
    REQUIRE(c.ask(rcpt_request("erin", "e3")).rfind("HOLD ", 0) == 0);  // over 1/1h again; no lock (lock_time 0)
    auto holds = wait_holds(d, 1);
    REQUIRE(holds.size() == 1);
    CHECK(holds[0].as_object().at("queue_id").as_string() == "E002");
    CHECK(holds[0].as_object().at("recipients").to_number<int>() == 2);
    { policy_client other(d.socket_path()); }  // another connection's end finishes nothing of this one
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    CHECK(wait_holds(d, 1).size() == 1);
  }  // closing this connection finishes e3, which never got a queue ID
  auto holds = wait_holds(d, 2);
  REQUIRE(holds.size() == 2);
  CHECK(holds[1].as_object().at("instance").as_string() == "e3");
  CHECK(holds[1].as_object().at("queue_id").as_string() == "");
  {
    // smtpd_delay_open_until_valid_rcpt = no: the first RCPT already carries the queue ID.
    policy_client c(d.socket_path());
    REQUIRE(c.ask(rcpt_request("frank", "f1")) == "DUNNO");
    REQUIRE(c.ask(rcpt_request("frank", "f2", "F002")).rfind("HOLD ", 0) == 0);
  }
  holds = wait_holds(d, 3);
  REQUIRE(holds.size() == 3);
  CHECK(holds[2].as_object().at("queue_id").as_string() == "F002");
  CHECK(holds[2].as_object().at("key").as_string() == "sasl_username:frank");
  std::string out;
  CHECK(d.ctl({"holds"}, &out) == 0);
  CHECK(out.find("postsuper -H E002\npostsuper -H F002\n") != std::string::npos);  // none for e3
  CHECK(d.log().find(": lock: ") == std::string::npos);  // lock_time = 0: no locks
}

TEST_CASE("novelty limits through the daemon - status, explain and reset - on both stores", "[ctl][novelty]") {
  redis_server redis;
  for (const std::string store : {"memory", "redis"}) {
    DYNAMIC_SECTION("store " << store) {
      // baseline_warmup 0: the limits apply from the second message (the key's familiarity filters exist).
      daemon_process d("sasl_username * new_domains:2/1h new_networks:5/1h hold\n",
                       (store == "redis" ? redis.daemon_settings() : std::string()) + "baseline_warmup = 0\n");
      policy_client c(d.socket_path());
      const auto to = [](const std::string& instance, const std::string& domain) {
        std::string r = rcpt_request("una", instance, "", "192.0.2.1");
        const std::string from = "recipient=rcpt@example.net";
        return r.replace(r.find(from), from.size(), "recipient=x@" + domain);
      };
      CHECK(c.ask(to("i1", "a.example")) == "DUNNO");
      CHECK(c.ask(to("i2", "b.example")) == "DUNNO");
      CHECK(c.ask(to("i3", "A.EXAMPLE")) == "DUNNO");  // familiar: free
      const std::string held = c.ask(to("i4", "c.example"));
      CHECK(held.rfind("HOLD ", 0) == 0);
      CHECK(count_lines_with(d.log(), "reason=\"" + d.dir() + "/limits.conf:1 3 new recipient domains in 1h, limit 2\"") == 1);

      const json::object st = ctl_json(d, {"status", "sasl_username:una"});
      CHECK(count_of(st, "new_domains", "1h") == 3);
      CHECK(count_of(st, "new_networks", "1h") == 1);

      // explain: a familiar domain adds nothing, a new one would add one.
      for (const auto& [domain, cost] : {std::pair{"b.example", 0}, {"d.example", 1}}) {
        std::string out;
        REQUIRE(d.ctl({"--json", "explain", "sasl_username=una", "client_address=192.0.2.9",
                       std::string("recipient=x@") + domain}, &out) == 0);
        const json::object ex = json::parse(out).as_object();
        const auto& l = ex.at("keys").as_array()[0].as_object().at("rules").as_array()[0].as_object().at("limits").as_array();
        REQUIRE(l.size() == 2);
        CHECK(l[0].as_object().at("measure").as_string() == "new_domains");
        CHECK(l[0].as_object().at("count").to_number<int>() == 3);
        CHECK(l[0].as_object().at("cost").to_number<int>() == cost);
        CHECK(l[1].as_object().at("measure").as_string() == "new_networks");
        CHECK(l[1].as_object().at("cost").to_number<int>() == 0);  // 192.0.2.9 is in the familiar 192.0.0.0/16
      }

      // reset forgets the familiar values too: a.example is new again.
      ctl_json(d, {"reset", "sasl_username:una"});
      CHECK_FALSE(ctl_json(d, {"status", "sasl_username:una"}, 1).at("found").as_bool());
      std::string out;
      REQUIRE(d.ctl({"--json", "explain", "sasl_username=una", "recipient=x@a.example"}, &out) == 0);
      const json::object ex = json::parse(out).as_object();
      const auto& l = ex.at("keys").as_array()[0].as_object().at("rules").as_array()[0].as_object().at("limits").as_array();
      CHECK(l[0].as_object().at("cost").to_number<int>() == 1);
    }
  }
}

TEST_CASE("detection limits through the daemon - status shows baselines and signals - on both stores", "[ctl]") {
  redis_server redis;
  for (const std::string store : {"memory", "redis"}) {
    DYNAMIC_SECTION("store " << store) {
      // baseline_warmup 0: the burst limit has a baseline from the second message (average 0), learning for three windows.
      daemon_process d("sasl_username * burst:5x:10/1h client_ips:2/1h rcpt_domains:50/1h hold\n",
                       (store == "redis" ? redis.daemon_settings() : std::string()) +
                           "baseline_warmup = 0\n");
      policy_client c(d.socket_path());
      CHECK(c.ask(rcpt_request("ivy", "i1", "", "192.0.2.1")) == "DUNNO");
      CHECK(c.ask(rcpt_request("ivy", "i2", "", "192.0.2.2")) == "DUNNO");
      // A third address in the hour: client_ips 3 > 2 holds the message and locks the login.
      const std::string held = c.ask(rcpt_request("ivy", "i3", "", "192.0.2.3"));
      CHECK(held.rfind("HOLD ", 0) == 0);
      CHECK(count_lines_with(d.log(), "reason=\"" + d.dir() + "/limits.conf:1 3 client addresses in 1h, limit 2\"") == 1);

      const json::object st = ctl_json(d, {"status", "sasl_username:ivy"});
      CHECK(count_of(st, "messages", "1h") == 3);
      CHECK(count_of(st, "client_ips", "1h") == 3);
      CHECK(count_of(st, "rcpt_domains", "1h") == 1);  // every recipient is rcpt@example.net
      bool baseline_seen = false;
      for (const auto& row : st.at("counters").as_array()) {
        const auto& o = row.as_object();
        if (o.at("unit").as_string() != "messages") continue;
        REQUIRE(o.at("baseline").is_object());
        CHECK(o.at("baseline").as_object().at("average").to_number<double>() == 0.0);
        CHECK(o.at("baseline").as_object().at("learning").as_bool());  // it applies after three windows
        baseline_seen = true;
      }
      CHECK(baseline_seen);
      CHECK(st.at("lock").is_object());

      // explain from a fourth address: the signal counts without adding it; the burst limit's threshold is the floor.
      std::string out;
      REQUIRE(d.ctl({"--json", "explain", "sasl_username=ivy", "client_address=192.0.2.4",
                     "recipient=x@other.example"}, &out) == 0);
      const json::object ex = json::parse(out).as_object();
      const auto& limits = ex.at("keys").as_array()[0].as_object().at("rules").as_array()[0].as_object().at("limits").as_array();
      REQUIRE(limits.size() == 3);
      CHECK(limits[0].as_object().at("measure").as_string() == "burst");
      CHECK(limits[0].as_object().at("count").to_number<int>() == 3);
      CHECK(limits[0].as_object().at("threshold").to_number<int>() == 10);
      CHECK(limits[1].as_object().at("measure").as_string() == "client_ips");
      CHECK(limits[1].as_object().at("count").to_number<int>() == 3);
      CHECK(limits[1].as_object().at("exceeded").as_bool());
      CHECK(limits[2].as_object().at("count").to_number<int>() == 1);

      // reset: counters, baseline, signals and lock are gone.
      ctl_json(d, {"reset", "sasl_username:ivy"});
      const json::object after = ctl_json(d, {"status", "sasl_username:ivy"}, 1);
      CHECK_FALSE(after.at("found").as_bool());
      for (const auto& row : after.at("counters").as_array()) {
        CHECK(row.as_object().at("count").to_number<int>() == 0);
        CHECK(row.as_object().at("baseline").is_null());
      }
      CHECK(c.ask(rcpt_request("ivy", "i5", "", "192.0.2.9")) == "DUNNO");
    }
  }
}
