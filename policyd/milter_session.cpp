// The milter session: negotiation, the events rateguard reads, and one whole-message request at end of message.
#include "milter_session.hpp"

#include <algorithm>
#include <utility>

namespace rg {

namespace {

namespace cmd = milter::command;

// What rateguard does not need (HELO, body, end of headers, DATA, unknown commands), and the steps it never
// refuses, so Postfix sends them without waiting for a reply: only end of message is answered.
constexpr std::uint32_t wanted_protocol =
    milter::no_helo | milter::no_body | milter::no_end_of_headers | milter::no_unknown | milter::no_data |
    milter::no_header_reply | milter::no_reply_connect | milter::no_reply_helo | milter::no_reply_mail |
    milter::no_reply_rcpt | milter::no_reply_data | milter::no_reply_unknown | milter::no_reply_end_of_headers |
    milter::no_reply_body;

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return (x >= 'A' && x <= 'Z' ? x - 'A' + 'a' : x) == (y >= 'A' && y <= 'Z' ? y - 'A' + 'a' : y);
         });
}

bool all_digits(std::string_view s) {
  return !s.empty() && s.size() <= 10 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// "uid=65534 id=F4203A740BC" -> uid, id (both empty if the value has another form).
std::pair<std::string, std::string> parse_submitter(std::string_view v) {
  const auto word = [&](std::string_view key) -> std::string {
    for (std::size_t pos = 0; pos < v.size();) {
      const std::size_t end = std::min(v.find(' ', pos), v.size());
      const std::string_view w = v.substr(pos, end - pos);
      if (w.substr(0, key.size()) == key) return std::string(w.substr(key.size()));
      pos = end + 1;
    }
    return {};
  };
  return {word("uid="), word("id=")};
}

}  // namespace

milter_session::milter_session(const milter_session_settings& settings, std::string instance_prefix)
    : settings_(settings), instance_prefix_(std::move(instance_prefix)) {}

void milter_session::new_message() {
  queue_id_.clear();
  auth_authen_.clear();
  sender_.clear();
  recipients_.clear();
  too_many_recipients_ = false;
  in_message_ = false;
  first_header_seen_ = false;
  submitter_uid_.clear();
  submitter_id_.clear();
  script_.clear();
}

void milter_session::reply_to(std::uint32_t no_reply_flag, std::string& out) const {
  if ((protocol_ & no_reply_flag) == 0) out += milter::encode(milter::reply::continue_);
}

void milter_session::note_macros(const milter::macro_set& m) {
  for (const auto& [name, value] : m.values) {
    if (name == "i" || name == "{i}") {
      if (!value.empty()) queue_id_ = value;
    } else if (name == "{daemon_name}" && m.for_command == cmd::connect) {
      daemon_name_ = value;
    } else if (name == "{auth_authen}") {
      auth_authen_ = value;
    }
  }
}

void milter_session::note_header(std::string_view name, std::string_view value) {
  const bool first = !first_header_seen_;
  first_header_seen_ = true;
  // Only the first header can be the one cleanup-local's header_checks PREPENDed before pickup's Received:;
  // a script's own X-RG-Submitter is removed by the same header_checks, and a later one is ignored here.
  if (first && iequals(name, "X-RG-Submitter")) std::tie(submitter_uid_, submitter_id_) = parse_submitter(value);
  if (script_.empty() && iequals(name, "X-PHP-Originating-Script")) script_ = value.substr(0, 200);
}

milter_session::step milter_session::on_packet(const milter::packet& p, std::string& out) {
  const auto fail = [&](std::string why) {
    error_ = std::move(why);
    return step::close;
  };
  if (!negotiated_ && p.command != cmd::negotiate) return fail("command before option negotiation");
  switch (p.command) {
    case cmd::negotiate: {
      const auto n = milter::parse_negotiation(p.data);
      if (!n) return fail("malformed option negotiation");
      if (n->version < 2) return fail("milter protocol version " + std::to_string(n->version) + " is too old");
      negotiated_ = true;
      protocol_ = wanted_protocol & n->protocol;
      out += milter::encode_negotiation(
          {std::min<std::uint32_t>(n->version, milter::protocol_version), milter::action_quarantine & n->actions, protocol_});
      return step::reply;
    }
    case cmd::macro: {
      const auto m = milter::parse_macros(p.data);
      if (!m) return fail("malformed macro packet");
      note_macros(*m);
      return step::reply;
    }
    case cmd::connect: {
      const auto c = milter::parse_connect(p.data);
      if (!c) return fail("malformed connect packet");
      // Port 0 is cleanup's stand-in for mail that had no SMTP client (sendmail, pickup): "localhost", 127.0.0.1.
      // That address is not a client, so client_address rules do not see such mail (local_user counts it).
      const bool tcp = (c->family == '4' || c->family == '6') && c->port != 0;
      client_address_ = tcp ? std::string(c->address) : std::string();
      reply_to(milter::no_reply_connect, out);
      return step::reply;
    }
    case cmd::mail: {
      const auto args = milter::parse_strings(p.data);
      if (!args) return fail("malformed MAIL packet");
      const std::string queue_id = queue_id_, auth = auth_authen_;  // their macros came just before
      new_message();
      queue_id_ = queue_id;
      auth_authen_ = auth;
      in_message_ = true;
      sender_ = milter::strip_angle_brackets(args->front());
      reply_to(milter::no_reply_mail, out);
      return step::reply;
    }
    case cmd::rcpt: {
      const auto args = milter::parse_strings(p.data);
      if (!args) return fail("malformed RCPT packet");
      if (recipients_.size() < settings_.max_recipients)
        recipients_.emplace_back(milter::strip_angle_brackets(args->front()));
      else
        too_many_recipients_ = true;
      reply_to(milter::no_reply_rcpt, out);
      return step::reply;
    }
    case cmd::header: {
      const auto h = milter::parse_header(p.data);
      if (!h) return fail("malformed header packet");
      note_header(h->name, h->value);
      reply_to(milter::no_header_reply, out);
      return step::reply;
    }
    case cmd::helo:
      reply_to(milter::no_reply_helo, out);
      return step::reply;
    case cmd::data:
      reply_to(milter::no_reply_data, out);
      return step::reply;
    case cmd::end_of_headers:
      reply_to(milter::no_reply_end_of_headers, out);
      return step::reply;
    case cmd::body:
      reply_to(milter::no_reply_body, out);
      return step::reply;
    case cmd::unknown:
      reply_to(milter::no_reply_unknown, out);
      return step::reply;
    case cmd::end_of_body: {
      if (!in_message_ || recipients_.empty()) {  // nothing to count: let it pass
        out += milter::encode(milter::reply::continue_);
        new_message();
        return step::reply;
      }
      if (too_many_recipients_) {
        out += milter::encode_reply_code("452 4.5.3 rateguard: too many recipients in one message");
        new_message();
        return step::reply;
      }
      req_.clear();
      req_.set(attr::request, "smtpd_access_policy");
      req_.set(attr::protocol_state, "RCPT");
      req_.set(attr::protocol_name, "milter");
      req_.set(attr::client_address, client_address_);
      req_.set(attr::sasl_username, auth_authen_);
      req_.set(attr::sender, sender_);
      req_.set(attr::recipient, recipients_.front());
      req_.set(attr::recipient_count, std::to_string(recipients_.size()));
      req_.set(attr::queue_id, queue_id_);
      req_.set(attr::instance, instance_prefix_ + "." + std::to_string(++messages_));
      req_.recipients = std::move(recipients_);
      req_.script = script_;
      // The submitter, only from the pickup-only cleanup and only when the header names this message's queue ID
      // (which a script cannot know when it submits).
      if (!settings_.local_daemon_name.empty() && daemon_name_ == settings_.local_daemon_name &&
          all_digits(submitter_uid_) && !queue_id_.empty() && submitter_id_ == queue_id_) {
        const auto uid = static_cast<std::uint32_t>(std::stoul(submitter_uid_));
        std::string name = settings_.user_name ? settings_.user_name(uid) : std::string();
        req_.local_user = name.empty() ? submitter_uid_ : std::move(name);
      }
      return step::decide;
    }
    case cmd::abort:
      new_message();
      return step::reply;
    case cmd::quit_new_connection:
      new_message();
      client_address_.clear();
      daemon_name_.clear();
      return step::reply;
    case cmd::quit:
      return step::close;
    default:
      return fail("unknown milter command 0x" + [&] {
        static const char hex[] = "0123456789abcdef";
        const auto c = static_cast<unsigned char>(p.command);
        return std::string{hex[c >> 4], hex[c & 15]};
      }());
  }
}

void milter_session::decided(const verdict& v, std::string& out) {
  const std::string& r = v.reply;
  if (r.rfind("HOLD", 0) == 0) {
    // Into Postfix's hold queue, under the queue ID the decision line names.
    out += milter::encode_quarantine(r.size() > 5 ? std::string_view(r).substr(5) : std::string_view("rateguard"));
    out += milter::encode(milter::reply::continue_);
  } else if (!r.empty() && (r[0] == '4' || r[0] == '5')) {
    out += milter::encode_reply_code(r);
  } else {
    out += milter::encode(milter::reply::continue_);
  }
  new_message();
}

}  // namespace rg
