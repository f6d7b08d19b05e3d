// libFuzzer target for common/protocol: the input is a byte stream from a policy client. It is parsed as
// pipelined requests whole, byte by byte and in chunk splits derived from the input, under the default
// limits and under tiny ones (so the limit paths are reached with small inputs), and every outcome is
// checked against a plain non-incremental reading of the protocol. Also fuzzes append_reply and attr names.
// Not a unit test: regressions found here go to tests/unit/test_protocol.cpp.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "protocol.hpp"

namespace {

constexpr std::string_view policy_request_value = "smtpd_access_policy";

// What parsing a whole stream led to: the completed requests (with the stream offset just past each)
// and how it ended.
struct outcome {
  std::vector<rg::policy_request> requests;
  std::vector<std::size_t> ends;
  bool failed = false;
  std::string error;
};

// The reasons request_parser gives; a reason outside this list would reach logs unreviewed.
bool known_reason(const std::string& r) {
  for (std::string_view k : {"NUL byte in request", "line too long", "request too large", "empty request",
                             "missing request attribute", "not a policy request", "line without '='",
                             "empty attribute name", "too many attributes"}) {
    if (r == k) return true;
  }
  return false;
}

// The protocol as SMTPD_POLICY_README states it, read in one pass over the whole stream, with the
// limits of protocol.hpp. Deliberately simple: it is the oracle for the incremental parser.
outcome reference_parse(std::string_view data, const rg::parser_limits& lim) {
  outcome out;
  std::size_t pos = 0;
  rg::policy_request req;
  bool saw_request = false;
  std::size_t request_bytes = 0;
  const auto fail = [&](const char* why) {
    out.failed = true;
    out.error = why;
    return out;
  };
  while (pos < data.size()) {
    const std::size_t nl = data.find('\n', pos);
    const bool whole_line = nl != std::string_view::npos;
    const std::string_view raw = data.substr(pos, whole_line ? nl - pos : std::string_view::npos);
    std::string_view line = raw;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);  // "\r\n", or half of it so far
    const std::size_t used = raw.size() + (whole_line ? 1 : 0);
    if (raw.find('\0') != std::string_view::npos) return fail("NUL byte in request");
    if (line.size() > lim.max_line) return fail("line too long");
    if (request_bytes + used > lim.max_request) return fail("request too large");
    if (!whole_line) return out;  // an unfinished line: the parser waits for more
    request_bytes += used;
    pos = nl + 1;
    if (line.empty()) {
      if (req.attributes_seen == 0) return fail("empty request");
      if (!saw_request) return fail("missing request attribute");
      if (req.get(rg::attr::request) != policy_request_value) return fail("not a policy request");
      out.requests.push_back(req);
      out.ends.push_back(pos);
      req.clear();
      saw_request = false;
      request_bytes = 0;
      continue;
    }
    const std::size_t eq = line.find('=');
    if (eq == std::string_view::npos) return fail("line without '='");
    if (eq == 0) return fail("empty attribute name");
    if (++req.attributes_seen > lim.max_attributes) return fail("too many attributes");
    if (const auto a = rg::attr_from_name(line.substr(0, eq))) {
      req.set(*a, line.substr(eq + 1));
      if (*a == rg::attr::request) saw_request = true;
    }
  }
  return out;
}

// Feeds `data` to one parser in pieces of the given sizes (the last piece takes the rest), the way a
// session does: each piece is read into the same buffer (overwriting the one before, so a value that still
// pointed into an earlier piece would read the wrong bytes); after `complete`, copy the request, next(), and
// feed the unconsumed rest of the buffer again.
outcome incremental_parse(std::string_view data, const rg::parser_limits& lim,
                          const std::vector<std::size_t>& pieces) {
  outcome out;
  rg::request_parser p(lim);
  std::vector<char> buffer(data.size());
  std::size_t last_size = 0;  // of the piece the buffer holds
  std::size_t offset = 0;  // of the current piece in the stream
  std::size_t piece_index = 0;
  while (offset < data.size() && !out.failed) {
    std::size_t size = piece_index < pieces.size() ? pieces[piece_index++] : data.size() - offset;
    if (size > data.size() - offset) size = data.size() - offset;
    std::fill_n(buffer.begin(), last_size, '\xAA');
    std::copy_n(data.data() + offset, size, buffer.begin());
    last_size = size;
    std::string_view piece(buffer.data(), size);
    offset += size;
    for (;;) {
      const rg::parse_result r = p.feed(piece);
      FUZZ_CHECK(r.consumed <= piece.size());
      if (r.status == rg::parse_status::need_more) {
        FUZZ_CHECK(r.consumed == piece.size());
        break;
      }
      if (r.status == rg::parse_status::error) {
        out.failed = true;
        out.error = p.error();
        FUZZ_CHECK(known_reason(out.error));
        // An error is final: later feeds consume nothing and fail, even after next().
        const rg::parse_result again = p.feed("request=smtpd_access_policy\n\n");
        FUZZ_CHECK(again.status == rg::parse_status::error && again.consumed == 0);
        p.next();
        const rg::parse_result after_next = p.feed(piece.substr(r.consumed));
        FUZZ_CHECK(after_next.status == rg::parse_status::error && after_next.consumed == 0);
        FUZZ_CHECK(p.error() == out.error);
        break;
      }
      // complete: until next(), feeding consumes nothing and keeps saying complete.
      const std::size_t end = offset - piece.size() + r.consumed;
      const rg::parse_result again = p.feed(piece.substr(r.consumed));
      FUZZ_CHECK(again.status == rg::parse_status::complete && again.consumed == 0);
      out.requests.push_back(p.request());  // a copy owns its values
      out.ends.push_back(end);
      p.next();
      piece.remove_prefix(r.consumed);
      if (piece.empty()) break;
    }
  }
  return out;
}

// splitmix64: a deterministic stream of piece sizes from a hash of the input, so every input brings
// its own splits and a crash reproduces from the input alone.
struct split_rng {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
};

std::uint64_t fnv1a(std::string_view data) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : data) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
  return h;
}

std::vector<std::size_t> random_pieces(std::string_view data, std::uint64_t seed, std::size_t max_piece) {
  split_rng rng{fnv1a(data) ^ seed};
  std::vector<std::size_t> pieces;
  for (std::size_t total = 0; total < data.size();) {
    const std::size_t n = 1 + static_cast<std::size_t>(rng.next() % max_piece);
    pieces.push_back(n);
    total += n;
  }
  return pieces;
}

// Every limit of protocol.hpp holds for a request that the parser accepted.
void check_request(const rg::policy_request& req, std::size_t bytes, const rg::parser_limits& lim) {
  FUZZ_CHECK(req.get(rg::attr::request) == policy_request_value);
  FUZZ_CHECK(req.attributes_seen >= 1 && req.attributes_seen <= lim.max_attributes);
  FUZZ_CHECK(bytes <= lim.max_request);
  for (std::size_t i = 0; i < rg::attr_count; ++i) {
    const std::string_view v = req.get(static_cast<rg::attr>(i));
    FUZZ_CHECK(v.size() < lim.max_line);  // a value is part of a line, after "name="
    FUZZ_CHECK(v.find('\n') == std::string_view::npos && v.find('\0') == std::string_view::npos);
  }
}

void check_same(const outcome& a, const outcome& b) {
  FUZZ_CHECK(a.failed == b.failed);
  FUZZ_CHECK(a.ends == b.ends);
  FUZZ_CHECK(a.requests.size() == b.requests.size());
  for (std::size_t i = 0; i < a.requests.size(); ++i) {
    FUZZ_CHECK(a.requests[i].values() == b.requests[i].values());
    FUZZ_CHECK(a.requests[i].attributes_seen == b.requests[i].attributes_seen);
  }
}

void fuzz_parser(std::string_view data, const rg::parser_limits& lim) {
  const outcome expected = reference_parse(data, lim);
  const outcome whole = incremental_parse(data, lim, {data.size()});
  check_same(expected, whole);
  // Fed whole, the parser meets each line in one piece, as the reference does, so even the reason
  // matches; split reads may find a different fault of the same line first (a NUL or an overlong line).
  FUZZ_CHECK(expected.error == whole.error);
  for (std::size_t i = 0; i < whole.requests.size(); ++i) {
    check_request(whole.requests[i], whole.ends[i] - (i == 0 ? 0 : whole.ends[i - 1]), lim);
  }

  // Byte by byte is quadratic nowhere but costs one call per byte: bounded to keep executions fast.
  if (data.size() <= 4096)
    check_same(expected, incremental_parse(data, lim, std::vector<std::size_t>(data.size(), 1)));
  check_same(expected, incremental_parse(data, lim, random_pieces(data, 1, 3)));
  check_same(expected, incremental_parse(data, lim, random_pieces(data, 2, 17)));
  check_same(expected, incremental_parse(data, lim, random_pieces(data, 3, 300)));
}

// append_reply writes exactly "action=" + the action with line breaks and NULs blanked + "\n\n" after
// what `out` held; format_reply is the same on an empty string.
void check_reply(std::string_view action, const std::string& prefix) {
  std::string out = prefix;
  rg::append_reply(out, action);
  FUZZ_CHECK(out.size() == prefix.size() + 7 + action.size() + 2);
  FUZZ_CHECK(out.compare(0, prefix.size(), prefix) == 0);
  const std::string_view written(out.data() + prefix.size(), out.size() - prefix.size());
  FUZZ_CHECK(written.substr(0, 7) == "action=");
  FUZZ_CHECK(written.substr(written.size() - 2) == "\n\n");
  const std::string_view body = written.substr(7, action.size());
  for (std::size_t i = 0; i < action.size(); ++i) {
    const char c = action[i];
    const bool blanked = c == '\n' || c == '\r' || c == '\0';
    FUZZ_CHECK(body[i] == (blanked ? ' ' : c));
  }
  FUZZ_CHECK(rg::format_reply(action) == out.substr(prefix.size()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  const std::string_view data(reinterpret_cast<const char*>(bytes), size);

  fuzz_parser(data, rg::parser_limits{});
  fuzz_parser(data, rg::parser_limits{.max_line = 24, .max_attributes = 5, .max_request = 120});
  fuzz_parser(data, rg::parser_limits{.max_line = 0, .max_attributes = 0, .max_request = 0});

  // Replies built from what parsed (the daemon echoes request values into reply text), and from the raw
  // input, which holds the line breaks the writer must neutralize.
  const outcome parsed = reference_parse(data, rg::parser_limits{});
  std::string replies;
  for (const rg::policy_request& req : parsed.requests) {
    check_reply("DUNNO " + std::string(req.get(rg::attr::sasl_username)) + " " + std::string(req.get(rg::attr::sender)),
                replies);
    rg::append_reply(replies, req.get(rg::attr::recipient));
  }
  check_reply(data, replies);

  // Attribute names: a name maps to the attribute of that exact name, or to none.
  for (std::size_t i = 0; i < rg::attr_count; ++i) {
    const auto a = static_cast<rg::attr>(i);
    FUZZ_CHECK(rg::attr_from_name(rg::attr_name(a)) == a);
  }
  for (std::size_t len = 0; len <= data.size() && len <= 32; ++len) {
    const std::string_view name = data.substr(0, len);
    if (const auto a = rg::attr_from_name(name)) FUZZ_CHECK(rg::attr_name(*a) == name);
  }
  return 0;
}
