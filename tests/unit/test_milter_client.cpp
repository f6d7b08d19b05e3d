// The test milter client (tests/support/milter_client): its packets byte for byte against what Postfix 3.7's
// milter8.c writes (docs/postfix-milter-facts.md), and that it honours the flags a filter negotiates, reads every
// reply a filter sends and judges bad ones as Postfix does. The filter end is a scripted thread on a socketpair:
// it records what arrives (decoded with rg_milter) and answers what each case scripts; it is not rateguard's.
#include <catch2/catch.hpp>
#include <sys/socket.h>
#include <poll.h>
#include <unistd.h>

#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "milter.hpp"
#include "milter_client.hpp"

using namespace std::string_literals;
using namespace std::chrono_literals;
namespace m = rg::milter;
using rg::test::milter_client;
using rg::test::milter_stage;

namespace {

// A packet as the wire has it, written out by hand (not with rg_milter's encoder): 4-byte big-endian length,
// then the command letter and its data.
std::string pkt(const std::string& body) {
  const auto n = static_cast<std::uint32_t>(body.size());
  return std::string{static_cast<char>(n >> 24), static_cast<char>((n >> 16) & 0xff),
                     static_cast<char>((n >> 8) & 0xff), static_cast<char>(n & 0xff)} +
         body;
}

// The filter's answers, written out by hand too.
const std::string cont = "\0\0\0\1c"s;
std::string negotiate_reply(std::uint32_t actions, std::uint32_t protocol) {
  return pkt("O" + rg::milter::be32(6) + rg::milter::be32(actions) + rg::milter::be32(protocol));
}

// The filter end of a socketpair on its own thread. `answer` gets each decoded packet and returns the bytes to
// send back ("" for none). It ends at QUIT, at EOF or a decode error (it closes then: what raw mode reads), or
// after 5 s of silence.
class scripted_filter {
 public:
  using script = std::function<std::string(char command, std::string_view data)>;

  explicit scripted_filter(script answer) : answer_(std::move(answer)) {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    client_fd_ = fds[0];
    filter_fd_ = fds[1];
    thread_ = std::thread([this] { run(); });
  }
  ~scripted_filter() { join(); }

  int client_fd() const { return client_fd_; }  // milter_client takes it over
  void join() {
    if (thread_.joinable()) thread_.join();
  }
  // After join(): every byte the client sent, and the packets decoded from them (command letter + data).
  const std::string& stream() const { return stream_; }
  const std::vector<std::string>& packets() const { return packets_; }

 private:
  void run() {
    m::decoder d;
    bool done = false;
    while (!done) {
      pollfd p{filter_fd_, POLLIN, 0};
      if (::poll(&p, 1, 5000) <= 0) break;
      char buf[8192];
      const auto n = ::recv(filter_fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      std::string_view in(buf, static_cast<std::size_t>(n));
      stream_.append(in);
      while (!done) {
        const auto r = d.feed(in);
        in.remove_prefix(r.consumed);
        if (r.status == m::decode_status::error) done = true;
        if (r.status != m::decode_status::complete) break;
        const auto p2 = d.current();
        packets_.push_back(std::string(1, p2.command) + std::string(p2.data));
        const std::string reply = answer_(p2.command, p2.data);
        if (!reply.empty()) (void)::send(filter_fd_, reply.data(), reply.size(), MSG_NOSIGNAL);
        done = p2.command == m::command::quit;
        d.next();
      }
    }
    ::close(filter_fd_);
  }

  script answer_;
  int client_fd_ = -1, filter_fd_ = -1;
  std::string stream_;
  std::vector<std::string> packets_;
  std::thread thread_;
};

// What smtpd sends for an authenticated submission (facts doc section 5), with a real client port, so that a
// byte-order mistake in the port shows.
rg::test::milter_connection smtpd_connection() {
  rg::test::milter_connection c;
  c.macros = {{"j", "mx.rg-e2e.test"}, {"_", "unknown [127.0.0.1]"}};
  c.host = "[127.0.0.1]";
  c.family = '4';
  c.port = 44208;  // 0xacb0
  c.address = "127.0.0.1";
  c.helo = "client.test";
  return c;
}

rg::test::milter_message smtpd_message() {
  rg::test::milter_message msg;
  msg.mail_macros = {{"{auth_authen}", "alice@rg-e2e.test"}, {"{mail_addr}", "sender@example.com"}};
  msg.mail_args = {"<sender@example.com>", "SIZE=120"};
  msg.rcpts = {{{"<rcpt1@example.net>"}, {{"{rcpt_addr}", "rcpt1@example.net"}}},
               {{"<rcpt2@example.net>"}, {{"i", "51A4EA74012"}, {"{rcpt_addr}", "rcpt2@example.net"}}}};
  msg.data_macros = {{"i", "51A4EA74012"}};
  msg.headers = {{"From", "sender@example.com"}, {"Subject", "hi"}};
  msg.eoh_macros = {{"i", "51A4EA74012"}};
  msg.body = "Hello.\r\n";
  msg.eom_macros = {{"i", "51A4EA74012"}};
  return msg;
}

// The message of smtpd_message() as milter8.c writes it for a filter that skips nothing, by hand.
const std::string smtpd_message_bytes =
    pkt("DM{auth_authen}\0alice@rg-e2e.test\0{mail_addr}\0sender@example.com\0"s) +
    pkt("M<sender@example.com>\0SIZE=120\0"s) +  //
    pkt("DR{rcpt_addr}\0rcpt1@example.net\0"s) + pkt("R<rcpt1@example.net>\0"s) +
    pkt("DRi\00051A4EA74012\0{rcpt_addr}\0rcpt2@example.net\0"s) + pkt("R<rcpt2@example.net>\0"s) +
    pkt("DTi\00051A4EA74012\0"s) + pkt("T") +                                      //
    pkt("DLi\00051A4EA74012\0"s) + pkt("LFrom\0sender@example.com\0"s) +          //
    pkt("DLi\00051A4EA74012\0"s) + pkt("LSubject\0hi\0"s) +                       //
    pkt("DNi\00051A4EA74012\0"s) + pkt("N") +                                      //
    pkt("DBi\00051A4EA74012\0"s) + pkt("BHello.\r\n") +                             //
    pkt("DEi\00051A4EA74012\0"s) + pkt("E");

rg::test::milter_client_options quick() {
  rg::test::milter_client_options o;
  o.timeout = 2000ms;  // a client that waits for a reply the filter waived fails the case in 2 s
  return o;
}

}  // namespace

TEST_CASE("milter client: a whole smtpd session byte for byte", "[milter_client]") {
  // The filter skips nothing and replies to everything (protocol 0), and quarantines at EOM.
  scripted_filter f([](char c, std::string_view) -> std::string {
    switch (c) {
      case 'O': return negotiate_reply(m::action_add_headers | m::action_quarantine, 0);
      case 'D': case 'A': case 'Q': return "";
      case 'E': return pkt("qrateguard: limits.conf:3\0"s) + cont;
      default: return cont;
    }
  });
  milter_client c(f.client_fd(), quick());
  const auto n = c.negotiate();
  REQUIRE(n);
  CHECK(n->version == 6);
  CHECK(n->actions == 0x21);
  CHECK(n->protocol == 0);
  const auto opened = c.open(smtpd_connection());
  CHECK(opened.ok());
  CHECK(opened.before_eom.empty());
  const auto out = c.send(smtpd_message());
  REQUIRE(out.ok());
  CHECK(out.before_eom.empty());
  REQUIRE(out.eom.size() == 2);
  CHECK(out.eom[0].command == 'q');
  CHECK(out.eom[0].data == "rateguard: limits.conf:3");
  CHECK(out.eom[1].command == 'c');
  CHECK(out.quarantined());
  CHECK(out.final_command() == 'c');
  CHECK(c.abort());
  CHECK(c.quit());
  f.join();

  const std::string expected =
      // version 6, actions 0x1ff, protocol 0x1fffff: what Postfix 3.7 offers
      pkt("O\0\0\0\x06\0\0\x01\xff\0\x1f\xff\xff"s) +
      pkt("DCj\0mx.rg-e2e.test\0_\0unknown [127.0.0.1]\0"s) +
      pkt("C[127.0.0.1]\0" "4\xac\xb0" "127.0.0.1\0"s) +  // host NUL, family, port big-endian, address NUL
      pkt("DH") + pkt("Hclient.test\0"s) +                // no HELO macros: the macro packet is sent empty
      smtpd_message_bytes + pkt("A") + pkt("Q");
  CHECK(f.stream() == expected);

  // The same packets through rg_milter's decoders, field by field (a failure here names the field).
  const auto& p = f.packets();
  REQUIRE(p.size() == 25);
  const auto neg = m::parse_negotiation(std::string_view(p[0]).substr(1));
  REQUIRE(neg);
  CHECK(neg->version == 6);
  CHECK(neg->actions == rg::test::postfix_actions);
  CHECK(neg->protocol == rg::test::postfix_protocol);
  const auto cm = m::parse_macros(std::string_view(p[1]).substr(1));
  REQUIRE(cm);
  CHECK(cm->for_command == 'C');
  REQUIRE(cm->values.size() == 2);
  CHECK(cm->values[1].first == "_");
  CHECK(cm->values[1].second == "unknown [127.0.0.1]");
  const auto conn = m::parse_connect(std::string_view(p[2]).substr(1));
  REQUIRE(conn);
  CHECK(conn->host == "[127.0.0.1]");
  CHECK(conn->family == '4');
  CHECK(conn->port == 44208);
  CHECK(conn->address == "127.0.0.1");
  const auto mm = m::parse_macros(std::string_view(p[5]).substr(1));
  REQUIRE(mm);
  CHECK(mm->for_command == 'M');
  CHECK(mm->values[0].first == "{auth_authen}");
  CHECK(mm->values[0].second == "alice@rg-e2e.test");
  const auto mail = m::parse_strings(std::string_view(p[6]).substr(1));
  REQUIRE(mail);
  CHECK(*mail == std::vector<std::string_view>{"<sender@example.com>", "SIZE=120"});
  const auto hdr = m::parse_header(std::string_view(p[14]).substr(1));
  REQUIRE(hdr);
  CHECK(hdr->name == "From");
  CHECK(hdr->value == "sender@example.com");  // the space after "From:" eaten, as Postfix does
}

TEST_CASE("milter client: cleanup's fake connection and its macros", "[milter_client]") {
  scripted_filter f([](char c, std::string_view) -> std::string {
    if (c == 'O') return negotiate_reply(m::action_quarantine, 0);
    return c == 'D' || c == 'Q' ? "" : cont;
  });
  milter_client c(f.client_fd(), quick());
  REQUIRE(c.negotiate());
  CHECK(c.open({}).ok());  // the defaults: cleanup's localhost, family '4', port 0, 127.0.0.1
  const auto msg = rg::test::sendmail_message("373CCA74054", "nobody@mx.rg-test", {"rcpt1@example.net"});
  CHECK(c.send(msg).final_command() == 'c');
  c.quit();
  f.join();
  const auto& p = f.packets();
  REQUIRE(p.size() >= 8);
  CHECK(p[1] == "DCj\0mx.rg-test\0{daemon_name}\0mx.rg-test\0{daemon_addr}\0" "127.0.0.1\0v\0Postfix 3.7.11\0"
                "_\0localhost [127.0.0.1]\0"s);
  CHECK(p[2] == "Clocalhost\0" "4\0\0" "127.0.0.1\0"s);
  CHECK(p[3] == "DH");
  CHECK(p[4] == "Hlocalhost\0"s);
  CHECK(p[5] == "DMi\0" "373CCA74054\0{mail_addr}\0nobody@mx.rg-test\0"s);
  CHECK(p[6] == "Mnobody@mx.rg-test\0"s);  // no angle brackets from cleanup
  CHECK(p[7] == "DRi\0" "373CCA74054\0{rcpt_addr}\0rcpt1@example.net\0"s);
  CHECK(p.back() == "Q");
}

TEST_CASE("milter client: the unknown family has no port and no address", "[milter_client]") {
  scripted_filter f([](char c, std::string_view) -> std::string {
    if (c == 'O') return negotiate_reply(0, m::no_helo);
    return c == 'D' || c == 'Q' ? "" : cont;
  });
  milter_client c(f.client_fd(), quick());
  REQUIRE(c.negotiate());
  rg::test::milter_connection unknown;
  unknown.macros.clear();
  unknown.family = 'U';
  unknown.host = "unknown";
  CHECK(c.open(unknown).ok());
  c.quit();
  f.join();
  REQUIRE(f.packets().size() == 5);
  CHECK(f.packets()[1] == "DC");
  CHECK(f.packets()[2] == "Cunknown\0U"s);  // no port, no address
  CHECK(f.packets()[3] == "DH");            // HELO skipped, its macros still sent (milter8_event)
}

TEST_CASE("milter client: honours what the filter skips and the replies it waives", "[milter_client]") {
  // The shape rateguard's front asks for: no HELO, EOH or body; no reply to CONNECT, RCPT or headers.
  const std::uint32_t proto = m::no_helo | m::no_end_of_headers | m::no_body | m::no_header_reply |
                              m::no_reply_connect | m::no_reply_rcpt;
  int eom = 0;
  scripted_filter f([&](char c, std::string_view) -> std::string {
    switch (c) {
      case 'O': return negotiate_reply(m::action_add_headers | m::action_quarantine, proto);
      case 'M': case 'T': return cont;
      case 'E': return ++eom == 1 ? pkt("y451 4.7.1 rateguard: slow down\0"s) : cont;
      default: return "";  // 'C', 'R', 'L' waived; 'D', 'A', 'Q' never answered
    }
  });
  milter_client c(f.client_fd(), quick());
  REQUIRE(c.negotiate());
  CHECK(c.filter().protocol == proto);
  CHECK(c.open(smtpd_connection()).ok());
  const auto first = c.send(smtpd_message());
  REQUIRE(first.ok());
  REQUIRE(first.eom.size() == 1);
  CHECK(first.eom[0].command == 'y');
  CHECK(first.eom[0].data == "451 4.7.1 rateguard: slow down");
  CHECK(c.abort());
  // A second message on the same connection (smtpd does that).
  const auto second = c.send(smtpd_message());
  CHECK(second.ok());
  CHECK(second.final_command() == 'c');
  CHECK(c.quit());
  f.join();

  const std::string one_message =
      pkt("DM{auth_authen}\0alice@rg-e2e.test\0{mail_addr}\0sender@example.com\0"s) +
      pkt("M<sender@example.com>\0SIZE=120\0"s) +  //
      pkt("DR{rcpt_addr}\0rcpt1@example.net\0"s) + pkt("R<rcpt1@example.net>\0"s) +
      pkt("DRi\00051A4EA74012\0{rcpt_addr}\0rcpt2@example.net\0"s) + pkt("R<rcpt2@example.net>\0"s) +
      pkt("DTi\00051A4EA74012\0"s) + pkt("T") +                                  //
      pkt("DLi\00051A4EA74012\0"s) + pkt("LFrom\0sender@example.com\0"s) +      //
      pkt("DLi\00051A4EA74012\0"s) + pkt("LSubject\0hi\0"s) +                   // no EOH, no body, no macros of theirs
      pkt("DEi\00051A4EA74012\0"s) + pkt("E");
  const std::string expected = pkt("O\0\0\0\x06\0\0\x01\xff\0\x1f\xff\xff"s) +
                               pkt("DCj\0mx.rg-e2e.test\0_\0unknown [127.0.0.1]\0"s) +
                               pkt("C[127.0.0.1]\0" "4\xac\xb0" "127.0.0.1\0"s) +
                               pkt("DH") +  // HELO skipped; its macros are sent anyway, as Postfix does
                               one_message + pkt("A") + one_message + pkt("Q");
  CHECK(f.stream() == expected);
}

TEST_CASE("milter client: a reply other than continue before EOM stops the message", "[milter_client]") {
  scripted_filter f([](char c, std::string_view data) -> std::string {
    switch (c) {
      case 'O': return negotiate_reply(m::action_quarantine, 0);
      case 'D': case 'A': case 'Q': return "";
      // Quarantine at the first RCPT (the message goes on), tempfail at the second (it stops).
      case 'R': return data.starts_with("<rcpt1") ? pkt("qearly\0"s) + cont : "\0\0\0\1t"s;
      default: return cont;
    }
  });
  milter_client c(f.client_fd(), quick());
  REQUIRE(c.negotiate());
  REQUIRE(c.open(smtpd_connection()).ok());
  const auto out = c.send(smtpd_message());
  CHECK(out.ok());
  CHECK(out.eom.empty());
  REQUIRE(out.before_eom.size() == 2);
  CHECK(out.before_eom[0].stage == milter_stage::rcpt);
  CHECK(out.before_eom[0].index == 0);
  REQUIRE(out.before_eom[0].replies.size() == 2);
  CHECK(out.before_eom[0].replies[0].command == 'q');
  CHECK(out.before_eom[0].replies[0].data == "early");
  CHECK(out.before_eom[0].final_command() == 'c');
  const auto* stop = out.stopped();
  REQUIRE(stop);
  CHECK(stop->stage == milter_stage::rcpt);
  CHECK(stop->index == 1);
  CHECK(stop->final_command() == 't');
  CHECK(c.abort());
  c.quit();
  f.join();
  // Nothing after the second RCPT but the abort and the quit.
  const auto& p = f.packets();
  REQUIRE(p.size() >= 3);
  CHECK(p[p.size() - 3] == "R<rcpt2@example.net>\0"s);
  CHECK(p[p.size() - 2] == "A");
  CHECK(p.back() == "Q");
}

TEST_CASE("milter client: body chunks of 65535 bytes, SMFIR_SKIP, HDR_LEADSPC", "[milter_client]") {
  const std::uint32_t proto = rg::test::smfip::hdr_leadspc | rg::test::smfip::skip;
  int bodies = 0;
  scripted_filter f([&](char c, std::string_view) -> std::string {
    if (c == 'O') return negotiate_reply(0, proto);
    if (c == 'D' || c == 'Q') return "";
    if (c == 'B') return ++bodies == 1 ? cont : "\0\0\0\1s"s;
    return cont;
  });
  milter_client c(f.client_fd(), quick());
  REQUIRE(c.negotiate());
  REQUIRE(c.open(smtpd_connection()).ok());
  auto msg = smtpd_message();
  msg.body = std::string(65535 * 3 + 10, 'x');
  const auto out = c.send(msg);
  CHECK(out.final_command() == 'c');
  CHECK_FALSE(out.stopped());  // a skip is not a stop
  REQUIRE(out.before_eom.size() == 1);
  CHECK(out.before_eom[0].stage == milter_stage::body);
  CHECK(out.before_eom[0].index == 1);
  c.quit();
  f.join();
  std::vector<std::size_t> chunk_sizes;
  std::vector<std::string> headers;
  for (const auto& p : f.packets()) {
    if (p[0] == 'B') chunk_sizes.push_back(p.size() - 1);
    if (p[0] == 'L') headers.push_back(p);
  }
  CHECK(chunk_sizes == std::vector<std::size_t>{65535, 65535});  // the third and fourth skipped
  REQUIRE(headers.size() == 2);
  CHECK(headers[0] == "LFrom\0 sender@example.com\0"s);  // the leading space kept for this filter
}

TEST_CASE("milter client: replies Postfix would refuse are errors", "[milter_client]") {
  struct row {
    std::string eom_reply;
    std::string error;
  };
  const std::vector<row> rows = {
      {pkt("y451 slow down\0"s), "malformed reply code \"451 slow down\" at eom"},  // no enhanced status code
      {pkt("y250 2.0.0 ok\0"s), "malformed reply code"},
      {pkt("y451 4.7.1 no nul"s), "'y' reply without its NUL at eom"},
      {pkt("cx"), "'c' reply followed by data at eom"},
      {pkt("Z"), "unexpected filter reply 'Z' at eom"},
      {"\0\0\0\0"s, "bad reply packet: empty milter packet"},
      {"\0\x02\0\0c"s, "bad reply packet: milter packet of 131072 bytes, over the limit of 131070"},
      {"", "timeout waiting for a reply"},
  };
  for (const auto& r : rows) {
    CAPTURE(r.error);
    scripted_filter f([&](char c, std::string_view) -> std::string {
      if (c == 'O') return negotiate_reply(0, m::no_headers | m::no_end_of_headers | m::no_body);
      if (c == 'E') return r.eom_reply;
      return c == 'D' || c == 'Q' ? "" : cont;
    });
    auto o = quick();
    o.timeout = 300ms;
    milter_client c(f.client_fd(), o);
    REQUIRE(c.negotiate());
    REQUIRE(c.open(smtpd_connection()).ok());
    const auto out = c.send(smtpd_message());
    CHECK_FALSE(out.ok());
    CHECK_THAT(out.error, Catch::Contains(r.error));
    CHECK_FALSE(c.is_open());
    f.join();
  }
  // A header edit is allowed at EOM only.
  scripted_filter f([](char c, std::string_view) -> std::string {
    if (c == 'O') return negotiate_reply(m::action_add_headers, 0);
    if (c == 'M') return pkt("hX-A\0b\0"s);
    return c == 'D' || c == 'Q' ? "" : cont;
  });
  milter_client c(f.client_fd(), quick());
  REQUIRE(c.negotiate());
  REQUIRE(c.open(smtpd_connection()).ok());
  CHECK_THAT(c.send(smtpd_message()).error, Catch::Contains("unexpected filter reply 'h' at mail"));
}

TEST_CASE("milter client: negotiation is refused as Postfix refuses it", "[milter_client]") {
  struct row {
    std::string reply;
    std::string error;
  };
  const std::vector<row> rows = {
      {negotiate_reply(0x200, 0), "filter asks for actions not offered"},
      {pkt("O\0\0\0\x07\0\0\0\0\0\0\0\0"s), "filter protocol version 7 above the offered 6"},
      {pkt("O\0\0\0\x06"s), "bad negotiation reply 'O' of 4 bytes"},
      {cont, "bad negotiation reply 'c'"},
  };
  for (const auto& r : rows) {
    CAPTURE(r.error);
    scripted_filter f([&](char c, std::string_view) { return c == 'O' ? r.reply : ""s; });
    milter_client c(f.client_fd(), quick());
    CHECK_FALSE(c.negotiate());
    CHECK_THAT(c.error(), Catch::Contains(r.error));
  }
  // The macro lists a version 6 filter may append (SMFIF_SETSYMLIST) are ignored, as far as this client goes.
  scripted_filter f([](char c, std::string_view) {
    return c == 'O' ? pkt("O\0\0\0\x06\0\0\x01\0\0\0\0\0"s "\0\0\0\x02{auth_authen}\0"s) : ""s;
  });
  milter_client c(f.client_fd(), quick());
  const auto n = c.negotiate();
  REQUIRE(n);
  CHECK(n->actions == 0x100);
}

TEST_CASE("milter client: raw bytes, then what the peer sends until it closes", "[milter_client]") {
  // The filter answers the negotiation, then gets a length prefix over rg_milter's limit and closes.
  scripted_filter f([](char c, std::string_view) { return c == 'O' ? negotiate_reply(0, 0) : ""s; });
  milter_client c(f.client_fd(), quick());
  CHECK(c.send_raw(pkt("O\0\0\0\x06\0\0\x01\xff\0\x1f\xff\xff"s) + "\x7f\xff\xff\xff"s + "O"));
  const auto r = c.read_until_close(3000ms);
  CHECK(r.closed);
  CHECK(r.bytes == negotiate_reply(0, 0));
  CHECK_FALSE(c.is_open());
  f.join();
  CHECK(f.packets().size() == 1);
}
