// The Lua scripts: check-and-charge (every counter of a request read with one HGETALL per identity, all
// charged or none, stale buckets deleted, TTLs only raised, locks in force reported from the same HGETALL),
// and the operator scripts (read, lock, release, journal add). Keys are binary-safe arguments.
#include "redis_script.hpp"

#include <array>
#include <charconv>
#include <cstring>

namespace rg {

namespace {

// The script hard-codes the bucket count; a change in store.hpp must change the script too.
static_assert(buckets_per_window == 12, "update the Lua script: it counts 12 + 1 buckets");

// Kept short: Redis parses and runs it per call, and per-command overhead dominates (REDIS-NOTES).
// One HGETALL per distinct key gives every bucket of every window of that identity; the fields of a
// window are tag..window..":"..bucket, so a prefix lookup sorts them without a string build per bucket.
constexpr std::string_view script_text = R"lua(-- rateguard check-and-charge; KEYS/ARGV layout in redis_store.hpp
local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local n = (#ARGV - 2) / 5
local want, cur, width, counts = {}, {}, {}, {}
for i = 1, n do
  local b = i * 5 - 2
  local k = tonumber(ARGV[b])
  width[i] = math.floor(tonumber(ARGV[b + 2]) * 1000 / 12)
  cur[i] = math.floor(now / width[i])
  counts[i] = 0
  local byprefix = want[k]
  if not byprefix then byprefix = {}; want[k] = byprefix end
  local prefix = ARGV[b + 1] .. ARGV[b + 2]
  local list = byprefix[prefix]
  if not list then list = {}; byprefix[prefix] = list end
  list[#list + 1] = i
end
local old, locks = {}, nil
for k, byprefix in pairs(want) do
  local flat = redis.call('HGETALL', KEYS[k])
  local o = {}
  for j = 1, #flat, 2 do
    local f = flat[j]
    local p = string.find(f, ':', 2, true)
    local list = p and byprefix[string.sub(f, 1, p - 1)]
    if list then
      local c = cur[list[1]]
      local idx = tonumber(string.sub(f, p + 1))
      if idx and idx >= c - 12 then
        if idx <= c then
          local v = tonumber(flat[j + 1])
          for _, i in ipairs(list) do counts[i] = counts[i] + v end
        end
      elseif idx then
        o[#o + 1] = f
      end
    elseif f == 'lock' then
      -- "until:since:reason"; one that has ended is ignored (release or the key's TTL removes it)
      local v = flat[j + 1]
      local u = tonumber(string.match(v, '^%d+'))
      if u and u > now then
        locks = locks or {}
        locks[#locks + 1] = k
        locks[#locks + 1] = v
      end
    end
  end
  old[k] = o
end
local charged = ARGV[2] == '1'
if charged then
  for i = 1, n do
    local b = i * 5 - 2
    local limit = tonumber(ARGV[b + 4])
    if limit > 0 and counts[i] + tonumber(ARGV[b + 3]) > limit then
      charged = false
      break
    end
  end
end
if charged then
  local ttl = {}
  for i = 1, n do
    local b = i * 5 - 2
    local k = tonumber(ARGV[b])
    redis.call('HINCRBY', KEYS[k], ARGV[b + 1] .. ARGV[b + 2] .. ':' .. string.format('%d', cur[i]), ARGV[b + 3])
    local need = tonumber(ARGV[b + 2]) * 1000 + 2 * width[i]
    if not ttl[k] or ttl[k] < need then ttl[k] = need end
  end
  for k, o in pairs(old) do
    if #o > 0 then redis.call('HDEL', KEYS[k], unpack(o)) end
  end
  for k, need in pairs(ttl) do
    if redis.call('PTTL', KEYS[k]) < need then redis.call('PEXPIRE', KEYS[k], need) end
  end
end
local out = {charged and 1 or 0}
for i = 1, n do out[i + 1] = counts[i] end
if locks then
  for j = 1, #locks do out[n + 1 + j] = locks[j] end
end
return out
)lua";

// The operator scripts. Each takes time like the check (ARGV[1] = now_ms, 0: Redis TIME) and reads a lock the
// way the check does, so "in force" means the same everywhere.
#define RG_LUA_NOW \
  "local now = tonumber(ARGV[1])\n" \
  "if now == 0 then\n" \
  "  local t = redis.call('TIME')\n" \
  "  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n" \
  "end\n"

// Read-only: per key {lock in force or '', window prefix, count, ...}, counted exactly as the check counts;
// ARGV[2] = one window prefix ("m60") to report only that one (top), '' for all (status).
constexpr std::string_view read_text = "-- rateguard read: status and top\n" RG_LUA_NOW R"lua(
local only = ARGV[2]
local out = {}
for k = 1, #KEYS do
  local flat = redis.call('HGETALL', KEYS[k])
  local counts, order, lock = {}, {}, ''
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
    end
  end
  local e = {lock}
  for _, prefix in ipairs(order) do e[#e + 1] = prefix; e[#e + 1] = counts[prefix] end
  out[k] = e
end
return out
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
redis.call('HSET', KEYS[1], 'lock', v)
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
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

std::string_view check_script() { return script_text; }
std::string_view read_script() { return read_text; }
std::string_view lock_script() { return lock_text; }
std::string_view release_script() { return release_text; }
std::string_view journal_add_script() { return journal_add_text; }

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

// The hot helpers below run ~45 times per check call, mostly for numbers of a few digits: digits are written
// backwards into a small stack buffer (no zero-filled buffers, no std::to_chars call), then one append.

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

void append_check_call(std::string& out, std::string_view verb, std::string_view script_or_sha,
                       const store_request& req, std::string_view prefix) {
  // Distinct identities become KEYS (a request has a handful: a linear search beats hashing).
  std::array<std::size_t, 64> small_index;
  std::vector<std::size_t> big_index;
  std::size_t* key_of = small_index.data();
  if (req.counters.size() > small_index.size()) {
    big_index.resize(req.counters.size());
    key_of = big_index.data();
  }
  std::size_t keys = 0;
  for (std::size_t i = 0; i < req.counters.size(); ++i) {
    std::size_t j = 0;
    while (j < i && req.counters[j].identity != req.counters[i].identity) ++j;
    key_of[i] = j < i ? key_of[j] : ++keys;  // 1-based, as Lua indexes KEYS
  }
  append_array_header(out, 3 + keys + 2 + 5 * req.counters.size());
  append_bulk(out, verb);
  append_bulk(out, script_or_sha);
  append_bulk(out, std::uint64_t{keys});
  std::size_t written = 0;
  for (std::size_t i = 0; i < req.counters.size(); ++i) {
    if (key_of[i] <= written) continue;
    written = key_of[i];
    const std::string& id = req.counters[i].identity;
    char header[24];
    auto r = std::to_chars(header, header + sizeof header, prefix.size() + id.size() + 2);
    out += '$';
    out.append(header, r.ptr);
    out += "\r\n";
    out.append(prefix).append("{").append(id).append("}\r\n");
  }
  append_bulk(out, static_cast<std::uint64_t>(req.now_ms));
  append_bulk(out, req.charge ? std::string_view("1") : std::string_view("0"));
  for (std::size_t i = 0; i < req.counters.size(); ++i) {
    const auto& c = req.counters[i];
    append_bulk(out, std::uint64_t{key_of[i]});
    append_bulk(out, std::string_view(&c.unit_tag, 1));
    append_bulk(out, std::uint64_t{c.window_s});
    append_bulk(out, std::uint64_t{c.cost});
    append_bulk(out, c.refuse_limit);
  }
}

}  // namespace rg
