// redis_reply: RESP replies as rateguard values. RAII for the hiredis reader and replies, the one mapping of
// hiredis and Redis failures to typed errors, and the parsers of the scripts' replies (check, read, journal).
// No sockets and no state: redis_store owns the connection and calls these.
#pragma once

#include "store.hpp"

#include <hiredis/hiredis.h>

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace rg {

struct reader_deleter {
  void operator()(redisReader* r) const noexcept { redisReaderFree(r); }
};
using reader_ptr = std::unique_ptr<redisReader, reader_deleter>;
// Frees a reply of new_reader()'s (never hiredis' freeReplyObject: the objects go back to the reader's pool).
void free_reply(redisReply* r) noexcept;
struct reply_deleter {
  void operator()(redisReply* r) const noexcept { free_reply(r); }
};
using reply_ptr = std::unique_ptr<redisReply, reply_deleter>;
// A RESP reader whose reply objects have hiredis' layout but come from a pool of the thread's (free_reply returns
// them; a check reply is about ten of them); null when out of memory.
reader_ptr new_reader();

enum class redis_errc {
  protocol,          // the byte stream is not RESP: the connection is unusable
  noscript,          // EVALSHA before the script is loaded: the script did not run
  no_function,       // FCALL before the library is loaded: the function did not run
  auth,              // AUTH/ACL refused
  not_master,        // READONLY (a replica) or NOREPLICAS (a master cut off from its replicas): nothing written
  server,            // any other error reply
  unexpected_reply,  // well-formed reply of the wrong shape
};

struct redis_error {
  redis_errc code;
  std::string text;  // context + cause, one line (escape_log_value: request bytes a reply echoes), bounded
};

// The one place where hiredis and Redis failures become typed errors; `context` names the step.
redis_error to_redis_error(std::string_view context, const redisReader* reader, const redisReply* reply);

store_result failure(std::string error);
admin_result admin_failure(std::string error);
inline std::string_view as_view(const redisReply& r) { return {r.str, r.len}; }
bool is_array(const redisReply* r, std::size_t elements);

// The check function's reply (its layout: redis_check.hpp) to `req` -> counts, baselines, signals, locks (in
// key order); a failure when its shape does not fit the request.
store_result parse_check_reply(const redisReply& reply, const store_request& req);
// One key's {lock in force or '', {window prefix, count, ...}, {baseline, average, history_ms, ...},
// {signal, distinct, ...}} from the read script.
std::optional<identity_state> parse_state(std::string identity, const redisReply* e);

// The journal's stream fields, in the order XADD writes them (every entry has all of them, so Redis stores
// the names once per stream node).
inline constexpr std::array<std::string_view, 8> journal_fields = {"queue_id", "instance", "key",    "rule",
                                                                    "reason",   "client",   "sender", "recipients"};
// "ms-seq" -> ms.
std::int64_t stream_id_ms(std::string_view id);
// One stream entry [id, [field, value, ...]] -> a hold record; unknown fields are ignored.
std::optional<hold_record> parse_hold(const redisReply* e);

}  // namespace rg
