// The MTA side of the milter protocol for tests (milter_client.hpp): packets as Postfix 3.7's milter8.c writes
// them, replies judged as it judges them, plain POSIX sockets with poll() deadlines.
#include "milter_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "net_addr.hpp"

namespace rg::test {

namespace m = rg::milter;
using clock_type = std::chrono::steady_clock;

namespace {

// Postfix refuses a reply packet over 2 x MILTER_CHUNK_SIZE (milter8.c, XXX_MAX_DATA); so do we.
constexpr std::size_t chunk_size = 65535, max_reply = 2 * chunk_size;
// Replies to one event: 'p' (progress) may repeat, edits at EOM may be many; a filter that never ends its
// answer is cut off here, even if it keeps within the timeout.
constexpr std::size_t max_replies_per_event = 10000;

void nul_terminated(std::string& out, std::string_view s) {
  out.append(s);
  out.push_back('\0');
}

std::string strings(const std::vector<std::string>& args) {
  std::string d;
  for (const auto& a : args) nul_terminated(d, a);
  return d;
}

// What milter8.c accepts as the text of SMFIR_REPLYCODE: "4xx 4..." or "5xx 5..." ('-' for multi-line).
bool postfix_accepts_reply_code(std::string_view t) {
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  return t.size() >= 5 && (t[0] == '4' || t[0] == '5') && digit(t[1]) && digit(t[2]) && (t[3] == ' ' || t[3] == '-') &&
         t[4] == t[0];
}

bool is_final(char c) {
  switch (c) {
    case 'c': case 'a': case 'r': case 't': case 'y': case 'd': case 's': case '4':
      return true;
    default:
      return false;
  }
}

// Requests a filter may send at EOM before its decision: change/insert/add header, add/delete recipient,
// replace body, change sender, add recipient with parameters.
bool is_eom_edit(char c) { return std::string_view("mih+-be2").find(c) != std::string_view::npos; }

int connect_endpoint(const std::string& spec) {
  constexpr rg::endpoint_syntax syntax{.scheme_required = true, .default_port = 0, .port_zero_ok = false};
  std::string why;
  const auto e = rg::parse_endpoint(spec, syntax, &why);
  if (!e) throw std::runtime_error("milter endpoint must be inet:HOST:PORT or unix:/path: " + spec + ": " + why);
  int fd = -1;
  int rc = -1;
  if (e->is_unix) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    if (e->path.size() >= sizeof a.sun_path) throw std::runtime_error("unix socket path too long: " + e->path);
    std::memcpy(a.sun_path, e->path.c_str(), e->path.size() + 1);
    fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a);
  } else {
    in_addr v4{};
    in6_addr v6{};
    if (::inet_pton(AF_INET, e->host.c_str(), &v4) == 1) {
      if ((ntohl(v4.s_addr) >> 24) != 127) throw std::runtime_error("tests run on loopback only: " + spec);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr = v4;
      a.sin_port = htons(e->port);
      fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd >= 0) rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a);
    } else if (::inet_pton(AF_INET6, e->host.c_str(), &v6) == 1) {
      if (!IN6_IS_ADDR_LOOPBACK(&v6)) throw std::runtime_error("tests run on loopback only: " + spec);
      sockaddr_in6 a{};
      a.sin6_family = AF_INET6;
      a.sin6_addr = v6;
      a.sin6_port = htons(e->port);
      fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd >= 0) rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a);
    } else {
      throw std::runtime_error("milter endpoint needs a numeric loopback address: " + spec);
    }
  }
  if (rc != 0) {
    const int err = errno;
    if (fd >= 0) ::close(fd);
    throw std::runtime_error("connect " + spec + ": " + std::strerror(err));
  }
  return fd;
}

}  // namespace

std::string_view stage_name(milter_stage s) {
  switch (s) {
    case milter_stage::negotiate: return "negotiate";
    case milter_stage::connect: return "connect";
    case milter_stage::helo: return "helo";
    case milter_stage::mail: return "mail";
    case milter_stage::rcpt: return "rcpt";
    case milter_stage::data: return "data";
    case milter_stage::header: return "header";
    case milter_stage::eoh: return "eoh";
    case milter_stage::body: return "body";
    case milter_stage::eom: return "eom";
  }
  return "?";
}

bool milter_outcome::quarantined() const {
  for (const auto& r : eom)
    if (r.command == m::reply::quarantine) return true;
  return false;
}

const milter_stage_replies* milter_outcome::stopped() const {
  if (before_eom.empty()) return nullptr;
  const char c = before_eom.back().final_command();
  return c == m::reply::continue_ || c == 's' ? nullptr : &before_eom.back();
}

milter_message sendmail_message(std::string_view queue_id, std::string_view sender,
                                 const std::vector<std::string>& recipients) {
  const std::string i(queue_id), from(sender);
  milter_message msg;
  msg.mail_macros = {{"i", i}, {"{mail_addr}", from}};
  msg.mail_args = {from};
  std::string to;
  for (const auto& r : recipients) {
    msg.rcpts.push_back({{r}, {{"i", i}, {"{rcpt_addr}", r}}});
    to += (to.empty() ? "" : ", ") + r;
  }
  msg.data_macros = {{"i", i}};
  msg.headers = {{"From", from},
                 {"To", to},
                 {"Subject", "rateguard milter test"},
                 {"Message-Id", "<" + i + "@mx.rg-test>"},
                 {"Date", "Thu,  3 Dec 2026 08:18:28 +0000 (UTC)"}};
  msg.eoh_macros = {{"i", i}};
  msg.body = "Hello from sendmail.\r\n";
  msg.eom_macros = {{"i", i}};
  return msg;
}

milter_client::milter_client(const std::string& endpoint, milter_client_options options)
    : fd_(connect_endpoint(endpoint)), options_(options), decoder_(max_reply) {}

milter_client::milter_client(int fd, milter_client_options options)
    : fd_(fd), options_(options), decoder_(max_reply) {}

milter_client::~milter_client() {
  if (fd_ >= 0) ::close(fd_);
}

void milter_client::fail(std::string why) {
  if (error_.empty()) error_ = std::move(why);
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool milter_client::flush() {
  if (fd_ < 0) return false;
  const auto deadline = clock_type::now() + options_.timeout;
  std::size_t off = 0;
  while (off < pending_.size()) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now()).count();
    pollfd p{fd_, POLLOUT, 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) == 0) {
      fail("timeout writing to the filter");
      return false;
    }
    const auto n = ::send(fd_, pending_.data() + off, pending_.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) {
      fail(std::string("write to the filter: ") + std::strerror(errno));
      return false;
    }
    off += static_cast<std::size_t>(n);
  }
  pending_.clear();
  return true;
}

std::optional<milter_reply> milter_client::read_packet() {
  const auto deadline = clock_type::now() + options_.timeout;
  while (fd_ >= 0) {
    const auto r = decoder_.feed(in_);
    in_.erase(0, r.consumed);
    if (r.status == m::decode_status::error) {
      fail("bad reply packet: " + decoder_.error());
      return std::nullopt;
    }
    if (r.status == m::decode_status::complete) {
      const auto p = decoder_.current();
      milter_reply reply{p.command, std::string(p.data)};
      decoder_.next();
      return reply;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now()).count();
    pollfd p{fd_, POLLIN, 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) == 0) {
      fail("timeout waiting for a reply");
      return std::nullopt;
    }
    char buf[4096];
    const auto n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) {
      fail(n == 0 ? "the filter closed the connection" : std::string("read: ") + std::strerror(errno));
      return std::nullopt;
    }
    in_.append(buf, static_cast<std::size_t>(n));
  }
  return std::nullopt;
}

std::optional<milter_stage_replies> milter_client::read_replies(milter_stage stage, std::size_t index) {
  if (!flush()) return std::nullopt;
  milter_stage_replies out{stage, index, {}};
  const std::string where = " at " + std::string(stage_name(stage));
  for (std::size_t n = 0; n < max_replies_per_event; ++n) {
    auto r = read_packet();
    if (!r) return std::nullopt;
    const char c = r->command;
    if (c == m::reply::reply_code || c == m::reply::quarantine) {
      // The text is a C string; Postfix reads up to the NUL.
      if (r->data.empty() || r->data.back() != '\0') {
        fail(std::string("'") + c + "' reply without its NUL" + where);
        return std::nullopt;
      }
      r->data.pop_back();
      if (c == m::reply::reply_code && !postfix_accepts_reply_code(r->data)) {
        fail("malformed reply code \"" + r->data + "\"" + where + " (Postfix: milter configuration error)");
        return std::nullopt;
      }
    } else if ((is_final(c) || c == 'p') && !r->data.empty()) {
      fail(std::string("'") + c + "' reply followed by data" + where);
      return std::nullopt;
    } else if (!is_final(c) && c != 'p' && !(stage == milter_stage::eom && is_eom_edit(c))) {
      fail(std::string("unexpected filter reply '") + c + "'" + where);
      return std::nullopt;
    }
    if (c == 'p') continue;
    out.replies.push_back(std::move(*r));
    if (is_final(c)) return out;
  }
  fail("more than " + std::to_string(max_replies_per_event) + " replies" + where);
  return std::nullopt;
}

// One event as milter8_event() sends it: nothing if the filter's version has no such event or it answered the
// last one of this kind with SMFIR_SKIP; else its macros (also when the filter skips the event itself: Postfix
// sends them anyway), the event unless skipped, its replies unless waived. false: stop the message (an error,
// or a final reply other than continue or skip, recorded in out.before_eom).
bool milter_client::event(milter_stage stage, std::size_t index, char command, std::string_view data,
                          const milter_macros& mac, std::uint32_t skip_flag, std::uint32_t no_reply_flag,
                          milter_outcome& out) {
  if (fd_ < 0) {
    out.error = error_.empty() ? "not connected" : error_;
    return false;
  }
  if ((skip_flag & not_in_version_) != 0) return true;
  if (skip_command_ != 0) {
    if (command == skip_command_) return true;
    skip_command_ = 0;
  }
  std::string d(1, command);
  for (const auto& [name, value] : mac) {
    nul_terminated(d, name);
    nul_terminated(d, value);
  }
  pending_ += m::encode(m::command::macro, d);
  if ((filter_.protocol & skip_flag) != 0) return true;
  pending_ += m::encode(command, data);
  if ((filter_.protocol & no_reply_flag) != 0) return true;
  auto r = read_replies(stage, index);
  if (!r) {
    out.error = error_;
    return false;
  }
  if (stage == milter_stage::eom) {
    out.eom = std::move(r->replies);
    return true;
  }
  const char final = r->final_command();
  if (final == 's') skip_command_ = command;
  if (r->replies.size() == 1 && final == m::reply::continue_) return true;
  out.before_eom.push_back(std::move(*r));
  return final == m::reply::continue_ || final == 's';
}

std::optional<m::negotiation> milter_client::negotiate() {
  if (fd_ < 0) return std::nullopt;
  pending_ += m::encode_negotiation({options_.version, options_.actions, options_.protocol});
  if (!flush()) return std::nullopt;
  auto r = read_packet();
  if (!r) return std::nullopt;
  const auto n = r->command == m::command::negotiate ? m::parse_negotiation(r->data) : std::nullopt;
  if (!n) {
    fail(std::string("bad negotiation reply '") + r->command + "' of " + std::to_string(r->data.size()) + " bytes");
    return std::nullopt;
  }
  if (n->version > options_.version) {
    fail("filter protocol version " + std::to_string(n->version) + " above the offered " +
         std::to_string(options_.version));
    return std::nullopt;
  }
  if ((n->actions & options_.actions) != n->actions) {
    fail("filter asks for actions not offered: " + std::to_string(n->actions));
    return std::nullopt;
  }
  filter_ = *n;
  // A filter of version < 4 knows no DATA event, < 3 no UNKNOWN (milter8.c's per-version event masks).
  not_in_version_ = (filter_.version < 4 ? m::no_data : 0u) | (filter_.version < 3 ? m::no_unknown : 0u);
  return filter_;
}

milter_outcome milter_client::open(const milter_connection& c) {
  milter_outcome out;
  std::string d;
  nul_terminated(d, c.host);
  d.push_back(c.family);
  if (c.family != 'U') {
    d.push_back(static_cast<char>(c.port >> 8));
    d.push_back(static_cast<char>(c.port & 0xff));
    nul_terminated(d, c.address);
  }
  if (!event(milter_stage::connect, 0, m::command::connect, d, c.macros, m::no_connect, m::no_reply_connect, out))
    return out;
  std::string h;
  nul_terminated(h, c.helo);
  event(milter_stage::helo, 0, m::command::helo, h, c.helo_macros, m::no_helo, m::no_reply_helo, out);
  return out;
}

milter_outcome milter_client::send(const milter_message& msg) {
  milter_outcome out;
  if (!event(milter_stage::mail, 0, m::command::mail, strings(msg.mail_args), msg.mail_macros, m::no_mail,
             m::no_reply_mail, out))
    return out;
  for (std::size_t i = 0; i < msg.rcpts.size(); ++i) {
    if (!event(milter_stage::rcpt, i, m::command::rcpt, strings(msg.rcpts[i].args), msg.rcpts[i].macros,
               m::no_rcpt, m::no_reply_rcpt, out))
      return out;
  }
  if (!event(milter_stage::data, 0, m::command::data, {}, msg.data_macros, m::no_data, m::no_reply_data, out))
    return out;
  // Postfix does not even read the headers, EOH or body from the queue file for a filter that skips them
  // (milter8_message), so neither they nor their macros are sent. Their macros are the EOH ones for each header
  // and the EOM ones for each body chunk, under the event's own letter.
  if ((filter_.protocol & m::no_headers) == 0) {
    const std::string space = (filter_.protocol & smfip::hdr_leadspc) != 0 ? " " : "";
    for (std::size_t i = 0; i < msg.headers.size(); ++i) {
      std::string d;
      nul_terminated(d, msg.headers[i].first);
      nul_terminated(d, space + msg.headers[i].second);
      if (!event(milter_stage::header, i, m::command::header, d, msg.eoh_macros, 0, m::no_header_reply, out))
        return out;
    }
  }
  if ((filter_.protocol & m::no_end_of_headers) == 0 &&
      !event(milter_stage::eoh, 0, m::command::end_of_headers, {}, msg.eoh_macros, 0, m::no_reply_end_of_headers, out))
    return out;
  if ((filter_.protocol & m::no_body) == 0) {
    for (std::size_t off = 0, i = 0; off < msg.body.size(); off += chunk_size, ++i) {
      const std::string_view chunk = std::string_view(msg.body).substr(off, chunk_size);
      if (!event(milter_stage::body, i, m::command::body, chunk, msg.eom_macros, 0, m::no_reply_body, out))
        return out;
    }
  }
  event(milter_stage::eom, 0, m::command::end_of_body, {}, msg.eom_macros, 0, 0, out);
  return out;
}

// Written with the next packet, as Postfix's buffered stream does: alone, it would be a small write the filter
// does not answer, and the next small write would wait for its delayed ACK (Nagle), 40 ms per message.
bool milter_client::abort() {
  pending_ += m::encode(m::command::abort);
  return fd_ >= 0;
}

bool milter_client::quit() {
  pending_ += m::encode(m::command::quit);
  const bool ok = flush();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  return ok;
}

bool milter_client::send_raw(std::string_view bytes) {
  pending_.append(bytes);
  return flush();
}

milter_client::raw_read milter_client::read_until_close(std::chrono::milliseconds wait) {
  raw_read out;
  out.bytes = std::move(in_);
  in_.clear();
  const auto deadline = clock_type::now() + wait;
  while (fd_ >= 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now()).count();
    pollfd p{fd_, POLLIN, 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) == 0) return out;
    char buf[4096];
    const auto n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) {
      out.closed = true;
      ::close(fd_);
      fd_ = -1;
      return out;
    }
    out.bytes.append(buf, static_cast<std::size_t>(n));
  }
  out.closed = true;
  return out;
}

}  // namespace rg::test
