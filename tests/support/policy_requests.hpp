// A Postfix RCPT policy request as the unit tests spell it (engine, service): the attributes the engine reads,
// everything else left empty. Header only.
#pragma once

#include <string>

#include "protocol.hpp"

namespace rg::test {

inline policy_request rcpt(const std::string& user, const std::string& instance, const std::string& queue_id = "",
                           const std::string& client = "127.0.0.1", const std::string& sender = "alice@example.com") {
  policy_request r;
  r.set(attr::request) = "smtpd_access_policy";
  r.set(attr::protocol_state) = "RCPT";
  r.set(attr::sasl_username) = user;
  r.set(attr::instance) = instance;
  r.set(attr::queue_id) = queue_id;
  r.set(attr::client_address) = client;
  r.set(attr::sender) = sender;
  r.set(attr::recipient) = "rcpt@example.net";
  return r;
}

}  // namespace rg::test
