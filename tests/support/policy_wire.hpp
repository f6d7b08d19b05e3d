// The client side of the Postfix policy protocol for test programs (policy_bench, rg_sim): a full Postfix
// 3.7 request (the attributes of tests/data/postfix-requests, in Postfix's order), the action word of a
// reply, and the loopback endpoint to reach the daemon. Not the daemon's parser (common/protocol).
#pragma once

#include <boost/asio/generic/stream_protocol.hpp>
#include <cstdint>
#include <string>
#include <string_view>

namespace rg::test {

// What varies between requests; every other attribute is sent as Postfix 3.7 sends it (empty or fixed).
// The views must outlive append_request.
struct postfix_request {
  std::string_view protocol_state = "RCPT";  // RCPT | END-OF-MESSAGE
  std::string_view client_address = "127.0.0.1";
  std::string_view client_name = "localhost";  // also reverse_client_name
  unsigned client_port = 0;
  unsigned server_port = 587;
  std::string_view helo_name = "client.test";
  std::string_view sender;
  std::string_view recipient;            // empty at END-OF-MESSAGE
  std::uint32_t recipient_count = 0;     // non-zero only at END-OF-MESSAGE
  std::string_view queue_id;             // empty at the first RCPT of a message
  std::string_view instance;
  std::uint64_t size = 0;
  std::string_view sasl_method;          // "PLAIN" when sasl_username is set
  std::string_view sasl_username;
  std::string_view policy_context;       // "submission" on the submission service
};

// Appends the whole request, ended by its empty line.
void append_request(std::string& out, const postfix_request& r);

// "action=450 4.7.1 ..." -> "450"; "action=DUNNO" -> "DUNNO" (upper case). Empty when `reply` is not
// exactly one "action=..." line and the empty line.
std::string action_of(std::string_view reply);

// "inet:HOST:PORT" (a loopback address only: tests never leave the machine) or "unix:/path".
// Throws std::invalid_argument saying why.
boost::asio::generic::stream_protocol::endpoint parse_endpoint(const std::string& spec);

}  // namespace rg::test
