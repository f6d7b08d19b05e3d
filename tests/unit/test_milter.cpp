// The milter codec (common/milter): framing bounds, every payload decoder on what Postfix sends and on broken
// data, and the exact bytes of each reply.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "milter.hpp"

using namespace rg::milter;
using namespace std::string_literals;

namespace {


// What cleanup sends for one message from sendmail (the shape of a Postfix 3.7 non-SMTP session).
std::string pickup_session() {
  return encode(command::negotiate, be32(6) + be32(0x1ff) + be32(0x1fffff)) +
         encode(command::macro, "Cj\0mail.example.com\0{daemon_name}\0cleanup\0"s) +
         encode(command::connect, "localhost\0"s "4" + be32(0).substr(2) + "127.0.0.1\0"s) +
         encode(command::macro, "Mi\0004F2A1B3C\0"s) + encode(command::mail, "<www-data@example.com>\0"s) +
         encode(command::rcpt, "<x@example.net>\0"s) + encode(command::header, "Subject\0hello\0"s) +
         encode(command::end_of_headers) + encode(command::end_of_body) + encode(command::quit);
}

struct decoded {
  std::vector<std::string> packets;
  bool failed = false;
  std::string error;
};

decoded decode_all(std::string_view stream, std::size_t piece, std::size_t max = max_packet) {
  decoded out;
  decoder d(max);
  for (std::size_t pos = 0; pos < stream.size();) {
    std::string_view chunk = stream.substr(pos, piece);
    pos += chunk.size();
    while (true) {
      const auto r = d.feed(chunk);
      chunk.remove_prefix(r.consumed);
      if (r.status == decode_status::error) {
        out.failed = true;
        out.error = d.error();
        return out;
      }
      if (r.status == decode_status::need_more) break;
      out.packets.push_back(std::string(1, d.current().command) + std::string(d.current().data));
      d.next();
    }
  }
  return out;
}

}  // namespace

TEST_CASE("milter decoder: a whole session decodes the same in one read and byte by byte", "[milter]") {
  const std::string s = pickup_session();
  const auto whole = decode_all(s, s.size());
  const auto bytes = decode_all(s, 1);
  REQUIRE_FALSE(whole.failed);
  REQUIRE(whole.packets.size() == 10);
  CHECK(whole.packets == bytes.packets);
  CHECK(whole.packets[0][0] == command::negotiate);
  CHECK(whole.packets[4] == "M<www-data@example.com>\0"s);
  CHECK(whole.packets[9] == "Q");
}

TEST_CASE("milter decoder: bounds close the connection", "[milter]") {
  struct row {
    std::string stream;
    std::string error;
  };
  const std::vector<row> rows = {
      {be32(0) + "O", "empty milter packet"},
      {be32(0x7fffffff) + "O", "milter packet of 2147483647 bytes, over the limit of 262144"},
      {be32(0xffffffff) + "O", "milter packet of 4294967295 bytes, over the limit of 262144"},  // "negative"
      {be32(max_packet + 1), "milter packet of 262145 bytes, over the limit of 262144"},
  };
  for (const auto& r : rows) {
    CAPTURE(r.error);
    const auto d = decode_all(r.stream, 1);
    CHECK(d.failed);
    CHECK(d.error == r.error);
  }
  // An error is final: a valid packet after it is not decoded.
  decoder d;
  CHECK(d.feed(be32(0)).status == decode_status::error);
  CHECK(d.feed(encode(command::quit)).status == decode_status::error);
  // A packet of exactly the limit is accepted.
  const auto at_limit = decode_all(be32(16) + std::string(16, 'L'), 5, 16);
  CHECK_FALSE(at_limit.failed);
  CHECK(at_limit.packets.size() == 1);
}

TEST_CASE("milter decoder: a truncated packet never completes", "[milter]") {
  const std::string pkt = encode(command::rcpt, "<x@example.net>\0"s);
  decoder d;
  const auto r = d.feed(std::string_view(pkt).substr(0, pkt.size() - 1));
  CHECK(r.status == decode_status::need_more);
  CHECK(r.consumed == pkt.size() - 1);
  const auto last = d.feed(std::string_view(pkt).substr(pkt.size() - 1));
  CHECK(last.status == decode_status::complete);
  CHECK(d.current().command == command::rcpt);
  // Until next(), nothing more is consumed.
  CHECK(d.feed("xyz").consumed == 0);
}

TEST_CASE("milter payloads: what Postfix sends", "[milter]") {
  const auto n = parse_negotiation(be32(6) + be32(0x1ff) + be32(0x1fffff));
  REQUIRE(n);
  CHECK(n->version == 6);
  CHECK(n->actions == 0x1ff);
  CHECK(n->protocol == 0x1fffff);
  CHECK_FALSE(parse_negotiation(be32(6) + be32(0x1ff)));

  // The decoders return views into their input: keep it alive.
  const std::string macros = "Mi\0004F2A1B3C\0{auth_authen}\0alice\0"s;
  const auto m = parse_macros(macros);
  REQUIRE(m);
  CHECK(m->for_command == 'M');
  REQUIRE(m->values.size() == 2);
  CHECK(m->values[0] == std::pair<std::string_view, std::string_view>("i", "4F2A1B3C"));
  CHECK(m->values[1].second == "alice");
  CHECK(parse_macros("R"s)->values.empty());
  CHECK_FALSE(parse_macros(""));
  CHECK_FALSE(parse_macros("Mi\0004F2A1B3C"s));  // value without its NUL
  CHECK_FALSE(parse_macros("Mi\0"s));            // name without value

  const std::string connect4 = "localhost\0"s "4" "\x00\x19"s "127.0.0.1\0"s;
  const auto c4 = parse_connect(connect4);
  REQUIRE(c4);
  CHECK(c4->host == "localhost");
  CHECK(c4->family == '4');
  CHECK(c4->port == 25);
  CHECK(c4->address == "127.0.0.1");
  const std::string connect6 = "h\0"s "6" "\xd4\x31"s "2001:db8::5\0"s;
  const auto c6 = parse_connect(connect6);
  REQUIRE(c6);
  CHECK(c6->port == 54321);
  CHECK(c6->address == "2001:db8::5");
  const std::string connect_unknown = "unknown\0U"s;
  const auto cu = parse_connect(connect_unknown);
  REQUIRE(cu);
  CHECK(cu->family == 'U');
  CHECK(cu->address.empty());
  CHECK_FALSE(parse_connect("localhost\0"s));                     // no family
  CHECK_FALSE(parse_connect("localhost\0"s "4" "\x00"s));          // half a port
  CHECK_FALSE(parse_connect("localhost\0"s "4" "\x00\x19" "1.2"s));  // address without NUL
  CHECK_FALSE(parse_connect("localhost\0U-"s));                   // data after 'U'

  const std::string mail = "<a@b>\0SIZE=10\0"s;
  const auto s = parse_strings(mail);
  REQUIRE(s);
  REQUIRE(s->size() == 2);
  CHECK(strip_angle_brackets((*s)[0]) == "a@b");
  CHECK(strip_angle_brackets("<>") == "");
  CHECK(strip_angle_brackets("a@b") == "a@b");
  CHECK_FALSE(parse_strings(""));
  CHECK_FALSE(parse_strings("<a@b>"));

  const std::string header = "X-PHP-Originating-Script\0" "33:wp-mail.php\0"s;
  const auto h = parse_header(header);
  REQUIRE(h);
  CHECK(h->name == "X-PHP-Originating-Script");
  CHECK(h->value == "33:wp-mail.php");
  CHECK_FALSE(parse_header("\0value\0"s));       // empty name
  CHECK_FALSE(parse_header("Name\0value"s));     // value without NUL
  CHECK_FALSE(parse_header("Name\0v\0extra"s));  // trailing bytes
}

TEST_CASE("milter replies: exact bytes", "[milter]") {
  CHECK(encode(reply::continue_) == "\0\0\0\1c"s);
  CHECK(encode_negotiation({6, action_quarantine, no_helo | no_body}) ==
        "\0\0\0\x0dO"s + be32(6) + be32(0x20) + be32(0x12));
  CHECK(encode_reply_code("451 4.7.1 slow down") == "\0\0\0\x15y451 4.7.1 slow down\0"s);
  // CR, LF and anything after a NUL cannot reach Postfix's reply parser.
  CHECK(encode_reply_code("451 4.7.1 a\r\nb\0c"s) == "\0\0\0\x10y451 4.7.1 a  b\0"s);
  CHECK(encode_quarantine("rateguard: limits.conf:7") == "\0\0\0\x1aqrateguard: limits.conf:7\0"s);
  CHECK(encode_add_header("X-A", "b") == "\0\0\0\x07hX-A\0b\0"s);
}
