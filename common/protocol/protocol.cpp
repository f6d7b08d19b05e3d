// Postfix policy protocol: the incremental request parser and the reply writer declared in protocol.hpp.
// Standard library only (a fuzzer links this file alone); no I/O, no logging, no policy decisions.
// The hot path scans with memchr and copies a line only when it arrives split across reads.
#include "protocol.hpp"

#include <algorithm>
#include <cstring>
#include <initializer_list>

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

// Called once per line of every request, so it dispatches on the length first and compares at most
// four fixed strings; no hashing, no allocation. The unit tests round-trip every attr through it,
// so a name added to the enum but not here fails there.
std::optional<attr> attr_from_name(std::string_view name) {
  auto pick = [name](std::initializer_list<attr> candidates) -> std::optional<attr> {
    for (attr a : candidates) {
      if (name == attr_name(a)) return a;
    }
    return std::nullopt;
  };
  switch (name.size()) {
    case 4:
      return pick({attr::size});
    case 6:
      return pick({attr::sender});
    case 7:
      return pick({attr::request});
    case 8:
      return pick({attr::queue_id, attr::instance});
    case 9:
      return pick({attr::helo_name, attr::recipient});
    case 11:
      return pick({attr::client_name, attr::sasl_method, attr::sasl_sender, attr::server_port});
    case 13:
      return pick({attr::protocol_name, attr::sasl_username});
    case 14:
      return pick({attr::protocol_state, attr::client_address, attr::policy_context, attr::server_address});
    case 15:
      return pick({attr::recipient_count});
    case 19:
      return pick({attr::reverse_client_name});
    default:
      return std::nullopt;
  }
}

void policy_request::clear() {
  // std::string::clear keeps the buffer, so a long-lived connection stops allocating after a few requests.
  for (auto& v : values) v.clear();
  attributes_seen = 0;
  recipients.clear();
  local_user.clear();
  script.clear();
}

parse_result request_parser::feed(std::string_view data) {
  if (failed_) return {parse_status::error, 0};
  if (complete_) return {parse_status::complete, 0};

  // One NUL scan for the whole input, not one per line. A line holds the NUL when it ends after it; lines
  // before it parse as usual.
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

    // Checked before anything is buffered, so a peer that never sends '\n' cannot grow line_ past
    // max_line, nor a request past max_request.
    const std::size_t line_len = line_.size() + chunk.size();
    const char last = chunk.empty() ? (line_.empty() ? '\0' : line_.back()) : chunk.back();
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
    request_bytes_ += used;
    p += used;

    if (!nl) {
      line_.append(chunk);
      break;
    }
    std::string_view line = chunk;  // common case: the whole line is in this buffer, no copy
    if (!line_.empty()) {
      line_.append(chunk);
      line = line_;
    }
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const bool ok = parse_line(line);
    line_.clear();
    const auto consumed = static_cast<std::size_t>(p - data.data());
    if (!ok) return {parse_status::error, consumed};
    if (complete_) return {parse_status::complete, consumed};
  }
  return {parse_status::need_more, static_cast<std::size_t>(p - data.data())};
}

bool request_parser::parse_line(std::string_view line) {
  if (line.empty()) {
    if (request_.attributes_seen == 0) return fail("empty request");
    if (!saw_request_) return fail("missing request attribute");
    if (request_.get(attr::request) != policy_request_value) return fail("not a policy request");
    complete_ = true;
    return true;
  }
  const std::size_t eq = line.find('=');
  if (eq == std::string_view::npos) return fail("line without '='");
  if (eq == 0) return fail("empty attribute name");
  if (++request_.attributes_seen > limits_.max_attributes) return fail("too many attributes");
  if (const auto a = attr_from_name(line.substr(0, eq))) {
    request_.set(*a).assign(line.substr(eq + 1));  // assign reuses the string's capacity
    if (*a == attr::request) saw_request_ = true;
  }
  return true;
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
  line_.clear();
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
