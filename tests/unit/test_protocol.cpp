// Unit tests for common/protocol: the Postfix policy request parser (captured Postfix 3.7 requests fed
// whole and split at every byte, good and malformed inputs, limits, pipelining) and the reply writer.
// No sockets here; the daemon's connection handling is tested elsewhere.
#include <algorithm>
#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "protocol.hpp"

using namespace std::string_view_literals;

namespace {

std::string read_request_file(const std::string& name) {
  std::ifstream in(std::string(RG_POSTFIX_REQUESTS) + "/" + name, std::ios::binary);
  REQUIRE(in);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

struct outcome {
  rg::parse_status status;
  rg::policy_request request;
  std::string error;
};

// One read buffer reused by every read, as a connection's is: a read overwrites what the one before left,
// so a value still pointing into an earlier read reads the wrong bytes.
class read_buffer {
 public:
  explicit read_buffer(std::size_t size) : bytes_(size) {}
  std::string_view read(std::string_view part) {
    REQUIRE(part.size() <= bytes_.size());
    std::fill(bytes_.begin(), bytes_.end(), '#');
    std::copy(part.begin(), part.end(), bytes_.begin());
    return {bytes_.data(), part.size()};
  }
  bool holds(std::string_view v) const {
    return v.data() >= bytes_.data() && v.data() + v.size() <= bytes_.data() + bytes_.size();
  }

 private:
  std::vector<char> bytes_;
};

// Feeds `input` as two reads into one buffer, split at `split`, the way a socket may deliver it. A read
// after the first error or completion is not fed, as the daemon would not feed it either.
outcome parse_split(std::string_view input, std::size_t split, rg::parser_limits limits = {}) {
  rg::request_parser p(limits);
  read_buffer buf(input.size());
  auto r = p.feed(buf.read(input.substr(0, split)));
  if (r.status == rg::parse_status::need_more) {
    REQUIRE(r.consumed == split);
    r = p.feed(buf.read(input.substr(split)));
  }
  return {r.status, p.request(), p.error()};  // a copy: it owns its values
}

outcome parse_whole(std::string_view input, rg::parser_limits limits = {}) {
  return parse_split(input, input.size(), limits);
}

// Feeds one byte per read into a one-byte buffer; stops at the first status that is not need_more.
outcome parse_bytewise(std::string_view input, rg::parser_limits limits = {}) {
  rg::request_parser p(limits);
  read_buffer buf(1);
  rg::parse_result r{rg::parse_status::need_more, 0};
  for (std::size_t i = 0; i < input.size() && r.status == rg::parse_status::need_more; ++i) {
    r = p.feed(buf.read(input.substr(i, 1)));
  }
  return {r.status, p.request(), p.error()};
}

// Reasons go to logs unescaped, so they must be short plain phrases.
bool log_safe(const std::string& reason) {
  if (reason.empty() || reason.size() > 40) return false;
  for (char c : reason) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == ' ' || c == '\'' || c == '='))
      return false;
  }
  return true;
}

}  // namespace

TEST_CASE("attr_from_name is the inverse of attr_name and rejects everything else", "[protocol]") {
  for (std::size_t i = 0; i < rg::attr_count; ++i) {
    const auto a = static_cast<rg::attr>(i);
    CAPTURE(rg::attr_name(a));
    REQUIRE(rg::attr_from_name(rg::attr_name(a)) == a);
  }
  CHECK(rg::attr_name(rg::attr::sasl_username) == "sasl_username");
  CHECK(rg::attr_name(rg::attr::reverse_client_name) == "reverse_client_name");

  // Postfix attributes rateguard ignores, near misses of known names, and the empty name.
  for (std::string_view name : {""sv, "client_port"sv, "ccert_subject"sv, "etrn_domain"sv, "Request"sv,
                                "reques"sv, "requests"sv, "sizE"sv, "sasl_usernamE"sv, "sender\0"sv}) {
    CAPTURE(name);
    CHECK_FALSE(rg::attr_from_name(name).has_value());
  }
}

TEST_CASE("captured Postfix 3.7 requests parse whole - byte by byte and at every split", "[protocol]") {
  using rg::attr;
  struct captured {
    const char* file;
    std::vector<std::pair<attr, std::string_view>> expected;
  };
  const std::vector<captured> cases = {
      {"rcpt_submission.txt",
       {{attr::protocol_state, "RCPT"},
        {attr::sasl_username, "alice"},
        {attr::sasl_method, "PLAIN"},
        {attr::queue_id, ""},  // no queue file yet at RCPT
        {attr::instance, "4c99.6b03e10a.8cd6e.0"},
        {attr::recipient, "rcpt1-m1@example.net"},
        {attr::recipient_count, "0"},
        {attr::client_address, "127.0.0.1"},
        {attr::server_port, "2587"},
        {attr::policy_context, "submission"}}},
      {"rcpt_anonymous.txt",
       {{attr::protocol_state, "RCPT"},
        {attr::sasl_username, ""},
        {attr::queue_id, ""},
        {attr::instance, "4cd5.6b03e10a.c8a3f.0"},
        {attr::sender, "anon@e2e.test"},
        {attr::recipient, "rcpt1-m1@example.net"},
        {attr::policy_context, "smtp"}}},
      {"end_of_message_submission.txt",
       {{attr::protocol_state, "END-OF-MESSAGE"},
        {attr::sasl_username, "alice"},
        {attr::queue_id, "8E891A72062"},
        {attr::instance, "4c99.6b03e10a.8cd6e.0"},  // same instance as the RCPT request of this mail
        {attr::recipient, ""},
        {attr::recipient_count, "2"},
        {attr::size, "268"}}},
  };

  for (const auto& c : cases) {
    SECTION(c.file) {
      const std::string input = read_request_file(c.file);

      rg::request_parser p;
      const auto r = p.feed(input);
      REQUIRE(r.status == rg::parse_status::complete);
      REQUIRE(r.consumed == input.size());
      const rg::policy_request& req = p.request();
      CHECK(req.attributes_seen == 29);
      CHECK(req.get(attr::request) == "smtpd_access_policy");
      for (const auto& [a, value] : c.expected) {
        CAPTURE(rg::attr_name(a));
        CHECK(req.get(a) == value);
      }

      const outcome bytewise = parse_bytewise(input);
      REQUIRE(bytewise.status == rg::parse_status::complete);
      CHECK(bytewise.request.values() == req.values());
      CHECK(bytewise.request.attributes_seen == req.attributes_seen);

      for (std::size_t split = 0; split <= input.size(); ++split) {
        CAPTURE(split);
        const outcome o = parse_split(input, split);
        REQUIRE(o.status == rg::parse_status::complete);
        REQUIRE(o.request.values() == req.values());
        REQUIRE(o.request.attributes_seen == req.attributes_seen);
      }
    }
  }
}

TEST_CASE("well-formed requests", "[protocol]") {
  using rg::attr;
  struct good {
    const char* name;
    std::string_view input;
    std::vector<std::pair<attr, std::string_view>> expected;  // every other known attribute must be empty
    std::size_t attributes_seen;
  };
  const std::vector<good> cases = {
      {"minimal", "request=smtpd_access_policy\n\n", {{attr::request, "smtpd_access_policy"}}, 1},
      {"unknown attributes are counted but not stored",
       "request=smtpd_access_policy\nclient_port=4711\nx-unknown=sender\nsender=a@b\nccert_subject=CN\n\n",
       {{attr::request, "smtpd_access_policy"}, {attr::sender, "a@b"}},
       5},
      {"a repeated attribute keeps the last value",
       "sender=first@x\nrequest=smtpd_access_policy\nsender=last@x\nrecipient=r@x\nrecipient=\n\n",
       {{attr::request, "smtpd_access_policy"}, {attr::sender, "last@x"}},
       5},
      {"CRLF line ends",
       "request=smtpd_access_policy\r\nsender=a@b\r\nsize=12\r\n\r\n",
       {{attr::request, "smtpd_access_policy"}, {attr::sender, "a@b"}, {attr::size, "12"}},
       3},
      {"mixed LF and CRLF",
       "request=smtpd_access_policy\nsender=a@b\r\n\n",
       {{attr::request, "smtpd_access_policy"}, {attr::sender, "a@b"}},
       2},
      {"only one '\\r' is stripped",
       "request=smtpd_access_policy\nsender=a\r\r\n\n",
       {{attr::request, "smtpd_access_policy"}, {attr::sender, "a\r"}},
       2},
      {"split at the first '='",
       "request=smtpd_access_policy\nsasl_username=a=b==\nsender==x\n\n",
       {{attr::request, "smtpd_access_policy"}, {attr::sasl_username, "a=b=="}, {attr::sender, "=x"}},
       3},
      {"empty values",
       "request=smtpd_access_policy\nqueue_id=\nsasl_username=\nsender=\n\n",
       {{attr::request, "smtpd_access_policy"}},
       4},
      {"values keep spaces and non-ASCII bytes",
       "request=smtpd_access_policy\nhelo_name= spaced  out \nsender=j\xc3\xb6rg@example.org\n\n",
       {{attr::request, "smtpd_access_policy"},
        {attr::helo_name, " spaced  out "},
        {attr::sender, "j\xc3\xb6rg@example.org"}},
       3},
  };

  for (const auto& c : cases) {
    SECTION(c.name) {
      for (std::size_t split = 0; split <= c.input.size(); ++split) {
        CAPTURE(split);
        const outcome o = parse_split(c.input, split);
        REQUIRE(o.status == rg::parse_status::complete);
        CHECK(o.request.attributes_seen == c.attributes_seen);
        for (std::size_t i = 0; i < rg::attr_count; ++i) {
          const auto a = static_cast<rg::attr>(i);
          std::string_view want;
          for (const auto& [ea, ev] : c.expected) {
            if (ea == a) want = ev;
          }
          CAPTURE(rg::attr_name(a));
          REQUIRE(o.request.get(a) == want);
        }
      }
    }
  }
}

TEST_CASE("malformed and oversized requests are rejected with a log-safe reason", "[protocol]") {
  const rg::parser_limits small{.max_line = 32, .max_attributes = 3, .max_request = 80};
  struct bad {
    const char* name;
    std::string_view input;
    rg::parser_limits limits;
    std::string_view reason;
  };
  const std::vector<bad> cases = {
      {"NUL in a value", "request=smtpd_access_policy\nsender=EVIL\0x\n\n"sv, {}, "NUL"},
      {"NUL in a name", "request=smtpd_access_policy\nsen\0der=x\n\n"sv, {}, "NUL"},
      {"NUL in the empty line", "request=smtpd_access_policy\n\0\n"sv, {}, "NUL"},
      {"line without '='", "request=smtpd_access_policy\nEVIL\n\n", {}, "without '='"},
      {"empty attribute name", "request=smtpd_access_policy\n=EVIL\n\n", {}, "empty attribute name"},
      {"empty request", "\n", {}, "empty request"},
      {"empty request with CRLF", "\r\n", {}, "empty request"},
      {"request attribute missing", "sender=a@b\nclient_port=1\n\n", {}, "missing request attribute"},
      {"request attribute of another protocol", "request=EVIL\n\n", {}, "not a policy request"},
      {"request attribute empty", "request=\nsender=a\n\n", {}, "not a policy request"},
      {"request value with trailing space", "request=smtpd_access_policy \n\n", {}, "not a policy request"},
      {"request value is case-sensitive", "request=SMTPD_ACCESS_POLICY\n\n", {}, "not a policy request"},
      {"line too long", "request=smtpd_access_policy\nsender=EVIL4567890123456789012345\n\n", small,
       "line too long"},
      {"too many attributes", "request=smtpd_access_policy\na=1\nb=2\nc=EVIL\n\n", small,
       "too many attributes"},
      {"request too large",
       "request=smtpd_access_policy\nsender=12345678901234567890\nrecipient=123456789012345678EVIL\n\n",
       small, "request too large"},
  };

  for (const auto& c : cases) {
    SECTION(c.name) {
      const outcome whole = parse_whole(c.input, c.limits);
      REQUIRE(whole.status == rg::parse_status::error);
      CHECK_THAT(whole.error, Catch::Contains(std::string(c.reason)));
      CHECK(log_safe(whole.error));
      CHECK(whole.error.find("EVIL") == std::string::npos);

      // Incremental parsing fails the same way, wherever the reads are split.
      const outcome bytewise = parse_bytewise(c.input, c.limits);
      REQUIRE(bytewise.status == rg::parse_status::error);
      CHECK(bytewise.error == whole.error);
      for (std::size_t split = 0; split <= c.input.size(); ++split) {
        CAPTURE(split);
        const outcome o = parse_split(c.input, split, c.limits);
        REQUIRE(o.status == rg::parse_status::error);
        REQUIRE(o.error == whole.error);
      }
    }
  }
}

TEST_CASE("limits accept exactly the bound and reject one more", "[protocol]") {
  const std::string head = "request=smtpd_access_policy\n";

  SECTION("max_line, LF and CRLF; the line end does not count") {
    const std::string at = "sender=" + std::string(33, 'x');  // 40 bytes; the request= line is shorter
    const rg::parser_limits limits{.max_line = 40};
    CHECK(parse_whole(head + at + "\n\n", limits).status == rg::parse_status::complete);
    CHECK(parse_whole(head + at + "\r\n\r\n", limits).status == rg::parse_status::complete);
    const outcome over = parse_whole(head + at + "y\n\n", limits);
    CHECK(over.status == rg::parse_status::error);
    CHECK(over.error == "line too long");
    CHECK(parse_whole(head + at + "y\r\n\r\n", limits).status == rg::parse_status::error);
  }

  SECTION("max_line is enforced before the newline arrives") {
    rg::request_parser p({.max_line = 20});
    REQUIRE(p.feed("sender=").status == rg::parse_status::need_more);
    REQUIRE(p.feed(std::string(13, 'x')).status == rg::parse_status::need_more);  // 20 bytes so far
    // A '\r' at the bound may still be the start of "\r\n"...
    REQUIRE(p.feed("\r").status == rg::parse_status::need_more);
    // ...but anything else there makes the line too long, newline or not.
    const auto r = p.feed("x");
    CHECK(r.status == rg::parse_status::error);
    CHECK(p.error() == "line too long");
    // A slow peer keeps trickling: the parser stays failed and buffers nothing more.
    CHECK(p.feed(std::string(1000, 'x')).status == rg::parse_status::error);
  }

  SECTION("max_line with a default-sized line, no newline ever") {
    rg::request_parser p;
    const std::string flood(rg::parser_limits{}.max_line + 1, 'a');
    CHECK(p.feed(flood).status == rg::parse_status::error);
    CHECK(p.error() == "line too long");
  }

  SECTION("max_attributes counts known and unknown attributes") {
    const rg::parser_limits limits{.max_attributes = 3};
    CHECK(parse_whole(head + "a=1\nsender=s\n\n", limits).status == rg::parse_status::complete);
    const outcome over = parse_whole(head + "a=1\nsender=s\nb=2\n\n", limits);
    CHECK(over.status == rg::parse_status::error);
    CHECK(over.error == "too many attributes");
  }

  SECTION("max_request counts every byte including the final empty line") {
    const std::string input = head + "sender=abc\r\n\r\n";
    CHECK(parse_whole(input, {.max_request = input.size()}).status == rg::parse_status::complete);
    const outcome over = parse_whole(input, {.max_request = input.size() - 1});
    CHECK(over.status == rg::parse_status::error);
    CHECK(over.error == "request too large");
    // The bound applies per request: the same request again after next() fits again.
    rg::request_parser p({.max_request = input.size()});
    for (int i = 0; i < 3; ++i) {
      REQUIRE(p.feed(input).status == rg::parse_status::complete);
      p.next();
    }
  }
}

TEST_CASE("pipelined requests in one read are parsed one at a time", "[protocol]") {
  const std::string a = read_request_file("rcpt_submission.txt");
  const std::string b = read_request_file("rcpt_anonymous.txt");
  const std::string c = read_request_file("end_of_message_submission.txt");
  // The last request lacks most attributes: nothing from the earlier ones may leak into it.
  const std::string d = "request=smtpd_access_policy\r\nprotocol_state=DATA\r\n\r\n";
  const std::string buffer = a + b + c + d;

  SECTION("all in one buffer") {
    rg::request_parser p;
    std::string_view rest = buffer;
    std::vector<rg::policy_request> got;
    while (!rest.empty()) {
      const auto r = p.feed(rest);
      REQUIRE(r.status == rg::parse_status::complete);
      got.push_back(p.request());
      rest.remove_prefix(r.consumed);
      p.next();
    }
    REQUIRE(got.size() == 4);
    CHECK(got[0].get(rg::attr::sasl_username) == "alice");
    CHECK(got[0].get(rg::attr::protocol_state) == "RCPT");
    CHECK(got[1].get(rg::attr::sasl_username).empty());
    CHECK(got[1].get(rg::attr::instance) == "4cd5.6b03e10a.c8a3f.0");
    CHECK(got[2].get(rg::attr::queue_id) == "8E891A72062");
    CHECK(got[3].get(rg::attr::protocol_state) == "DATA");
    CHECK(got[3].attributes_seen == 2);
    CHECK(got[3].get(rg::attr::sender).empty());
    CHECK(got[3].get(rg::attr::instance).empty());
  }

  SECTION("a completed request stays put until next()") {
    rg::request_parser p;
    const auto r = p.feed(buffer);
    REQUIRE(r.status == rg::parse_status::complete);
    REQUIRE(r.consumed == a.size());
    const auto again = p.feed(std::string_view(buffer).substr(r.consumed));
    CHECK(again.status == rg::parse_status::complete);
    CHECK(again.consumed == 0);
    CHECK(p.request().get(rg::attr::instance) == "4c99.6b03e10a.8cd6e.0");
  }

  SECTION("the second request split across reads") {
    rg::request_parser p;
    const std::string first_read = a + b.substr(0, 100);
    const auto r1 = p.feed(first_read);
    REQUIRE(r1.status == rg::parse_status::complete);
    REQUIRE(r1.consumed == a.size());
    p.next();
    const auto r2 = p.feed(std::string_view(first_read).substr(r1.consumed));
    REQUIRE(r2.status == rg::parse_status::need_more);
    REQUIRE(r2.consumed == 100);
    const auto r3 = p.feed(std::string_view(b).substr(100));
    REQUIRE(r3.status == rg::parse_status::complete);
    CHECK(p.request().get(rg::attr::sender) == "anon@e2e.test");
  }
}

TEST_CASE("values are views: into the read that completed the request, or the parser's copy of a split one",
          "[protocol]") {
  using rg::attr;
  const std::string input = read_request_file("rcpt_submission.txt");
  rg::request_parser reference;
  REQUIRE(reference.feed(input).status == rg::parse_status::complete);
  const rg::policy_request expected = reference.request();  // a copy: owns its values
  REQUIRE(expected.get(attr::sasl_username) == "alice");

  // At every byte boundary; the second read overwrites the buffer the first one filled.
  for (std::size_t split = 0; split <= input.size(); ++split) {
    CAPTURE(split);
    rg::request_parser p;
    read_buffer buf(input.size());
    auto r = p.feed(buf.read(std::string_view(input).substr(0, split)));
    const bool one_read = r.status == rg::parse_status::complete;
    if (!one_read) {
      REQUIRE(r.status == rg::parse_status::need_more);
      r = p.feed(buf.read(std::string_view(input).substr(split)));
    }
    REQUIRE(r.status == rg::parse_status::complete);
    REQUIRE(p.request().attributes_seen == expected.attributes_seen);
    for (std::size_t i = 0; i < rg::attr_count; ++i) {
      const auto a = static_cast<attr>(i);
      CAPTURE(rg::attr_name(a));
      const std::string_view v = p.request().get(a);
      REQUIRE(v == expected.get(a));
      // Read in one piece (split 0 is an empty first read): nothing copied, every value is in the buffer.
      // Split: the request was assembled once in the parser, no value points into the reused buffer.
      if (!v.empty()) REQUIRE(buf.holds(v) == (split == 0 || one_read));
    }
    p.next();
    // The next request on the connection starts clean.
    REQUIRE(p.feed(buf.read("request=smtpd_access_policy\nsender=s\n\n")).status == rg::parse_status::complete);
    CHECK(p.request().get(attr::sender) == "s");
    CHECK(p.request().get(attr::sasl_username).empty());
  }
}

TEST_CASE("two pipelined requests in one read: each one's views are right until its next()", "[protocol]") {
  using rg::attr;
  const std::string a = read_request_file("rcpt_submission.txt");
  const std::string b = read_request_file("rcpt_anonymous.txt");
  const std::string both = a + b;

  SECTION("both whole in one read: views into the read buffer") {
    rg::request_parser p;
    read_buffer buf(both.size());
    std::string_view data = buf.read(both);
    auto r = p.feed(data);
    REQUIRE(r.status == rg::parse_status::complete);
    REQUIRE(r.consumed == a.size());
    CHECK(p.request().get(attr::sasl_username) == "alice");
    CHECK(p.request().get(attr::instance) == "4c99.6b03e10a.8cd6e.0");
    CHECK(buf.holds(p.request().get(attr::instance)));
    p.next();
    data.remove_prefix(r.consumed);
    r = p.feed(data);
    REQUIRE(r.status == rg::parse_status::complete);
    REQUIRE(r.consumed == b.size());
    CHECK(p.request().get(attr::sasl_username).empty());  // nothing of the first request is left
    CHECK(p.request().get(attr::instance) == "4cd5.6b03e10a.c8a3f.0");
    CHECK(p.request().get(attr::sender) == "anon@e2e.test");
    CHECK(buf.holds(p.request().get(attr::sender)));
  }

  SECTION("the second one continues in the next read, which overwrites the buffer") {
    for (std::size_t cut = a.size(); cut < both.size(); cut += 37) {
      CAPTURE(cut);
      rg::request_parser p;
      read_buffer buf(both.size());
      std::string_view data = buf.read(std::string_view(both).substr(0, cut));
      auto r = p.feed(data);
      REQUIRE(r.status == rg::parse_status::complete);
      CHECK(p.request().get(attr::sasl_username) == "alice");
      p.next();
      data.remove_prefix(r.consumed);
      r = p.feed(data);
      REQUIRE(r.status == rg::parse_status::need_more);
      r = p.feed(buf.read(std::string_view(both).substr(cut)));
      REQUIRE(r.status == rg::parse_status::complete);
      CHECK(p.request().get(attr::instance) == "4cd5.6b03e10a.c8a3f.0");
      CHECK(p.request().get(attr::sender) == "anon@e2e.test");
      CHECK(p.request().get(attr::request) == "smtpd_access_policy");
    }
  }
}

TEST_CASE("an error is final", "[protocol]") {
  rg::request_parser p;
  REQUIRE(p.feed("garbage\n").status == rg::parse_status::error);
  CHECK(p.feed("request=smtpd_access_policy\n\n").status == rg::parse_status::error);
  p.next();
  CHECK(p.feed("request=smtpd_access_policy\n\n").status == rg::parse_status::error);
  CHECK(p.error() == "line without '='");
}

TEST_CASE("policy_request::clear empties values and keeps the buffers of set()", "[protocol]") {
  rg::policy_request req;
  req.set(rg::attr::sender, std::string(200, 's'));
  req.attributes_seen = 7;
  const char* const stored = req.get(rg::attr::sender).data();
  req.clear();
  CHECK(req.get(rg::attr::sender).empty());
  CHECK(req.attributes_seen == 0);
  req.set(rg::attr::sender, std::string(150, 't'));
  CHECK(req.get(rg::attr::sender) == std::string(150, 't'));
  CHECK(req.get(rg::attr::sender).data() == stored);  // the same buffer, no new allocation
}

TEST_CASE("policy_request: set() owns its copy, a copy owns all its values, a move keeps them", "[protocol]") {
  std::string wire = "sender=a@b";
  rg::policy_request viewed;
  viewed.set_view(rg::attr::sender, std::string_view(wire).substr(7));
  {
    std::string temporary = "alice";
    viewed.set(rg::attr::sasl_username, temporary);
    temporary.assign("XXXXX");
  }
  CHECK(viewed.get(rg::attr::sasl_username) == "alice");

  const rg::policy_request copy = viewed;
  rg::policy_request assigned;
  assigned.set(rg::attr::instance, "old");
  assigned = viewed;
  wire.assign("sender=XXX");  // the bytes the views pointed at change
  CHECK(viewed.get(rg::attr::sender) == "XXX");  // a view reads what is there now
  const rg::policy_request* const owners[] = {&copy, &assigned};
  for (const rg::policy_request* r : owners) {
    CHECK(r->get(rg::attr::sender) == "a@b");
    CHECK(r->get(rg::attr::sasl_username) == "alice");
    CHECK(r->get(rg::attr::instance).empty());
  }

  rg::policy_request moved = std::move(assigned);
  CHECK(moved.get(rg::attr::sender) == "a@b");
  CHECK(moved.get(rg::attr::sasl_username) == "alice");
  CHECK(rg::policy_request().get(rg::attr::sender).data() != nullptr);  // empty, like an empty std::string
}

TEST_CASE("reply writer", "[protocol]") {
  struct reply_case {
    std::string_view action;
    std::string_view expected;
  };
  const std::vector<reply_case> cases = {
      {"DUNNO", "action=DUNNO\n\n"},
      {"DEFER_IF_PERMIT 4.7.1 rate limit exceeded", "action=DEFER_IF_PERMIT 4.7.1 rate limit exceeded\n\n"},
      {"", "action=\n\n"},
      {"REJECT a\nb", "action=REJECT a b\n\n"},
      {"REJECT a\r\n\r\naction=OK", "action=REJECT a    action=OK\n\n"},
      {"REJECT \0x"sv, "action=REJECT  x\n\n"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.action);
    CHECK(rg::format_reply(c.action) == c.expected);
  }

  std::string out = "action=OK\n\n";  // an earlier reply stays untouched, line breaks included
  rg::append_reply(out, "DUNNO");
  rg::append_reply(out, "REJECT\nno");
  CHECK(out == "action=OK\n\naction=DUNNO\n\naction=REJECT no\n\n");
}
