// libFuzzer target for common/milter: the input is a byte stream from a milter client (Postfix, or anything that
// connects). It is decoded whole, byte by byte and in chunk splits derived from the input, under the default limit
// and a tiny one, and every outcome is checked against a plain non-incremental reading of the framing. Every
// complete packet goes through every payload decoder, and the reply encoders are fed the packet data and must
// produce one well-formed packet each. The packets then drive a milter session (policyd/milter_session) as the
// daemon does, with a verdict at each end of message: whatever arrives, its replies are well-formed packets and its
// requests hold only what it was sent. Not a unit test: regressions found here go to tests/unit/test_milter.cpp.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "milter.hpp"
#include "milter_session.hpp"

namespace {

namespace m = rg::milter;

struct outcome {
  std::vector<std::string> packets;  // command byte + data
  bool failed = false;
};

// The framing as the protocol states it: 4-byte big-endian length (1..max), then that many bytes.
outcome reference_decode(std::string_view data, std::size_t max) {
  outcome out;
  std::size_t pos = 0;
  while (data.size() - pos >= 4) {
    const auto b = [&](std::size_t i) { return std::uint32_t{static_cast<unsigned char>(data[pos + i])}; };
    const std::uint32_t len = (b(0) << 24) | (b(1) << 16) | (b(2) << 8) | b(3);
    if (len == 0 || len > max) {
      out.failed = true;
      return out;
    }
    if (data.size() - pos - 4 < len) return out;
    out.packets.emplace_back(data.substr(pos + 4, len));
    pos += 4 + len;
  }
  return out;
}

// Feeds `data` in pieces of the given sizes (cycled; 0 means the rest).
outcome incremental_decode(std::string_view data, std::size_t max, const std::vector<std::size_t>& sizes) {
  outcome out;
  m::decoder d(max);
  std::size_t pos = 0, turn = 0;
  while (pos < data.size()) {
    std::size_t n = sizes.empty() ? 0 : sizes[turn++ % sizes.size()];
    if (n == 0 || n > data.size() - pos) n = data.size() - pos;
    std::string_view piece = data.substr(pos, n);
    pos += n;
    for (int guard = 0; guard < 1 << 20; ++guard) {
      const auto r = d.feed(piece);
      FUZZ_CHECK(r.consumed <= piece.size());
      piece.remove_prefix(r.consumed);
      if (r.status == m::decode_status::error) {
        FUZZ_CHECK(!d.error().empty());
        out.failed = true;
        return out;
      }
      if (r.status == m::decode_status::need_more) {
        FUZZ_CHECK(piece.empty());
        break;
      }
      const auto p = d.current();
      out.packets.push_back(std::string(1, p.command) + std::string(p.data));
      d.next();
      if (piece.empty()) break;
    }
  }
  return out;
}

void check_payloads(const std::string& pkt) {
  const char cmd = pkt[0];
  const std::string_view data = std::string_view(pkt).substr(1);
  (void)m::parse_negotiation(data);
  if (auto ms = m::parse_macros(data)) {
    for (auto& [name, value] : ms->values) {
      FUZZ_CHECK(name.find('\0') == std::string_view::npos);
      FUZZ_CHECK(value.find('\0') == std::string_view::npos);
    }
  }
  if (auto c = m::parse_connect(data)) FUZZ_CHECK(c->host.find('\0') == std::string_view::npos);
  if (auto s = m::parse_strings(data)) {
    FUZZ_CHECK(!s->empty());
    (void)m::strip_angle_brackets(s->front());
  }
  if (auto h = m::parse_header(data)) FUZZ_CHECK(!h->name.empty());
  // Re-encoding a packet gives the same packet back.
  const std::string again = m::encode(cmd, data);
  m::decoder d;
  const auto r = d.feed(again);
  FUZZ_CHECK(r.status == m::decode_status::complete && r.consumed == again.size());
  FUZZ_CHECK(d.current().command == cmd && d.current().data == data);
  // Reply encoders: one packet, one NUL-terminated line without CR/LF.
  for (const std::string& reply : {m::encode_reply_code(data), m::encode_quarantine(data)}) {
    m::decoder rd;
    const auto rr = rd.feed(reply);
    FUZZ_CHECK(rr.status == m::decode_status::complete && rr.consumed == reply.size());
    const auto text = rd.current().data;
    FUZZ_CHECK(!text.empty() && text.back() == '\0');
    FUZZ_CHECK(text.find('\0') == text.size() - 1);
    FUZZ_CHECK(text.find('\n') == std::string_view::npos && text.find('\r') == std::string_view::npos);
  }
}

// The packets through a session, with the verdict at each end of message chosen from the input: the replies are
// whole packets of the commands a filter may send, and a request never has more recipients than RCPTs sent.
void drive_session(const std::vector<std::string>& packets) {
  static const rg::milter_session_settings settings = [] {
    rg::milter_session_settings s;
    s.user_name = [](std::uint32_t uid) { return uid % 2 ? std::string() : "user" + std::to_string(uid); };
    s.max_recipients = 8;
    return s;
  }();
  static const char* const replies[] = {"DUNNO", "HOLD rateguard: held", "450 4.7.1 slow down", "550 5.7.1 no"};
  rg::milter_session session(settings, "milter.1");
  std::string out;
  std::size_t rcpts = 0;
  for (const std::string& pkt : packets) {
    if (pkt[0] == m::command::rcpt) ++rcpts;
    const auto step = session.on_packet({pkt[0], std::string_view(pkt).substr(1)}, out);
    if (step == rg::milter_session::step::close) break;
    if (step == rg::milter_session::step::decide) {
      const auto& r = session.request();
      FUZZ_CHECK(!r.recipients.empty() && r.recipients.size() <= std::min<std::size_t>(rcpts, settings.max_recipients));
      rg::verdict v;
      v.reply = replies[pkt.size() % 4];
      session.decided(v, out);
      rcpts = 0;
    }
  }
  m::decoder d;
  std::string_view rest(out);
  for (int guard = 0; guard < 1 << 20 && !rest.empty(); ++guard) {
    const auto r = d.feed(rest);
    FUZZ_CHECK(r.status == m::decode_status::complete);
    const char c = d.current().command;
    FUZZ_CHECK(c == m::reply::continue_ || c == m::reply::quarantine || c == m::reply::reply_code ||
               c == m::reply::negotiate);
    rest.remove_prefix(r.consumed);
    d.next();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  const std::string_view data(reinterpret_cast<const char*>(bytes), size);
  std::vector<std::size_t> splits;
  for (std::size_t i = 0; i < size && splits.size() < 8; ++i) splits.push_back(static_cast<unsigned char>(data[i]) % 17);
  for (std::size_t max : {m::max_packet, std::size_t{16}}) {
    const outcome want = reference_decode(data, max);
    for (const auto& sizes : {std::vector<std::size_t>{}, std::vector<std::size_t>{1}, splits}) {
      const outcome got = incremental_decode(data, max, sizes);
      FUZZ_CHECK(got.failed == want.failed);
      FUZZ_CHECK(got.packets == want.packets);
    }
    if (max == m::max_packet) {
      for (const auto& p : want.packets) check_payloads(p);
      drive_session(want.packets);
    }
  }
  return 0;
}
