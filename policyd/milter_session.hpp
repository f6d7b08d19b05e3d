// One milter connection's state, as Postfix's cleanup (sendmail, PHP mail()) or smtpd drives it: what was
// negotiated, the client, the macros, the envelope and the few headers rateguard reads, turned at end of message
// into one whole-message policy request; and the milter replies for a verdict. No sockets and no clock: the
// server reads packets, hands them here and writes what comes back, so tests drive it packet by packet.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine.hpp"
#include "milter.hpp"
#include "protocol.hpp"

namespace rg {

struct milter_session_settings {
  // The {daemon_name} of the pickup-only cleanup (milter_local_daemon_name): only its X-RG-Submitter is trusted.
  std::string local_daemon_name = "rg-pickup";
  // uid -> login name; empty string when there is none (the uid is then counted by number).
  std::function<std::string(std::uint32_t uid)> user_name;
  // Recipients kept per message; a message with more is answered with a temporary failure, never counted.
  std::size_t max_recipients = 100000;
};

class milter_session {
 public:
  // `instance_prefix` makes each message's instance unique in the log ("milter.7" -> "milter.7.1", ...).
  milter_session(const milter_session_settings& settings, std::string instance_prefix);

  enum class step : std::uint8_t {
    reply,   // `out` has what to send (maybe nothing); read the next packet
    decide,  // end of message: decide request(), then call decided()
    close    // quit, or a malformed packet (error() says why): close the connection
  };
  // One packet from the MTA; appends the replies it needs to `out`.
  step on_packet(const milter::packet& p, std::string& out);
  // The message at end of message: valid from a `decide` step until the next on_packet().
  const policy_request& request() const { return req_; }
  // The verdict on request(): appends the end-of-message replies (continue, quarantine + continue, or a
  // 4xx/5xx reply) to `out`.
  void decided(const verdict& v, std::string& out);
  const std::string& error() const { return error_; }

 private:
  void new_message();
  void reply_to(std::uint32_t no_reply_flag, std::string& out) const;  // `continue`, unless told not to
  void note_macros(const milter::macro_set& m);
  void note_header(std::string_view name, std::string_view value);

  const milter_session_settings& settings_;
  std::string instance_prefix_;
  std::uint64_t messages_ = 0;
  std::uint32_t protocol_ = 0;  // the negotiated SMFIP_* flags
  bool negotiated_ = false;
  // The connection
  std::string client_address_, daemon_name_;
  // The message in progress
  std::string queue_id_, auth_authen_, sender_;
  std::vector<std::string> recipients_;
  bool too_many_recipients_ = false;
  bool in_message_ = false;
  bool first_header_seen_ = false;
  std::string submitter_uid_, submitter_id_;  // from the first header, if it is X-RG-Submitter
  std::string script_;
  policy_request req_;
  std::string error_;
};

}  // namespace rg
