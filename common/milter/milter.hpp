// The Sendmail milter protocol (version 6) as Postfix speaks it (src/milter/milter8.c), filter side: a bounded
// incremental packet decoder, decoders for the payloads rateguard reads, and encoders for its replies. Standard
// library only, so a fuzzer can link it alone. It knows nothing of sockets, rules or counting; the codes are those
// of libmilter's mfdef.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rg::milter {

// Commands from the MTA (SMFIC_*).
namespace command {
inline constexpr char abort = 'A', body = 'B', connect = 'C', macro = 'D', end_of_body = 'E', helo = 'H',
                      quit_new_connection = 'K', header = 'L', mail = 'M', end_of_headers = 'N', negotiate = 'O',
                      quit = 'Q', rcpt = 'R', data = 'T', unknown = 'U';
}  // namespace command

// Replies to the MTA (SMFIR_*).
namespace reply {
inline constexpr char accept = 'a', continue_ = 'c', quarantine = 'q', reject = 'r', tempfail = 't', reply_code = 'y',
                      add_header = 'h', negotiate = 'O';
}  // namespace reply

inline constexpr std::uint32_t protocol_version = 6;
// Actions a filter may ask for at end of message (SMFIF_*).
inline constexpr std::uint32_t action_add_headers = 0x01, action_quarantine = 0x20;
// Events a filter does not want, and replies it will not send (SMFIP_*).
inline constexpr std::uint32_t no_connect = 0x01, no_helo = 0x02, no_mail = 0x04, no_rcpt = 0x08, no_body = 0x10,
                               no_headers = 0x20, no_end_of_headers = 0x40, no_header_reply = 0x80,
                               no_unknown = 0x100, no_data = 0x200;
// Steps the filter will not reply to (SMFIP_NR_*): the MTA goes on without waiting.
inline constexpr std::uint32_t no_reply_connect = 0x1000, no_reply_helo = 0x2000, no_reply_mail = 0x4000,
                               no_reply_rcpt = 0x8000, no_reply_data = 0x10000, no_reply_unknown = 0x20000,
                               no_reply_end_of_headers = 0x40000, no_reply_body = 0x80000;

// A packet is a 4-byte big-endian length, then that many bytes: the command and its data. Postfix itself refuses
// replies over 2 x 65535 bytes; what it sends us is bounded by its own limits (a header is at most
// header_size_limit, 102400 by default). A larger or empty packet is an attack or a desynchronized stream.
inline constexpr std::size_t max_packet = 256 * 1024;

struct packet {
  char command = 0;
  std::string_view data;  // valid until the next feed() or next()
};

enum class decode_status : std::uint8_t {
  need_more,  // all input consumed, no whole packet yet
  complete,   // a packet is complete: read it with current(), then call next()
  error       // oversized, empty or otherwise malformed: error() says why; close the connection
};

struct decode_result {
  decode_status status;
  std::size_t consumed;  // bytes of the input used; on `complete` the rest belongs to the next packet
};

class decoder {
 public:
  explicit decoder(std::size_t max = max_packet) : max_(max) {}

  // Feeds bytes; stops right after a complete packet, so several packets in one read are decoded one at a
  // time: feed the unconsumed rest again after next(). Until next(), further feeds return complete and consume
  // nothing. An error is final.
  decode_result feed(std::string_view data);
  packet current() const;
  void next();
  const std::string& error() const { return error_; }

 private:
  std::size_t max_;
  std::string buf_;          // the length prefix, then the packet as it arrives
  std::size_t want_ = 0;     // the packet's length once the prefix is in; 0 before
  bool complete_ = false;
  std::string error_;
};

// Payloads. Each returns nullopt when the data is malformed (the connection is then closed).
struct negotiation {
  std::uint32_t version = 0, actions = 0, protocol = 0;
};
std::optional<negotiation> parse_negotiation(std::string_view data);

// SMFIC_MACRO: the command the macros are for, then name/value pairs ("i", "{auth_authen}", ...).
struct macro_set {
  char for_command = 0;
  std::vector<std::pair<std::string_view, std::string_view>> values;
};
std::optional<macro_set> parse_macros(std::string_view data);

// SMFIC_CONNECT: host name, family ('4', '6', 'L' unix, 'U' unknown), port, address (absent for 'U').
struct connect_info {
  std::string_view host;
  char family = 'U';
  std::uint16_t port = 0;
  std::string_view address;
};
std::optional<connect_info> parse_connect(std::string_view data);

// SMFIC_MAIL, SMFIC_RCPT, SMFIC_HELO: NUL-terminated strings; the first is the address ("<a@b>") or HELO name.
std::optional<std::vector<std::string_view>> parse_strings(std::string_view data);

// SMFIC_HEADER: name and value.
struct header_field {
  std::string_view name, value;
};
std::optional<header_field> parse_header(std::string_view data);

// "<alice@example.com>" -> "alice@example.com"; anything else as it is.
std::string_view strip_angle_brackets(std::string_view address);

// The protocol's integers (packet lengths, negotiation fields, the connect port's 2 bytes are its low half): 4 bytes,
// big-endian.
std::string be32(std::uint32_t v);

// Replies, each a whole packet. Strings must not contain NUL (cut at the first one as a last defence).
std::string encode(char command, std::string_view data = {});
std::string encode_negotiation(const negotiation& n);
std::string encode_reply_code(std::string_view smtp_reply);  // "451 4.7.1 text": tempfail/reject with a text
std::string encode_quarantine(std::string_view reason);
std::string encode_add_header(std::string_view name, std::string_view value);

}  // namespace rg::milter
