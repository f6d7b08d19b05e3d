// redis_sentinel: which server is the master now, asked of Redis Sentinels as their "Sentinel clients"
// guidelines say: each sentinel in turn, each with a short deadline; the first that names the master moves to
// the front of the list, so the next question goes to a sentinel that answered. Not here: confirming the
// answer (the store asks the server itself for ROLE), reconnects, the check.
#pragma once

#include "net_addr.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace rg {

struct sentinel_options {
  std::vector<std::string> sentinels;  // "host:port" each (port 26379 when none is written)
  std::string master;                  // the name the sentinels monitor it under
  std::string username;                // optional AUTH to the sentinels (their requirepass / ACL)
  std::string password;                // never logged
};

class sentinel_resolver {
 public:
  struct answer {
    std::optional<endpoint> master;  // host and port as the sentinel named them
    std::string why;                 // without a master: what each sentinel said, "; "-separated
  };

  // Throws std::invalid_argument on an empty list or name, or an address that does not parse (start-up).
  // `tls`: null for plain text; else sentinels are reached over TLS like the servers (redis_link).
  sentinel_resolver(boost::asio::any_io_executor ex, sentinel_options opts,
                    std::shared_ptr<boost::asio::ssl::context> tls, std::string tls_server_name,
                    std::chrono::milliseconds step_timeout);

  // Asks the sentinels in turn until one names the master; at most one step_timeout per sentinel.
  boost::asio::awaitable<answer> ask();

  const std::string& master_name() const { return opts_.master; }

 private:
  // One sentinel's answer: the master, or why not.
  boost::asio::awaitable<answer> ask_one(const endpoint& sentinel);

  boost::asio::any_io_executor ex_;
  sentinel_options opts_;
  std::shared_ptr<boost::asio::ssl::context> tls_;
  std::string tls_server_name_;
  std::chrono::milliseconds step_timeout_;
  std::vector<endpoint> sentinels_;  // the answering one first
  std::vector<std::string> names_;   // as written, same order, for the log
};

}  // namespace rg
