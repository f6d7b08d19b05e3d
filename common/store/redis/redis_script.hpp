// The operator scripts (read, lock, release, reset, journal add), the lock field's encoding and the RESP writing
// the store's commands share. The check, a Redis function, is redis_check's. No I/O here: redis_store sends them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "store.hpp"

namespace rg {

// The operator scripts (layouts in redis_script.cpp): read (status, top; read-only), lock, release, reset,
// journal_add.
std::string_view read_script();
std::string_view lock_script();
std::string_view release_script();
std::string_view reset_script();
std::string_view journal_add_script();

// The scripts the store loads at every (re)connect (after the check's library), by index.
enum script_index : std::size_t { read_s, lock_s, release_s, reset_s, journal_add_s, script_count };
std::string_view script_text(std::size_t i);

// A lock is the hash field "lock" of its identity's key: "until_ms:since_ms:reason" (the scripts need only
// the leading number to tell whether it is in force).
std::optional<lock_info> parse_lock_value(std::string_view identity, std::string_view value);
// RESP writing: an array header, then its elements as bulk strings (binary-safe: lengths, not C strings).
void append_array_header(std::string& out, std::size_t elements);
void append_bulk(std::string& out, std::string_view s);
void append_bulk(std::string& out, std::uint64_t n);
// One whole command.
void append_command(std::string& out, std::initializer_list<std::string_view> argv);

}  // namespace rg
