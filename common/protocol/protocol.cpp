// Postfix policy protocol: the incremental request parser and the reply writer declared in protocol.hpp.
// Standard library only (a fuzzer links this file alone); no I/O, no logging, no policy decisions.
// The hot path scans with memchr and copies nothing: values are views of the caller's bytes; only a request
// that arrives split across reads is copied, once, into the parser's own buffer.
#include "protocol.hpp"

#include <algorithm>
#include <cstring>

namespace rg {

namespace {

// Indexed by attr; the enum names are the Postfix attribute names.
constexpr std::array<std::string_view, attr_count> attr_names = {
    "request",        "protocol_state",      "protocol_name", "client_address",
    "client_name",    "reverse_client_name", "helo_name",     "sender",
    "recipient",      "recipient_count",     "queue_id",      "instance",
    "size",           "sasl_method",         "sasl_username", "sasl_sender",
    "policy_context", "server_address",      "server_port",
};

constexpr std::string_view policy_request_value = "smtpd_access_policy";

}  // namespace

std::string_view attr_name(attr a) { return attr_names[static_cast<std::size_t>(a)]; }

// Called once per line of every request, so it picks the one possible name by the length and, where several
// names share it, by a character that tells them apart, then compares that one; no hashing, no allocation.
// The unit tests round-trip every attr through it, so a name added to the enum but not here fails there.
std::optional<attr> attr_from_name(std::string_view name) {
  const auto is = [name](attr a) -> std::optional<attr> {
    if (name == attr_name(a)) return a;
    return std::nullopt;
  };
  switch (name.size()) {
    case 4:
      return is(attr::size);
    case 6:
      return is(attr::sender);
    case 7:
      return is(attr::request);
    case 8:
      return is(name[0] == 'q' ? attr::queue_id : attr::instance);
    case 9:
      return is(name[0] == 'h' ? attr::helo_name : attr::recipient);
    case 11:  // client_name, sasl_method, sasl_sender, server_port
      switch (name[5]) {
        case 't': return is(attr::client_name);
        case 'm': return is(attr::sasl_method);
        case 's': return is(attr::sasl_sender);
        case 'r': return is(attr::server_port);
        default: return std::nullopt;
      }
    case 13:
      return is(name[0] == 'p' ? attr::protocol_name : attr::sasl_username);
    case 14:  // protocol_state, client_address, policy_context, server_address
      switch (name[2]) {
        case 'o': return is(attr::protocol_state);
        case 'i': return is(attr::client_address);
        case 'l': return is(attr::policy_context);
        case 'r': return is(attr::server_address);
        default: return std::nullopt;
      }
    case 15:
      return is(attr::recipient_count);
    case 19:
      return is(attr::reverse_client_name);
    default:
      return std::nullopt;
  }
}

policy_request::policy_request(const policy_request& other)
    : attributes_seen(other.attributes_seen), recipients(other.recipients), local_user(other.local_user),
      script(other.script) {
  for (std::size_t i = 0; i < attr_count; ++i)
    if (!other.values_[i].empty()) set(static_cast<attr>(i), other.values_[i]);
}

policy_request& policy_request::operator=(const policy_request& other) {
  if (this == &other) return *this;
  for (std::size_t i = 0; i < attr_count; ++i) {
    if (other.values_[i].empty())
      values_[i] = "";
    else
      set(static_cast<attr>(i), other.values_[i]);
  }
  attributes_seen = other.attributes_seen;
  recipients = other.recipients;
  local_user = other.local_user;
  script = other.script;
  return *this;
}

void policy_request::set(attr a, std::string_view value) {
  if (!owned_) owned_ = std::make_unique<std::array<std::string, attr_count>>();
  const auto i = static_cast<std::size_t>(a);
  std::string& s = (*owned_)[i];
  s.assign(value.data(), value.size());  // reuses the string's capacity
  values_[i] = s;
}

void policy_request::clear() {
  // The owned strings keep their buffers for the next set().
  values_.fill("");
  attributes_seen = 0;
  recipients.clear();
  local_user.clear();
  script.clear();
}

// Runs for every line of every request: defined before feed() and inline, so the call disappears there.
inline bool request_parser::parse_line(std::string_view line, bool bind) {
  const std::size_t eq = line.find('=');
  if (eq == std::string_view::npos) return fail("line without '='");
  if (eq == 0) return fail("empty attribute name");
  if (++request_.attributes_seen > limits_.max_attributes) return fail("too many attributes");
  if (const auto a = attr_from_name(line.substr(0, eq))) {
    if (bind) request_.set_view(*a, line.substr(eq + 1));
    if (*a == attr::request) saw_request_ = true;
  }
  return true;
}

parse_result request_parser::feed(std::string_view data) {
  if (failed_) return {parse_status::error, 0};
  if (complete_) return {parse_status::complete, 0};
  if (request_bytes_ > 0) return feed_carried(data);

  // The common case: a request that begins in this feed. Its lines are views of `data`; only when it does
  // not end here are its bytes so far copied (carry_), for feed_carried to go on with.
  const char* const begin = data.data();
  const char* const end = begin + data.size();
  // One NUL scan for the whole input, not one per line. A line holds the NUL when it ends after it; lines
  // before it parse as usual.
  const auto* const nul = static_cast<const char*>(std::memchr(begin, '\0', data.size()));
  const char* p = begin;
  while (p < end) {
    const auto* nl = static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
    const char* const line_end = nl ? nl : end;
    const auto len = static_cast<std::size_t>(line_end - p);
    const std::size_t used = len + (nl ? 1 : 0);
    // Checked before anything is kept, so a peer that never sends '\n' cannot grow carry_ past max_request,
    // nor one line past max_line.
    const char* reason = nullptr;
    if (nul != nullptr && nul < line_end)
      reason = "NUL byte in request";
    else if (line_too_long(len, len == 0 ? '\0' : line_end[-1]))
      reason = "line too long";
    else if (used > limits_.max_request - static_cast<std::size_t>(p - begin))
      reason = "request too large";
    if (reason != nullptr) {
      fail(reason);
      return {parse_status::error, static_cast<std::size_t>(p - begin)};
    }
    if (!nl) {  // the last line goes on in the next feed
      line_len_ = len;
      p = end;
      break;
    }
    std::string_view line(p, len);
    p = nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const bool ok = line.empty() ? end_request(false) : parse_line(line, true);
    const auto consumed = static_cast<std::size_t>(p - begin);
    if (!ok) return {parse_status::error, consumed};
    if (complete_) return {parse_status::complete, consumed};
  }
  if (p != begin) {
    // The request goes on in the next feed, whose bytes may replace these: keep its bytes so far, and drop
    // the views into `data` (the values are bound from carry_ when the request is complete).
    request_bytes_ = static_cast<std::size_t>(p - begin);
    carry_.assign(begin, request_bytes_);
    const std::size_t seen = request_.attributes_seen;
    request_.clear();
    request_.attributes_seen = seen;
  }
  return {parse_status::need_more, static_cast<std::size_t>(p - begin)};
}

parse_result request_parser::feed_carried(std::string_view data) {
  // The request began in an earlier feed: its bytes so far are in carry_, and this feed's bytes of it are
  // appended as they are consumed; its values are bound from carry_ once it is complete.
  const char* const end = data.data() + data.size();
  const auto* const nul = static_cast<const char*>(std::memchr(data.data(), '\0', data.size()));
  const char* p = data.data();
  while (p < end) {
    const auto* nl = static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
    // The bytes of the current line that this buffer holds, without the '\n'.
    const char* const chunk_end = nl ? nl : end;
    const std::string_view chunk(p, static_cast<std::size_t>(chunk_end - p));
    const std::size_t used = chunk.size() + (nl ? 1 : 0);
    const auto pos = static_cast<std::size_t>(p - data.data());
    const std::size_t line_len = line_len_ + chunk.size();
    const char last = chunk.empty() ? (line_len_ == 0 ? '\0' : carry_.back()) : chunk.back();
    const char* reason = nullptr;
    if (nul != nullptr && nul < chunk_end) {
      reason = "NUL byte in request";
    } else if (line_too_long(line_len, last)) {
      reason = "line too long";
    } else if (used > limits_.max_request - request_bytes_) {
      reason = "request too large";
    }
    if (reason != nullptr) {
      fail(reason);
      return {parse_status::error, pos};
    }
    carry_.append(p, used);
    request_bytes_ += used;
    p += used;
    if (!nl) {
      line_len_ = line_len;
      break;
    }
    // The line may have begun in an earlier feed: it is read from carry_, where it ends just before the '\n'
    // appended last.
    std::string_view line = std::string_view(carry_).substr(carry_.size() - 1 - line_len, line_len);
    line_len_ = 0;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const bool ok = line.empty() ? end_request(true) : parse_line(line, false);
    const auto consumed = static_cast<std::size_t>(p - data.data());
    if (!ok) return {parse_status::error, consumed};
    if (complete_) return {parse_status::complete, consumed};
  }
  return {parse_status::need_more, static_cast<std::size_t>(p - data.data())};
}

bool request_parser::end_request(bool carried) {
  if (request_.attributes_seen == 0) return fail("empty request");
  if (!saw_request_) return fail("missing request attribute");
  if (carried) bind_all(carry_);
  if (request_.get(attr::request) != policy_request_value) return fail("not a policy request");
  complete_ = true;
  return true;
}

void request_parser::bind_all(std::string_view request) {
  // Every line here passed parse_line already, and the last one is the empty line.
  while (!request.empty()) {
    const std::size_t nl = request.find('\n');
    if (nl == std::string_view::npos) break;
    std::string_view line = request.substr(0, nl);
    request.remove_prefix(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) break;
    const std::size_t eq = line.find('=');
    if (const auto a = attr_from_name(line.substr(0, eq))) request_.set_view(*a, line.substr(eq + 1));
  }
}

bool request_parser::line_too_long(std::size_t len, char last) const {
  // A trailing '\r' may be half of a "\r\n" terminator, which does not count against the limit.
  const std::size_t content = (len > 0 && last == '\r') ? len - 1 : len;
  return content > limits_.max_line;
}

bool request_parser::fail(const char* reason) {
  // Reasons are fixed phrases, never input bytes, so they can go to logs and replies unescaped.
  error_ = reason;
  failed_ = true;
  return false;
}

void request_parser::next() {
  request_.clear();
  // A request that spanned reads is usually a few hundred bytes: one of up to max_request is not kept for
  // the life of an idle connection.
  constexpr std::size_t carry_kept = 16 * 1024;
  if (carry_.capacity() > carry_kept)
    carry_ = std::string();
  else
    carry_.clear();
  line_len_ = 0;
  request_bytes_ = 0;
  complete_ = false;
  saw_request_ = false;
}

void append_reply(std::string& out, std::string_view action) {
  const std::size_t start = out.size() + 7;  // first byte of the action, after "action="
  out.append("action=").append(action);
  // Last defence: a line break would end the reply early and let the rest be read as the next reply.
  std::replace_if(
      out.begin() + static_cast<std::ptrdiff_t>(start), out.end(),
      [](char c) { return c == '\n' || c == '\r' || c == '\0'; }, ' ');
  out.append("\n\n");
}

std::string format_reply(std::string_view action) {
  std::string out;
  out.reserve(action.size() + 9);  // "action=" + action + "\n\n"
  append_reply(out, action);
  return out;
}

}  // namespace rg
