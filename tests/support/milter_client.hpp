// The MTA side of the milter protocol (version 6) for tests and the bench: the packets Postfix 3.7's smtpd and
// cleanup send a milter (src/milter/milter8.c), over one blocking socket with a deadline on every read and write.
// Packets are framed and read with rg_milter's codec. Not a filter and not Postfix: one milter, no queue file, and
// end-of-message modification requests are recorded, not applied.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "milter.hpp"

namespace rg::test {

// SMFIP_* bits of libmilter's mfdef.h that common/milter does not name (it names what a filter asks for).
namespace smfip {
inline constexpr std::uint32_t skip = 1u << 10, rcpt_rej = 1u << 11, hdr_leadspc = 1u << 20;
}  // namespace smfip

// What Postfix 3.7 offers (milter_protocol = 6): every SMFIF action including SETSYMLIST, every SMFIP step.
inline constexpr std::uint32_t postfix_actions = 0x1ff, postfix_protocol = 0x1fffff;

// Name/value pairs in the order they are sent ("i", "{auth_authen}", "{mail_addr}", ...).
using milter_macros = std::vector<std::pair<std::string, std::string>>;

// The SMTP client connection as the filter sees it: CONNECT and HELO, each after its macros. The defaults are
// cleanup's fake connection for sendmail mail (docs/postfix-milter-facts.md, section 1).
struct milter_connection {
  milter_macros macros = {{"j", "mx.rg-test"},
                          {"{daemon_name}", "mx.rg-test"},
                          {"{daemon_addr}", "127.0.0.1"},
                          {"v", "Postfix 3.7.11"},
                          {"_", "localhost [127.0.0.1]"}};
  std::string host = "localhost";
  char family = '4';  // '4', '6', 'L' (unix: port 0, the path as address), 'U' (no port, no address)
  std::uint16_t port = 0;
  std::string address = "127.0.0.1";
  milter_macros helo_macros;  // cleanup has none; the (empty) macro packet is sent anyway, as Postfix does
  std::string helo = "localhost";
};

struct milter_recipient {
  std::vector<std::string> args;  // the address ("rcpt@x" from cleanup, "<rcpt@x>" from smtpd), then ESMTP params
  milter_macros macros;           // "i", "{rcpt_addr}", ...
};

// One message, MAIL to EOM. Postfix sends the EOH macros before every header as well, and the EOM macros before
// every body chunk as well; so does this client.
struct milter_message {
  milter_macros mail_macros;           // "i", "{auth_authen}", "{mail_addr}", ...
  std::vector<std::string> mail_args;  // the sender first, then ESMTP parameters
  std::vector<milter_recipient> rcpts;
  milter_macros data_macros;
  // Values as after "Name: ": Postfix eats that one space, and sends it only to a filter that asked for
  // SMFIP_HDR_LEADSPC (then this client sends " " + value).
  std::vector<std::pair<std::string, std::string>> headers;
  milter_macros eoh_macros;
  std::string body;  // CRLF line ends; sent in chunks of at most 65535 bytes (Postfix's MILTER_CHUNK_SIZE)
  milter_macros eom_macros;
};

// A message as cleanup sends one from sendmail: `queue_id` as "i" from MAIL on, {mail_addr}, one RCPT per
// recipient with {rcpt_addr}, addresses without angle brackets, From/To/Subject/Message-Id/Date, a short body.
milter_message sendmail_message(std::string_view queue_id, std::string_view sender,
                                const std::vector<std::string>& recipients);

// Where a reply came from: the event it answered.
enum class milter_stage : std::uint8_t { negotiate, connect, helo, mail, rcpt, data, header, eoh, body, eom };
std::string_view stage_name(milter_stage s);

struct milter_reply {
  char command = 0;  // 'c', 'q', 'y', 'h', 'a', 'r', 't', ...
  std::string data;  // 'y' and 'q': the text without its NUL; others: the raw data (empty for 'c')
};

// The replies to one event: any number of non-final ones ('q'; at EOM also header/recipient edits), then one
// final one ('c', 'a', 'r', 't', 'y', 'd', 's', '4'). 'p' (progress) is skipped.
struct milter_stage_replies {
  milter_stage stage = milter_stage::eom;
  std::size_t index = 0;  // which RCPT, header or body chunk (0-based)
  std::vector<milter_reply> replies;
  char final_command() const { return replies.empty() ? char{0} : replies.back().command; }
};

struct milter_outcome {
  // The replies at end of message, in order (e.g. 'q' "reason" then 'c'; or 'y' "451 4.7.1 ..."); empty when
  // the message stopped earlier or failed.
  std::vector<milter_reply> eom;
  // Every event before EOM answered with anything but a lone 'c', in order. When the last one's final reply is
  // neither 'c' nor 's' (skip), the client sent nothing more of the message, as Postfix stops sending it: see
  // stopped(); send abort() or quit() next.
  std::vector<milter_stage_replies> before_eom;
  // Set when the filter broke the protocol in a way Postfix would not accept (a reply it would log as an error,
  // an oversized packet), or the connection failed or timed out. The connection is closed then.
  std::string error;

  bool ok() const { return error.empty(); }
  // The final EOM reply, 0 when there is none.
  char final_command() const { return eom.empty() ? char{0} : eom.back().command; }
  bool quarantined() const;  // a 'q' among the EOM replies
  // The replies that stopped the message before EOM, or nullptr.
  const milter_stage_replies* stopped() const;
};

struct milter_client_options {
  std::chrono::milliseconds timeout{5000};  // bounds every write and every wait for a reply
  std::uint32_t version = rg::milter::protocol_version;
  std::uint32_t actions = postfix_actions;
  std::uint32_t protocol = postfix_protocol;
};

// One MTA-to-filter connection. Every call is blocking and bounded by options.timeout; after an error (see
// error()) the socket is closed and later calls fail at once.
class milter_client {
 public:
  // "inet:127.0.0.1:PORT", "inet:[::1]:PORT" (loopback only: tests never leave the machine) or "unix:/path".
  // Throws std::runtime_error when it cannot connect. Does not negotiate.
  explicit milter_client(const std::string& endpoint, milter_client_options options = {});
  // Takes over a connected stream socket (one end of a socketpair in the unit tests).
  explicit milter_client(int fd, milter_client_options options = {});
  ~milter_client();
  milter_client(const milter_client&) = delete;
  milter_client& operator=(const milter_client&) = delete;

  // SMFIC_OPTNEG with the options' version, actions and protocol; the filter's answer, or nullopt (error()). Like
  // Postfix, refuses a filter that answers a higher version or actions it was not offered, and ignores the
  // macro lists a filter may append.
  std::optional<rg::milter::negotiation> negotiate();
  const rg::milter::negotiation& filter() const { return filter_; }

  // CONNECT and HELO, each preceded by its macros; skips what the filter's flags say, waits only for replies it
  // did not waive (SMFIP_NR_*).
  milter_outcome open(const milter_connection& c);
  // MAIL, each RCPT, DATA, each header, EOH, body chunks, EOM; the same rules, then every EOM reply.
  milter_outcome send(const milter_message& m);
  // SMFIC_ABORT: the end of a message on a connection that goes on (smtpd sends it after each message, at RSET
  // and after a message that stopped early). No reply; it goes out with the next packet or quit().
  bool abort();
  // SMFIC_QUIT, then closes the socket (cleanup's end of every message, smtpd's at disconnect). No reply.
  bool quit();

  // Raw mode for hostile-input tests: bytes as they are, then everything the peer sends until it closes.
  bool send_raw(std::string_view bytes);
  struct raw_read {
    std::string bytes;
    bool closed = false;  // the peer closed (or reset); false: still open when `wait` ran out
  };
  raw_read read_until_close(std::chrono::milliseconds wait);

  bool is_open() const { return fd_ >= 0; }
  const std::string& error() const { return error_; }

 private:
  bool event(milter_stage stage, std::size_t index, char command, std::string_view data, const milter_macros& mac,
             std::uint32_t skip_flag, std::uint32_t no_reply_flag, milter_outcome& out);
  bool flush();
  std::optional<milter_stage_replies> read_replies(milter_stage stage, std::size_t index);
  std::optional<milter_reply> read_packet();
  void fail(std::string why);

  int fd_ = -1;
  milter_client_options options_;
  rg::milter::negotiation filter_;
  std::uint32_t not_in_version_ = 0;  // events the filter's protocol version does not have (SMFIP_NO* bits)
  char skip_command_ = 0;             // the event the filter answered with SMFIR_SKIP: skip more of its kind
  std::string pending_;  // written at the next wait for a reply, quit() or send_raw()
  std::string in_;       // received bytes not yet decoded
  rg::milter::decoder decoder_;
  std::string error_;
};

}  // namespace rg::test
