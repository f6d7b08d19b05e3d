// The milter session (policyd/milter_session): what it negotiates, which replies it sends before end of
// message, when it trusts the submitter header, the whole-message request it builds, the replies for each
// verdict, and the packets that close the connection. Driven packet by packet, as the server does.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "milter.hpp"
#include "milter_session.hpp"

using namespace rg;
using namespace rg::milter;
using namespace std::string_literals;

namespace {


// The replies in `bytes`, as "c", "q:reason", "y:450 ...", "O".
std::vector<std::string> replies(const std::string& bytes) {
  std::vector<std::string> out;
  decoder d;
  std::string_view rest(bytes);
  for (int i = 0; i < 100 && !rest.empty(); ++i) {
    const auto r = d.feed(rest);
    REQUIRE(r.status == decode_status::complete);
    rest.remove_prefix(r.consumed);
    const packet p = d.current();
    std::string s(1, p.command);
    if (p.command == reply::quarantine || p.command == reply::reply_code)
      s += ":" + std::string(p.data.substr(0, p.data.find('\0')));
    out.push_back(s);
    d.next();
  }
  return out;
}

struct driver {
  milter_session_settings settings;
  std::unique_ptr<milter_session> session;
  std::string out;

  driver() {
    settings.user_name = [](std::uint32_t uid) { return uid == 33 ? std::string("www-data") : std::string(); };
    session = std::make_unique<milter_session>(settings, "milter.1");
  }
  milter_session::step send(char cmd, const std::string& data = {}) {
    // The packet goes through the decoder, as in the server.
    const std::string bytes = encode(cmd, data);
    decoder d;
    REQUIRE(d.feed(bytes).status == decode_status::complete);
    return session->on_packet(d.current(), out);
  }
  std::vector<std::string> take() { return replies(std::exchange(out, {})); }
  // Negotiation as Postfix 3.7 offers it (every action, every protocol step may be skipped).
  std::uint32_t negotiate(std::uint32_t actions = 0x1ff, std::uint32_t protocol = 0x1fffff) {
    REQUIRE(send(command::negotiate, be32(6) + be32(actions) + be32(protocol)) == milter_session::step::reply);
    decoder d;
    REQUIRE(d.feed(out).status == decode_status::complete);
    const auto n = parse_negotiation(d.current().data);
    REQUIRE(n);
    CHECK(n->version == 6);
    CHECK(n->actions == (actions & action_quarantine));
    out.clear();
    return n->protocol;
  }
  // cleanup's session for one message from pickup, up to (not including) end of message.
  void pickup_message(const std::string& queue_id, const std::vector<std::string>& headers,
                      const std::string& daemon_name = "rg-pickup") {
    send(command::macro, "C{daemon_name}\0"s + daemon_name + "\0"s);
    send(command::connect, "localhost\0"s "4" + be32(0).substr(2) + "127.0.0.1\0"s);
    send(command::macro, "Mi\0"s + queue_id + "\0{mail_addr}\0www-data@host.example\0"s);
    send(command::mail, "www-data@host.example\0"s);
    send(command::rcpt, "a@one.example\0"s);
    send(command::rcpt, "<b@two.example>\0"s);
    for (std::size_t i = 0; i + 1 < headers.size(); i += 2)
      send(command::header, headers[i] + "\0"s + headers[i + 1] + "\0"s);
    send(command::macro, "Ei\0"s + queue_id + "\0"s);
  }
};

}  // namespace

TEST_CASE("milter session: only end of message is answered when the MTA offers the no-reply steps", "[milter]") {
  driver d;
  const std::uint32_t p = d.negotiate();
  CHECK((p & (no_body | no_helo | no_data | no_end_of_headers | no_unknown)) != 0);
  CHECK((p & (no_connect | no_mail | no_rcpt | no_headers)) == 0);  // what rateguard reads is sent
  CHECK((p & (no_reply_connect | no_reply_mail | no_reply_rcpt | no_header_reply)) ==
        (no_reply_connect | no_reply_mail | no_reply_rcpt | no_header_reply));
  d.pickup_message("4F2A1B3C", {"Subject", "hi"});
  CHECK(d.out.empty());  // nothing before end of message
  REQUIRE(d.send(command::end_of_body) == milter_session::step::decide);
  // An MTA that offers no flags gets a reply to each step it sends.
  driver old;
  CHECK(old.negotiate(0x1ff, 0) == 0);
  old.send(command::connect, "localhost\0"s "4" + be32(0).substr(2) + "127.0.0.1\0"s);
  old.send(command::helo, "localhost\0"s);
  old.send(command::mail, "<a@b.example>\0"s);
  old.send(command::rcpt, "<c@d.example>\0"s);
  old.send(command::header, "Subject\0x\0"s);
  CHECK(old.take() == std::vector<std::string>{"c", "c", "c", "c", "c"});
}

TEST_CASE("milter session: the end-of-message request is the whole message", "[milter]") {
  driver d;
  d.negotiate();
  d.pickup_message("4F2A1B3C", {"X-RG-Submitter", "uid=33 id=4F2A1B3C", "X-PHP-Originating-Script",
                                "33:contact.php", "Subject", "hi"});
  REQUIRE(d.send(command::end_of_body) == milter_session::step::decide);
  const policy_request& r = d.session->request();
  CHECK(r.get(attr::queue_id) == "4F2A1B3C");
  // cleanup's stand-in client (localhost, port 0) is no client: client_address rules do not see local mail.
  CHECK(r.get(attr::client_address).empty());
  CHECK(r.get(attr::sender) == "www-data@host.example");
  CHECK(r.recipients == std::vector<std::string>{"a@one.example", "b@two.example"});  // brackets or not
  CHECK(r.get(attr::recipient_count) == "2");
  CHECK(r.get(attr::instance) == "milter.1.1");
  CHECK(r.local_user == "www-data");
  CHECK(r.script == "33:contact.php");
  CHECK(r.get(attr::sasl_username).empty());
}

TEST_CASE("milter session: the submitter header is trusted only first, from rg-pickup, with this queue ID",
          "[milter]") {
  struct row {
    const char* what;
    std::vector<std::string> headers;
    std::string daemon_name;
    std::string expect;
  };
  const row r = GENERATE(values<row>({
      {"trusted", {"X-RG-Submitter", "uid=33 id=Q1"}, "rg-pickup", "www-data"},
      {"a uid without a passwd entry is counted by number", {"X-RG-Submitter", "uid=1234 id=Q1"}, "rg-pickup", "1234"},
      {"another queue ID (a script's forgery)", {"X-RG-Submitter", "uid=0 id=FORGED"}, "rg-pickup", ""},
      {"not the first header", {"Subject", "x", "X-RG-Submitter", "uid=0 id=Q1"}, "rg-pickup", ""},
      {"another cleanup (smtpd, or main.cf's non_smtpd_milters)", {"X-RG-Submitter", "uid=33 id=Q1"}, "mx.example", ""},
      {"no uid", {"X-RG-Submitter", "id=Q1"}, "rg-pickup", ""},
      {"a uid that is not a number", {"X-RG-Submitter", "uid=root id=Q1"}, "rg-pickup", ""},
  }));
  INFO(r.what);
  driver d;
  d.negotiate();
  d.pickup_message("Q1", r.headers, r.daemon_name);
  REQUIRE(d.send(command::end_of_body) == milter_session::step::decide);
  CHECK(d.session->request().local_user == r.expect);
}

TEST_CASE("milter session: each verdict's end-of-message replies", "[milter]") {
  struct row {
    std::string reply;
    std::vector<std::string> expect;
  };
  const row r = GENERATE(values<row>({
      {"DUNNO", {"c"}},
      {"WARN rateguard: rate limit exceeded", {"c"}},
      {"HOLD rateguard: this local_user is locked", {"q:rateguard: this local_user is locked", "c"}},
      {"450 4.7.1 Rate limit exceeded", {"y:450 4.7.1 Rate limit exceeded"}},
      {"550 5.7.1 Rate limit exceeded", {"y:550 5.7.1 Rate limit exceeded"}},
  }));
  driver d;
  d.negotiate();
  d.pickup_message("Q1", {});
  REQUIRE(d.send(command::end_of_body) == milter_session::step::decide);
  verdict v;
  v.reply = r.reply;
  d.session->decided(v, d.out);
  CHECK(d.take() == r.expect);
}

TEST_CASE("milter session: several messages on one connection, abort and quit", "[milter]") {
  driver d;
  d.negotiate();
  d.send(command::macro, "C{daemon_name}\0mx.example\0"s);
  d.send(command::connect, "[192.0.2.7]\0"s "4" + be32(40000).substr(2) + "192.0.2.7\0"s);
  // smtpd: {auth_authen} at MAIL, the queue ID only later.
  d.send(command::macro, "M{auth_authen}\0alice@example.com\0"s);
  d.send(command::mail, "<alice@example.com>\0"s);
  d.send(command::rcpt, "<x@example.net>\0"s);
  d.send(command::abort);  // the client gave up: nothing of this message survives
  d.send(command::macro, "M{auth_authen}\0alice@example.com\0"s);
  d.send(command::mail, "<alice@example.com>\0"s);
  d.send(command::rcpt, "<y@example.net>\0"s);
  d.send(command::macro, "Ei\0QID2\0"s);
  REQUIRE(d.send(command::end_of_body) == milter_session::step::decide);
  CHECK(d.session->request().recipients == std::vector<std::string>{"y@example.net"});
  CHECK(d.session->request().get(attr::sasl_username) == "alice@example.com");
  CHECK(d.session->request().get(attr::client_address) == "192.0.2.7");
  CHECK(d.session->request().get(attr::instance) == "milter.1.1");
  d.session->decided(verdict{}, d.out);
  CHECK(d.take() == std::vector<std::string>{"c"});
  // The next message numbers on; without {auth_authen} at its MAIL it has no login.
  d.send(command::mail, "<bob@example.com>\0"s);
  d.send(command::rcpt, "<z@example.net>\0"s);
  REQUIRE(d.send(command::end_of_body) == milter_session::step::decide);
  CHECK(d.session->request().get(attr::instance) == "milter.1.2");
  CHECK(d.session->request().get(attr::sasl_username).empty());
  d.session->decided(verdict{}, d.out);
  // End of message with no recipient has nothing to count: continue.
  d.send(command::mail, "<bob@example.com>\0"s);
  CHECK(d.send(command::end_of_body) == milter_session::step::reply);
  CHECK(d.take() == std::vector<std::string>{"c", "c"});
  CHECK(d.send(command::quit) == milter_session::step::close);
  CHECK(d.session->error().empty());
}

TEST_CASE("milter session: too many recipients is a temporary failure, never a count", "[milter]") {
  driver d;
  d.settings.max_recipients = 3;
  d.negotiate();
  d.send(command::mail, "<a@b.example>\0"s);
  for (int i = 0; i < 5; ++i) d.send(command::rcpt, "<r" + std::to_string(i) + "@x.example>\0"s);
  CHECK(d.send(command::end_of_body) == milter_session::step::reply);
  const auto r = d.take();
  REQUIRE(r.size() == 1);
  CHECK(r[0].rfind("y:452 4.5.3 ", 0) == 0);
}

TEST_CASE("milter session: malformed and out-of-order packets close the connection with a reason", "[milter]") {
  struct row {
    char cmd;
    std::string data;
    bool negotiate_first;
    const char* error;
  };
  const row r = GENERATE(values<row>({
      {command::mail, "<a@b>\0"s, false, "command before option negotiation"},
      {command::negotiate, "\0\0\0"s, false, "malformed option negotiation"},
      {command::negotiate, be32(1) + be32(0) + be32(0), false, "milter protocol version 1 is too old"},
      {command::connect, "localhost"s, true, "malformed connect packet"},
      {command::mail, ""s, true, "malformed MAIL packet"},
      {command::rcpt, "x"s, true, "malformed RCPT packet"},
      {command::header, "Subject"s, true, "malformed header packet"},
      {command::macro, ""s, true, "malformed macro packet"},
      {'Z', ""s, true, "unknown milter command 0x5a"},
  }));
  driver d;
  if (r.negotiate_first) d.negotiate();
  CHECK(d.send(r.cmd, r.data) == milter_session::step::close);
  CHECK(d.session->error() == r.error);
}
