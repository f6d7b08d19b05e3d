// The milter packet decoder, payload decoders and reply encoders (milter.hpp).
#include "milter.hpp"

#include <algorithm>

namespace rg::milter {

namespace {

std::uint32_t read_u32(std::string_view d) {
  return (std::uint32_t{static_cast<unsigned char>(d[0])} << 24) |
         (std::uint32_t{static_cast<unsigned char>(d[1])} << 16) |
         (std::uint32_t{static_cast<unsigned char>(d[2])} << 8) | std::uint32_t{static_cast<unsigned char>(d[3])};
}


// The text up to the first NUL (replies are C strings on the MTA side).
std::string_view c_string(std::string_view s) { return s.substr(0, s.find('\0')); }

// Takes one NUL-terminated string off the front of `data`; nullopt when there is no NUL.
std::optional<std::string_view> take_string(std::string_view& data) {
  const auto nul = data.find('\0');
  if (nul == std::string_view::npos) return std::nullopt;
  const auto s = data.substr(0, nul);
  data.remove_prefix(nul + 1);
  return s;
}

}  // namespace

decode_result decoder::feed(std::string_view data) {
  if (!error_.empty()) return {decode_status::error, 0};
  if (complete_) return {decode_status::complete, 0};
  std::size_t used = 0;
  if (want_ == 0) {
    const std::size_t take = std::min<std::size_t>(4 - buf_.size(), data.size());
    buf_.append(data.substr(0, take));
    used = take;
    if (buf_.size() < 4) return {decode_status::need_more, used};
    const std::uint32_t len = read_u32(buf_);
    if (len == 0) {
      error_ = "empty milter packet";
      return {decode_status::error, used};
    }
    if (len > max_) {
      error_ = "milter packet of " + std::to_string(len) + " bytes, over the limit of " + std::to_string(max_);
      return {decode_status::error, used};
    }
    want_ = len;
    buf_.clear();
    buf_.reserve(len);
  }
  const std::size_t take = std::min(want_ - buf_.size(), data.size() - used);
  buf_.append(data.substr(used, take));
  used += take;
  if (buf_.size() < want_) return {decode_status::need_more, used};
  complete_ = true;
  return {decode_status::complete, used};
}

packet decoder::current() const {
  if (!complete_) return {};
  return {buf_[0], std::string_view(buf_).substr(1)};
}

void decoder::next() {
  buf_.clear();
  want_ = 0;
  complete_ = false;
}

std::optional<negotiation> parse_negotiation(std::string_view data) {
  if (data.size() < 12) return std::nullopt;
  return negotiation{read_u32(data), read_u32(data.substr(4)), read_u32(data.substr(8))};
}

std::optional<macro_set> parse_macros(std::string_view data) {
  if (data.empty()) return std::nullopt;
  macro_set m;
  m.for_command = data[0];
  data.remove_prefix(1);
  while (!data.empty()) {
    auto name = take_string(data);
    if (!name) return std::nullopt;
    auto value = take_string(data);
    if (!value) return std::nullopt;
    m.values.emplace_back(*name, *value);
  }
  return m;
}

std::optional<connect_info> parse_connect(std::string_view data) {
  connect_info c;
  auto host = take_string(data);
  if (!host || data.empty()) return std::nullopt;
  c.host = *host;
  c.family = data[0];
  data.remove_prefix(1);
  if (c.family == 'U') return data.empty() ? std::optional(c) : std::nullopt;
  if (data.size() < 2) return std::nullopt;
  c.port = static_cast<std::uint16_t>((static_cast<unsigned char>(data[0]) << 8) | static_cast<unsigned char>(data[1]));
  data.remove_prefix(2);
  auto address = take_string(data);
  if (!address || !data.empty()) return std::nullopt;
  c.address = *address;
  return c;
}

std::optional<std::vector<std::string_view>> parse_strings(std::string_view data) {
  std::vector<std::string_view> out;
  while (!data.empty()) {
    auto s = take_string(data);
    if (!s) return std::nullopt;
    out.push_back(*s);
  }
  if (out.empty()) return std::nullopt;
  return out;
}

std::optional<header_field> parse_header(std::string_view data) {
  auto name = take_string(data);
  if (!name || name->empty()) return std::nullopt;
  auto value = take_string(data);
  if (!value || !data.empty()) return std::nullopt;
  return header_field{*name, *value};
}

std::string_view strip_angle_brackets(std::string_view address) {
  if (address.size() >= 2 && address.front() == '<' && address.back() == '>') return address.substr(1, address.size() - 2);
  return address;
}

std::string be32(std::uint32_t v) {
  return {static_cast<char>((v >> 24) & 0xff), static_cast<char>((v >> 16) & 0xff), static_cast<char>((v >> 8) & 0xff),
          static_cast<char>(v & 0xff)};
}

std::string encode(char command, std::string_view data) {
  std::string out;
  out.reserve(5 + data.size());
  out += be32(static_cast<std::uint32_t>(data.size() + 1));
  out.push_back(command);
  out.append(data);
  return out;
}

std::string encode_negotiation(const negotiation& n) {
  std::string data;
  data += be32(n.version);
  data += be32(n.actions);
  data += be32(n.protocol);
  return encode(reply::negotiate, data);
}

namespace {
std::string with_nul(std::string_view s) {
  std::string out(s);
  out.push_back('\0');
  return out;
}
// One line of SMTP reply text: CR and LF would split it into lines Postfix would read as a multi-line reply.
std::string one_line(std::string_view s) {
  std::string out(c_string(s));
  for (char& c : out)
    if (c == '\r' || c == '\n') c = ' ';
  return out;
}
}  // namespace

std::string encode_reply_code(std::string_view smtp_reply) { return encode(reply::reply_code, with_nul(one_line(smtp_reply))); }

std::string encode_quarantine(std::string_view reason) { return encode(reply::quarantine, with_nul(one_line(reason))); }

std::string encode_add_header(std::string_view name, std::string_view value) {
  return encode(reply::add_header, with_nul(one_line(name)) + with_nul(one_line(value)));
}

}  // namespace rg::milter
