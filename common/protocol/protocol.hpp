// Postfix policy delegation protocol (SMTPD_POLICY_README): an incremental, bounded request parser and the
// reply writer. Standard library only, so a fuzzer can link this file alone. It knows nothing of sockets,
// rules or counting.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rg {

// The attributes rateguard reads. Anything else Postfix sends is parsed, bounded and ignored.
enum class attr : std::uint8_t {
  request,
  protocol_state,
  protocol_name,
  client_address,
  client_name,
  reverse_client_name,
  helo_name,
  sender,
  recipient,
  recipient_count,
  queue_id,
  instance,
  size,
  sasl_method,
  sasl_username,
  sasl_sender,
  policy_context,
  server_address,
  server_port,
  count_  // number of known attributes; not an attribute
};
inline constexpr std::size_t attr_count = static_cast<std::size_t>(attr::count_);

std::string_view attr_name(attr a);
std::optional<attr> attr_from_name(std::string_view name);

// One request: the last value of every known attribute (a repeated attribute keeps the last value),
// empty when Postfix sent it empty or not at all.
struct policy_request {
  std::array<std::string, attr_count> values;
  std::size_t attributes_seen = 0;  // all name=value lines, known or not
  // Never read from the wire: set by a front that decides a whole message at once (the milter front).
  std::vector<std::string> recipients;  // every envelope recipient; empty: a policy request (one per RCPT)
  std::string local_user;               // the local account that submitted the message, when known
  std::string script;                   // X-PHP-Originating-Script: a hint for the log and journal, never a key

  const std::string& get(attr a) const { return values[static_cast<std::size_t>(a)]; }
  std::string& set(attr a) { return values[static_cast<std::size_t>(a)]; }
  void clear();
};

struct parser_limits {
  // Bytes of one line, not counting its "\n" or "\r\n". A longer line is an attack or a broken client:
  // real Postfix attributes are < 1 kB (a 10 kB sender still fits, so hostile values reach the key
  // hashing instead of killing the session). Enforced while the line is still arriving.
  std::size_t max_line = 16 * 1024;
  // Postfix 3.7 sends 29 attributes (tests/data/postfix-requests); 256 leaves room for growth and stops
  // attribute floods.
  std::size_t max_attributes = 256;
  // Total bytes of one request including line ends and the final empty line, so many long lines cannot
  // add up to unbounded memory.
  std::size_t max_request = 64 * 1024;
};

enum class parse_status : std::uint8_t {
  need_more,  // all input consumed, request not complete yet
  complete,   // a request is complete: read it with request(), then call next() before feeding more
  error       // malformed or oversized: error() says why; the connection should be closed
};

struct parse_result {
  parse_status status;
  std::size_t consumed;  // bytes of the input used; on `complete` the rest belongs to the next request
};

class request_parser {
 public:
  explicit request_parser(parser_limits limits = {}) : limits_(limits) {}

  // Feeds bytes. Stops right after the empty line that ends a request (status complete), so pipelined
  // requests in one read are parsed one at a time: feed the unconsumed rest again after next().
  // Until next(), further feeds return complete and consume nothing. An error is final: every later
  // feed returns error, even after next(), because the connection is to be closed.
  parse_result feed(std::string_view data);

  const policy_request& request() const { return request_; }
  // Forgets the completed request and readies the parser for the next one.
  void next();
  // Why the last feed() returned error (a short, log-safe English phrase).
  const std::string& error() const { return error_; }

 private:
  // Parses one line without its terminator; false (and failed_) on a malformed line.
  bool parse_line(std::string_view line);
  bool line_too_long(std::size_t len, char last) const;
  bool fail(const char* reason);  // records the reason; always returns false

  parser_limits limits_;
  policy_request request_;
  std::string line_;  // partial line carried between feeds; only filled when a line spans two reads
  std::size_t request_bytes_ = 0;
  std::string error_;
  bool failed_ = false;
  bool complete_ = false;
  bool saw_request_ = false;  // tells "request=" sent empty from not sent at all
};

// Reply: exactly one "action=..." line and the empty line. `action` must not contain a newline
// (the caller builds it from escaped values; '\n', '\r' and NUL become spaces as a last defence).
std::string format_reply(std::string_view action);
void append_reply(std::string& out, std::string_view action);

}  // namespace rg
