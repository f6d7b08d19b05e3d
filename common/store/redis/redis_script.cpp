// The operator scripts (read, lock, release, reset, journal add), the lock field's encoding and the RESP writing.
// Keys are binary-safe arguments.
#include "redis_script.hpp"

#include <charconv>
#include <cstring>

namespace rg {

namespace {

// The scripts hard-code the bucket count; a change in store.hpp must change them too (and the check, redis_check).
static_assert(buckets_per_window == 12, "update the Lua script: it counts 12 + 1 buckets");
static_assert(signal_buckets == 4,
              "update the Lua scripts: a signal bucket is a quarter window, 5 are counted");

// The operator scripts. Each but reset takes time like the check (ARGV[1] = now_ms, 0: Redis TIME) and reads
// a lock the way the check does, so "in force" means the same everywhere.
#define RG_LUA_NOW \
  "local now = tonumber(ARGV[1])\n" \
  "if now == 0 then\n" \
  "  local t = redis.call('TIME')\n" \
  "  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n" \
  "end\n"

// Read-only: per key {lock in force or '', {window prefix, count, ...}, {baseline field, average as stored,
// history_ms, ...}, {signal cache field, distinct, ...}}, counted exactly as the check counts; ARGV[2] = one
// window prefix ("m60") to report only that one and no baselines or signals (top), '' for all (status).
constexpr std::string_view read_text = "-- rateguard read: status and top\n" RG_LUA_NOW R"lua(
local only = ARGV[2]
local out = {}
for k = 1, #KEYS do
  local flat = redis.call('HGETALL', KEYS[k])
  local counts, order, lock, bases, signals = {}, {}, '', {}, {}
  for j = 1, #flat, 2 do
    local f = flat[j]
    local p = string.find(f, ':', 2, true)
    if p then
      local prefix = string.sub(f, 1, p - 1)
      local w = tonumber(string.sub(prefix, 2))
      if w and w > 0 and (only == '' or prefix == only) then
        local c = counts[prefix]
        if not c then c = 0; order[#order + 1] = prefix end
        local cur = math.floor(now / math.floor(w * 1000 / 12))
        local idx = tonumber(string.sub(f, p + 1))
        if idx and idx >= cur - 12 and idx <= cur then c = c + tonumber(flat[j + 1]) end
        counts[prefix] = c
      end
    elseif f == 'lock' then
      local u = tonumber(string.match(flat[j + 1], '^%d+'))
      if u and u > now then lock = flat[j + 1] end
    elseif only == '' then
      local kind, w = string.sub(f, 1, 1), tonumber(string.sub(f, 3))
      if kind == 'b' and w then
        local avg, start = string.match(flat[j + 1], '^([^:]+):%d+:(%d+)$')
        local P = math.floor(math.floor(now / math.floor(w * 1000 / 12)) / 12)
        bases[#bases + 1] = string.sub(f, 2)
        bases[#bases + 1] = avg
        bases[#bases + 1] = math.max(0, P - tonumber(start)) * w * 1000
      elseif kind == 'x' and w then
        local base, b = KEYS[k] .. ':' .. string.sub(f, 2) .. ':', math.floor(now / (w * 250))
        local union = {}
        for i = 0, 4 do union[i + 1] = base .. string.format('%d', b - i) end
        local c = redis.call('PFCOUNT', unpack(union))
        if c > 0 then
          signals[#signals + 1] = string.sub(f, 2)
          signals[#signals + 1] = c
        end
      end
    end
  end
  local e = {}
  for _, prefix in ipairs(order) do e[#e + 1] = prefix; e[#e + 1] = counts[prefix] end
  out[k] = {lock, e, bases, signals}
end
return out
)lua";

// No time: -> the number of keys deleted: the identity's hash, its signals' HyperLogLogs and its familiarity filters. Each cache field
// names the newest quarter of its signal ("bucket:count"; a new quarter is always recounted); a quarter's HLL
// expires 6 quarters after its last change, so the 7 up to that one are all that can still exist.
constexpr std::string_view reset_text = "-- rateguard reset\n" R"lua(
local del = {KEYS[1]}
local flat = redis.call('HGETALL', KEYS[1])
for j = 1, #flat, 2 do
  local f, kind = flat[j], string.sub(flat[j], 1, 1)
  local b = kind == 'x' and tonumber(string.match(flat[j + 1], '^%d+'))
  if b then
    local base = KEYS[1] .. ':' .. string.sub(f, 2) .. ':'
    for i = 0, 6 do del[#del + 1] = base .. string.format('%d', b - i) end
  end
  -- a familiarity filter ("first_ms:last epoch"): its last epoch and the one before can still exist
  local e = kind == 'f' and tonumber(string.match(flat[j + 1], ':(%d+)$'))
  if e then
    for i = 0, 1 do del[#del + 1] = KEYS[1] .. ':' .. f .. ':' .. string.format('%d', e - i) end
  end
end
return redis.call('DEL', unpack(del))
)lua";

// ARGV[2] = ttl_ms, ARGV[3] = reason -> {1 set / 0 kept, the lock in force}. The key's TTL is raised to the
// lock's, never lowered, so the counters and the lock live at least as long as the lock.
constexpr std::string_view lock_text = "-- rateguard lock\n" RG_LUA_NOW R"lua(
local v = redis.call('HGET', KEYS[1], 'lock')
if v then
  local u = tonumber(string.match(v, '^%d+'))
  if u and u > now then return {0, v} end
end
local ttl = tonumber(ARGV[2])
v = string.format('%d:%d:', now + ttl, now) .. ARGV[3]
-- a raised expiry is recorded in t as the check records its own, so no later check lowers it
local raise = redis.call('PTTL', KEYS[1]) < ttl
if raise then
  redis.call('HSET', KEYS[1], 'lock', v, 't', string.format('%d', now + ttl))
  redis.call('PEXPIRE', KEYS[1], ttl)
else
  redis.call('HSET', KEYS[1], 'lock', v)
end
return {1, v}
)lua";

// -> 1 when a lock in force was removed (one that had ended is removed too, but answers 0).
constexpr std::string_view release_text = "-- rateguard release\n" RG_LUA_NOW R"lua(
local v = redis.call('HGET', KEYS[1], 'lock')
if not v then return 0 end
redis.call('HDEL', KEYS[1], 'lock')
local u = tonumber(string.match(v, '^%d+'))
if u and u > now then return 1 end
return 0
)lua";

// KEYS[1] = the stream; ARGV[2] = max entries, ARGV[3] = max age in ms, then field/value pairs -> the new ID.
// Trimmed exactly (holds are rare: the cost is one entry per add) by length, then by age relative to the new
// entry. An injected clock gives the ID's milliseconds, never going back, as XADD * does with Redis' clock.
constexpr std::string_view journal_add_text = "-- rateguard hold journal add\n" R"lua(
local id = '*'
local now = tonumber(ARGV[1])
if now ~= 0 then
  local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
  if #last > 0 then
    local ms = tonumber(string.match(last[1][1], '^%d+'))
    if ms > now then now = ms end
  end
  id = string.format('%d-*', now)
end
local args = {'XADD', KEYS[1], 'MAXLEN', ARGV[2], id}
for i = 4, #ARGV do args[#args + 1] = ARGV[i] end
local added = redis.call(unpack(args))
local oldest = tonumber(string.match(added, '^%d+')) - tonumber(ARGV[3])
if oldest > 0 then redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d', oldest)) end
return added
)lua";

#undef RG_LUA_NOW

}  // namespace

std::string_view read_script() { return read_text; }
std::string_view lock_script() { return lock_text; }
std::string_view release_script() { return release_text; }
std::string_view reset_script() { return reset_text; }
std::string_view journal_add_script() { return journal_add_text; }

std::string_view script_text(std::size_t i) {
  switch (i) {
    case read_s: return read_script();
    case lock_s: return lock_script();
    case release_s: return release_script();
    case reset_s: return reset_script();
    default: return journal_add_script();
  }
}

std::optional<lock_info> parse_lock_value(std::string_view identity, std::string_view v) {
  lock_info l;
  l.identity = identity;
  const char* p = v.data();
  const char* end = v.data() + v.size();
  for (std::int64_t* field : {&l.until_ms, &l.since_ms}) {
    const auto r = std::from_chars(p, end, *field);
    if (r.ec != std::errc() || r.ptr == end || *r.ptr != ':') return std::nullopt;
    p = r.ptr + 1;
  }
  l.reason.assign(p, end);
  return l;
}

void append_array_header(std::string& out, std::size_t elements) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, elements);
  out += '*';
  out.append(buf, r.ptr);
  out += "\r\n";
}

// The helpers below run for every argument of every check call, mostly numbers of a few digits: the digits
// are written backwards into a small stack buffer, then appended at once.

namespace {
// Writes the decimal digits of `n` so that they end just before `end`; returns where they begin.
char* put_digits_before(char* end, std::uint64_t n) {
  do {
    *--end = static_cast<char>('0' + n % 10);
    n /= 10;
  } while (n != 0);
  return end;
}
}  // namespace

void append_bulk(std::string& out, std::string_view s) {
  char head[24];
  char* const end = head + sizeof head;
  char* h = end;
  *--h = '\n';
  *--h = '\r';
  h = put_digits_before(h, s.size());
  *--h = '$';
  const auto head_len = static_cast<std::size_t>(end - h);
  const std::size_t at = out.size();
  out.resize(at + head_len + s.size() + 2);
  char* p = out.data() + at;
  std::memcpy(p, h, head_len);
  if (!s.empty()) std::memcpy(p + head_len, s.data(), s.size());
  p[head_len + s.size()] = '\r';
  p[head_len + s.size() + 1] = '\n';
}

void append_bulk(std::string& out, std::uint64_t n) {
  char buf[32];  // "$20\r\n" + 20 digits + "\r\n" at most
  char* const end = buf + sizeof buf;
  char* p = end;
  *--p = '\n';
  *--p = '\r';
  char* const digits_end = p;
  p = put_digits_before(p, n);
  const auto len = static_cast<std::uint64_t>(digits_end - p);
  *--p = '\n';
  *--p = '\r';
  p = put_digits_before(p, len);
  *--p = '$';
  out.append(p, end);
}

void append_command(std::string& out, std::initializer_list<std::string_view> argv) {
  append_array_header(out, argv.size());
  for (auto a : argv) append_bulk(out, a);
}


}  // namespace rg
