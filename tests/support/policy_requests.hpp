// A Postfix RCPT policy request as the unit tests spell it (engine, service): the attributes the engine reads,
// everything else left empty. Header only.
#pragma once

#include <string>
#include <vector>

#include "protocol.hpp"

namespace rg::test {

inline policy_request rcpt(const std::string& user, const std::string& instance, const std::string& queue_id = "",
                           const std::string& client = "127.0.0.1", const std::string& sender = "alice@example.com") {
  policy_request r;
  r.set(attr::request, "smtpd_access_policy");
  r.set(attr::protocol_state, "RCPT");
  r.set(attr::sasl_username, user);
  r.set(attr::instance, instance);
  r.set(attr::queue_id, queue_id);
  r.set(attr::client_address, client);
  r.set(attr::sender, sender);
  r.set(attr::recipient, "rcpt@example.net");
  return r;
}

// A whole message as the milter front hands it to the engine at end of message: every recipient at once.
inline policy_request whole_message(const std::string& local_user, const std::string& instance,
                                    std::vector<std::string> recipients, const std::string& queue_id = "",
                                    const std::string& sender = "www-data@example.com") {
  policy_request r;
  r.set(attr::request, "smtpd_access_policy");
  r.set(attr::protocol_state, "RCPT");
  r.set(attr::protocol_name, "milter");
  r.set(attr::instance, instance);
  r.set(attr::queue_id, queue_id);
  r.set(attr::client_address, "127.0.0.1");
  r.set(attr::sender, sender);
  r.set(attr::recipient, recipients.empty() ? std::string() : recipients.front());
  r.set(attr::recipient_count, std::to_string(recipients.size()));
  r.recipients = std::move(recipients);
  r.local_user = local_user;
  return r;
}

}  // namespace rg::test
