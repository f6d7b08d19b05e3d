// Operator commands without sockets: run_control() on the memory store and a rules snapshot, as the daemon's
// control socket runs them. Malformed requests are usage errors; explain reads without charging; lock,
// release and reset report whether anything changed; top and holds answer in JSON.
#include <catch2/catch.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>

#include "control.hpp"
#include "memory_store.hpp"

using namespace rg;
namespace json = boost::json;

namespace {

struct fixture {
  fixture() {
    auto parsed = parse_limits("sasl_username * 3/1h hold\nsasl_username vip none\nclient_address * 10/1m defer\n",
                               "limits.conf");
    REQUIRE(parsed.rules);
    engine_settings settings;
    settings.lock_time = std::chrono::hours(24);
    snap = std::make_shared<policy_snapshot>(make_snapshot(std::move(*parsed.rules), settings));
  }
  boost::asio::io_context io;
  memory_store st{default_memory_max_keys, {}, {}, io.get_executor()};
  std::shared_ptr<const policy_snapshot> snap;

  json::object run(const std::string& request) {
    control_env env{st, snap, std::chrono::hours(24)};
    auto f = boost::asio::co_spawn(io, run_control(std::move(env), request), boost::asio::use_future);
    io.restart();
    io.run_for(std::chrono::seconds(5));
    REQUIRE(f.wait_for(std::chrono::seconds(0)) == std::future_status::ready);
    const std::string text = f.get();
    INFO(text);
    boost::system::error_code ec;
    auto v = json::parse(text, ec);
    REQUIRE(!ec);
    return v.as_object();
  }
  // A charged message of `user` at 127.0.0.1, as the engine would count it.
  void charge(const std::string& user) {
    store_request r;
    counter_spec c;
    c.identity = counter_identity(key_kind::sasl_username, user);
    c.window_s = 3600;
    r.counters.push_back(c);
    REQUIRE(st.check(r).ok);
  }
};

}  // namespace

TEST_CASE("control: malformed or unknown requests are usage errors", "[control]") {
  fixture fx;
  const char* bad[] = {
      "\n",                                        // no command
      "command=frobnicate\n\n",                    // unknown command
      "command=status\n\n",                        // no key
      "command=status\nkey=alice\n\n",             // not KIND:VALUE
      "command=status\nkey=user:alice\n\n",        // unknown kind
      "command=status\nkey=client_address:x\n\n",  // not an address
      "command=status\nkey=sasl_username:a",       // not ended by an empty line
      "command=status\nno equals sign\n\n",
      "command=explain\nsasl_user=alice\n\n",      // a typo is refused, not ignored
      "command=top\nby=recipient\n\n",
      "command=top\nwindow=1500ms\n\n",
      "command=top\nn=0\n\n",
      "command=holds\nsince_ms=-5\n\n",
      "command=lock\nkey=sasl_username:a\nttl=0\n\n",
      "command=lock\nkey=sasl_username:a\nreason=\x1b[31m\n\n",
  };
  for (const char* req : bad) {
    INFO(req);
    auto o = fx.run(req);
    CHECK_FALSE(o.at("ok").as_bool());
    CHECK(o.at("code").as_string() == "usage");
    CHECK_FALSE(o.at("error").as_string().empty());
  }
  std::string many = "command=top\n";
  for (std::size_t i = 0; i <= control_max_lines; ++i) many += "x=1\n";
  auto o = fx.run(many + "\n");
  CHECK(o.at("code").as_string() == "usage");
}

TEST_CASE("control: lock - status - release - reset report what changed", "[control]") {
  fixture fx;
  fx.charge("alice");
  fx.charge("alice");
  auto st = fx.run("command=status\nkey=sasl_username:ALICE\n\n");
  CHECK(st.at("found").as_bool());
  CHECK(st.at("counted").as_bool());
  CHECK(st.at("lock").is_null());
  const auto& c = st.at("counters").as_array();
  REQUIRE(c.size() == 1);
  CHECK(c[0].as_object().at("count").to_number<int>() == 2);
  CHECK(c[0].as_object().at("window").as_string() == "1h");
  CHECK(c[0].as_object().at("limits").as_array()[0].as_object().at("action").as_string() == "hold");

  auto l = fx.run("command=lock\nkey=sasl_username:alice\nttl=2h\nreason=phished\n\n");
  CHECK(l.at("changed").as_bool());
  REQUIRE(l.at("lock").is_object());
  CHECK(l.at("lock").as_object().at("reason").as_string() == "phished");
  const auto& lk = l.at("lock").as_object();
  CHECK(lk.at("until_ms").to_number<std::int64_t>() - lk.at("since_ms").to_number<std::int64_t>() == 7'200'000);
  CHECK_FALSE(fx.run("command=lock\nkey=sasl_username:alice\n\n").at("changed").as_bool());
  CHECK(fx.run("command=status\nkey=sasl_username:alice\n\n").at("lock").is_object());
  CHECK(fx.run("command=release\nkey=sasl_username:alice\n\n").at("changed").as_bool());
  CHECK_FALSE(fx.run("command=release\nkey=sasl_username:alice\n\n").at("changed").as_bool());
  CHECK(fx.run("command=reset\nkey=sasl_username:alice\n\n").at("changed").as_bool());
  CHECK_FALSE(fx.run("command=status\nkey=sasl_username:alice\n\n").at("found").as_bool());
  // An exempt key is not counted: a lock on it would check nothing, and status says so.
  CHECK_FALSE(fx.run("command=status\nkey=sasl_username:vip\n\n").at("counted").as_bool());
}

TEST_CASE("control: explain shows rules and counts and charges nothing", "[control]") {
  fixture fx;
  for (int i = 0; i < 3; ++i) fx.charge("alice");
  auto ex = fx.run("command=explain\nsasl_username=Alice\nclient_address=2001:db8::5\n\n");
  REQUIRE(ex.at("ok").as_bool());
  const auto& keys = ex.at("keys").as_array();
  REQUIRE(keys.size() == 2);
  const auto& u = keys[0].as_object();
  CHECK(u.at("kind").as_string() == "sasl_username");
  CHECK(u.at("compared").as_string() == "alice");
  const auto& lim = u.at("rules").as_array()[0].as_object().at("limits").as_array()[0].as_object();
  CHECK(lim.at("count").to_number<int>() == 3);
  CHECK(lim.at("exceeded").as_bool());
  const auto& ip = keys[1].as_object();
  CHECK(ip.at("compared").as_string() == "2001:db8::5");
  CHECK(ip.at("counted_as").as_string() == "client_address:2001:db8::/64");
  const auto& d = ex.at("decision").as_object();
  CHECK(d.at("action").as_string() == "hold");
  CHECK(d.at("would_lock").as_bool());
  CHECK(d.at("rule").as_string() == "limits.conf:1");
  // Nothing was charged, not even the client address.
  auto st = fx.run("command=status\nkey=sasl_username:alice\n\n");
  CHECK(st.at("counters").as_array()[0].as_object().at("count").to_number<int>() == 3);
  CHECK_FALSE(fx.run("command=status\nkey=client_address:2001:db8::1\n\n").at("found").as_bool());
  // An exempt user: the rule is listed, with no limits.
  auto vip = fx.run("command=explain\nsasl_username=vip\n\n");
  CHECK(vip.at("keys").as_array()[0].as_object().at("rules").as_array()[0].as_object().at("action").as_string() ==
        "none");
  CHECK(vip.at("decision").as_object().at("action").as_string() == "dunno");
}

TEST_CASE("control: top and holds answer from the store - hostile bytes stay valid JSON", "[control]") {
  fixture fx;
  fx.charge("bob");
  for (int i = 0; i < 3; ++i) fx.charge("alice");
  auto top = fx.run("command=top\nby=sasl_username\nwindow=1h\n\n").at("top").as_array();
  REQUIRE(top.size() == 2);
  CHECK(top[0].as_object().at("key").as_string() == "sasl_username:alice");
  CHECK(top[1].as_object().at("key").as_string() == "sasl_username:bob");

  admin_request add;
  add.op = admin_op::journal_add;
  add.record.queue_id = "4F2A1B3C";
  add.record.key = "sender:\xff\xfe@example.com";
  REQUIRE(fx.st.admin(add).ok);
  auto holds = fx.run("command=holds\n\n").at("holds").as_array();
  REQUIRE(holds.size() == 1);
  CHECK(holds[0].as_object().at("queue_id").as_string() == "4F2A1B3C");
  CHECK(holds[0].as_object().at("key").as_string() == "sender:\xc3\xbf\xc3\xbe@example.com");  // as Latin-1
  CHECK(fx.run("command=holds\nkey=sender:x@example.com\n\n").at("holds").as_array().empty());
}
