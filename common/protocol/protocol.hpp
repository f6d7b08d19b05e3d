// Postfix policy delegation protocol (SMTPD_POLICY_README): an incremental, bounded request parser and the
// reply writer. Standard library only, so a fuzzer can link this file alone. It knows nothing of sockets,
// rules or counting.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
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
//
// Values are views. The parser points them into the bytes it was fed (or into its own copy of a request
// that arrived over several reads), so a request from the parser is valid until its next(): anything kept
// beyond the request (a tracker's instance, a journal record, a queued event) is copied where it is kept.
// set() stores its own copy instead, for fronts and tests that build a request. A copy of a request owns all
// its values, so a copy outlives the buffer; a move keeps what the source had (views into the source's own
// storage stay valid, it is moved as a whole).
class policy_request {
 public:
  policy_request() = default;
  policy_request(const policy_request& other);
  policy_request& operator=(const policy_request& other);
  policy_request(policy_request&&) noexcept = default;
  policy_request& operator=(policy_request&&) noexcept = default;
  ~policy_request() = default;

  std::string_view get(attr a) const { return values_[static_cast<std::size_t>(a)]; }
  // Stores a copy of `value` in the request itself. Its buffer is kept by clear(), so a front that builds a
  // request per message stops allocating after a few.
  void set(attr a, std::string_view value);
  // Points the attribute at bytes the caller keeps unchanged for the life of the request (the parser).
  void set_view(attr a, std::string_view value) { values_[static_cast<std::size_t>(a)] = value; }
  const std::array<std::string_view, attr_count>& values() const { return values_; }
  void clear();

  std::size_t attributes_seen = 0;  // all name=value lines, known or not
  // Never read from the wire: set by a front that decides a whole message at once (the milter front).
  std::vector<std::string> recipients;  // every envelope recipient; empty: a policy request (one per RCPT)
  std::string local_user;               // the local account that submitted the message, when known
  std::string script;                   // X-PHP-Originating-Script: a hint for the log and journal, never a key

 private:
  // Empty values are views of "" rather than null views, as an empty std::string's data() is never null.
  static constexpr std::array<std::string_view, attr_count> no_values() {
    std::array<std::string_view, attr_count> a;
    a.fill("");
    return a;
  }
  std::array<std::string_view, attr_count> values_ = no_values();
  // What set() stored; made at the first set(), so requests from the parser never allocate it. On the heap,
  // so a move leaves the strings (and the views into them) where they are.
  std::unique_ptr<std::array<std::string, attr_count>> owned_;
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
  //
  // Lifetime: when a feed returns complete, request()'s values point into the bytes of *that* feed (the
  // request arrived in one piece) or into the parser's own copy (it arrived in several feeds). So the
  // caller keeps the bytes of the completing feed unchanged until next(); the bytes of a feed that returned
  // need_more it may overwrite at once (the parser has copied the request's part of them).
  parse_result feed(std::string_view data);

  const policy_request& request() const { return request_; }
  // Forgets the completed request and readies the parser for the next one.
  void next();
  // Why the last feed() returned error (a short, log-safe English phrase).
  const std::string& error() const { return error_; }

 private:
  // Checks one line without its terminator and counts it; with `bind`, also points the attribute at it.
  // False (and failed_) on a malformed line.
  bool parse_line(std::string_view line, bool bind);
  // feed() once the request has begun in an earlier feed (request_bytes_ > 0).
  parse_result feed_carried(std::string_view data);
  // The empty line: the request is complete if it is a policy request. `carried`: the request spanned
  // feeds, its views are bound from carry_ first.
  bool end_request(bool carried);
  // Points the values at the lines of a whole request already checked by parse_line (carry_).
  void bind_all(std::string_view request);
  bool line_too_long(std::size_t len, char last) const;
  bool fail(const char* reason);  // records the reason; always returns false

  parser_limits limits_;
  policy_request request_;
  // The bytes of the current request so far when it spans feeds (from its first byte); empty while a request
  // arrives in one feed, which is the common case and copies nothing.
  std::string carry_;
  std::size_t line_len_ = 0;  // bytes of the current line held in carry_ (a line split across feeds)
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
