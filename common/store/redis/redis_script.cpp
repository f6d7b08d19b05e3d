// The Lua scripts: check-and-charge (every counter of a request read with one HGETALL per identity, all
// charged or none, stale buckets deleted, TTLs only raised, locks in force, baselines and signal caches read
// from the same HGETALL; signals in HyperLogLogs), and the operator scripts (read, lock, release, reset,
// journal add). Keys are binary-safe arguments.
#include "redis_script.hpp"

#include <array>
#include <charconv>
#include <chrono>
#include <cstring>

namespace rg {

namespace {

// The script hard-codes the bucket count; a change in store.hpp must change the script too.
static_assert(buckets_per_window == 12, "update the Lua script: it counts 12 + 1 buckets");
static_assert(signal_buckets == 4,
              "update the Lua scripts: a signal bucket is a quarter window, 5 are counted");
// The check script indexes ARGV and builds its reply with these numbers written out (redis_script.hpp).
static_assert(check_head_args == 6 && check_counter_args == 10 && check_signal_args == 5,
              "update the check script: counter i's ARGV start at i * 10 - 3, the signals' at 7 + 10 * n");
static_assert(check_baseline_fields == 2 && check_novelty_fields == 2 && check_lock_fields == 2,
              "update the check script: it appends 2 values per baseline, per novelty counter and per lock");
static_assert(familiar_bits == 512, "familiarity filters are strings of 512 bits (GETBIT/SETBIT offsets)");

// Kept short: Redis parses and runs it per call, and per-command overhead dominates (REDIS-NOTES).
// One HGETALL per distinct key gives every bucket of every window of that identity, its lock, baselines and
// signal caches; the fields of a window are tag..window..":"..bucket, so a prefix lookup sorts them without a
// string build per bucket (the other fields have no ':'). Normal requests cost no command beyond the
// counters': a baseline is written once per period, a signal's union counted only when its HLL changed.
constexpr std::string_view check_text = R"lua(-- rateguard check-and-charge; layout in redis_script.hpp
local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local charge, fam, warm, n = ARGV[2] == '1', tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local want, cur, width, counts, lists, bases = {}, {}, {}, {}, {}, nil
for k = 1, #KEYS do want[k] = {} end
for i = 1, n do
  local a = i * 10 - 3
  local k = tonumber(ARGV[a])
  width[i] = math.floor(tonumber(ARGV[a + 2]) * 1000 / 12)
  cur[i] = math.floor(now / width[i])
  counts[i] = 0
  local prefix = ARGV[a + 1] .. ARGV[a + 2]
  local list = want[k][prefix]
  if not list then list = {}; want[k][prefix] = list end
  list[#list + 1] = i
  lists[i] = list
  -- a baseline needs the count of each period; the first burst counter of a window writes it
  if ARGV[a + 5] ~= '0' then
    if not list.sums then list.sums = {} end
    bases = bases or {}
    bases[#bases + 1] = i
  end
end
local none, old, extra, locks = {}, {}, {}, nil
for k = 1, #KEYS do
  local flat = redis.call('HGETALL', KEYS[k])
  local byprefix, o, e = want[k], {}, none
  for j = 1, #flat, 2 do
    local f = flat[j]
    local p = string.find(f, ':', 2, true)
    if p then
      local list = byprefix[string.sub(f, 1, p - 1)]
      local idx = list and tonumber(string.sub(f, p + 1))
      if idx then
        local c = cur[list[1]]
        if idx < c - 12 then
          o[#o + 1] = f
        elseif idx <= c then
          local v = tonumber(flat[j + 1])
          for _, i in ipairs(list) do counts[i] = counts[i] + v end
          if idx == c then list.field = f end  -- the current bucket's name, for the charge (no format)
        end
        local sums = bases and list.sums
        if sums then
          local q = math.floor(idx / 12)
          sums[q] = (sums[q] or 0) + tonumber(flat[j + 1])
        end
      end
    else
      if e == none then e = {} end
      e[f] = flat[j + 1]  -- lock, baselines (b...), signal caches (x...), familiarity (f...)
    end
  end
  old[k], extra[k] = o, e
  -- "until:since:reason"; one that has ended is ignored (release or the key's TTL removes it)
  local v = e.lock
  local u = v and tonumber(string.match(v, '^%d+'))
  if u and u > now then
    locks = locks or {}
    locks[#locks + 1] = k
    locks[#locks + 1] = v
  end
end
-- Novelty counters (ARGV[a + 9]: the values' bits, "12,345"): their cost is how many bits are set in neither the
-- current epoch's filter of the key nor the one before (its field f = "first_ms:last epoch written" says which exist).
local cost, novel, epoch = {}, nil, math.floor(now / fam)
for i = 1, n do
  local a = i * 10 - 3
  cost[i] = tonumber(ARGV[a + 3])
  if ARGV[a + 9] ~= '' then
    local k = tonumber(ARGV[a])
    local first, last = string.match(extra[k].f or '', '^(%d+):(%d+)$')
    last = tonumber(last)
    local e = math.max(epoch, last or epoch)
    local base = KEYS[k] .. ':f:'
    local added, unset = 0, {}
    for bit in string.gmatch(ARGV[a + 9], '%d+') do
      local b = tonumber(bit)
      local known = 0
      if last == e then known = redis.call('GETBIT', base .. e, b) end
      if known == 0 then
        unset[#unset + 1] = b
        if last and last >= e - 1 then known = redis.call('GETBIT', base .. (e - 1), b) end
        if known == 0 then added = added + 1 end
      end
    end
    cost[i] = added
    novel = novel or {}
    novel[i] = {k = k, first = first, last = last, e = e, key = base .. e, unset = unset}
  end
end
-- Baselines (store.hpp has the formula), folded from the HGETALL taken before any bucket was deleted; each
-- burst counter reports with its own factor.
local bavg, bhist, bstate = {}, {}, {}
if bases then
  local half = tonumber(ARGV[3])
  for _, i in ipairs(bases) do
    local a = i * 10 - 3
    local k, prefix, wms = tonumber(ARGV[a]), ARGV[a + 1] .. ARGV[a + 2], tonumber(ARGV[a + 2]) * 1000
    local list, field, P = want[k][prefix], 'b' .. prefix, math.floor(cur[i] / 12)
    local avg, last, start = string.match(extra[k][field] or '', '^([^:]+):(%d+):(%d+)$')
    if avg then
      last, start = tonumber(last), tonumber(start)
      if P > last then  -- else the stored string is the answer: no number conversion on the common path
        local alpha, v = 1 - 2 ^ (-wms / half), tonumber(avg)
        local x = math.min(list.sums[last] or 0, math.max(tonumber(ARGV[a + 5]) * v, tonumber(ARGV[a + 6])))
        local seen = last - start + 1
        v = v + (x - v) * math.max(alpha, 1 / seen)
        -- the g empty periods since: plain mean while 1/seen >= alpha (floor(1/alpha) periods), then the decay
        local g = P - last - 1
        local m = math.min(g, math.max(0, math.floor(1 / alpha) - seen))
        avg = string.format('%.17g', v * seen / (seen + m) * (1 - alpha) ^ (g - m))
      end
      bavg[i], bhist[i] = avg, math.max(0, P - start) * wms
    end
    bstate[i] = {k = k, list = list, field = field, P = P, last = last, start = start}
  end
end
-- Charged only when no refusing limit is passed: a count limit's refuse_limit, or a refusing burst rule's
-- max(refuse_factor x baseline, refuse_floor) once the baseline is warm (baseline_warm in store_types.hpp).
local charged, ttl = charge, {}
if charged then
  for i = 1, n do
    local a = i * 10 - 3
    local limit, after = tonumber(ARGV[a + 4]), counts[i] + cost[i]
    -- a novelty limit refuses only once it applies (novelty_warm in store_types.hpp)
    local f = novel and novel[i]
    if limit > 0 and after > limit and (not f or (f.first and math.max(0, now - tonumber(f.first)) >= warm)) then
      charged = false
      break
    end
    if ARGV[a + 7] ~= '0' and bavg[i] and bhist[i] >= warm and bhist[i] >= 3000 * tonumber(ARGV[a + 2]) and
       after > math.floor(math.max(tonumber(ARGV[a + 7]) * tonumber(bavg[i]), tonumber(ARGV[a + 8]))) then
      charged = false
      break
    end
  end
end
-- Signals: one HyperLogLog per quarter window, the union of the last 5 counted only when this quarter's
-- changed or the quarter moved on (the count cached in the identity's hash as "quarter:count"). Explain
-- (no charge) adds nothing, so its count leaves this request's value out.
local first, ns = 7 + 10 * n, (#ARGV - 6 - 10 * n) / 5
local distinct = {}
for s = 1, ns do
  local a = first + (s - 1) * 5
  local k, w = tonumber(ARGV[a]), tonumber(ARGV[a + 2])
  local wid = w * 250
  local b = math.floor(now / wid)
  local name, bs = ARGV[a + 1] .. ARGV[a + 2], string.format('%d', b)
  local base, field, added = KEYS[k] .. ':' .. name .. ':', 'x' .. name, 1
  if charge then
    local key = base .. bs
    added = redis.call('PFADD', key, ARGV[a + 3])
    if added == 1 then redis.call('PEXPIRE', key, w * 1000 + 2 * wid) end
  end
  local cache = extra[k][field]
  local p = added == 0 and cache and string.find(cache, ':', 1, true)
  local c
  if p and string.sub(cache, 1, p - 1) == bs then
    c = tonumber(string.sub(cache, p + 1))
  else
    local union = {}
    for j = 0, 4 do union[j + 1] = base .. string.format('%d', b - j) end
    c = redis.call('PFCOUNT', unpack(union))
    if charge then
      local v = bs .. ':' .. c
      redis.call('HSET', KEYS[k], field, v)
      if extra[k] == none then extra[k] = {} end
      extra[k][field] = v
      local need = w * 1000 + 2 * wid
      if not ttl[k] or ttl[k] < need then ttl[k] = need end
    end
  end
  distinct[s] = c
  if ARGV[a + 4] ~= '0' and c > tonumber(ARGV[a + 4]) then charged = false end
end
if charged then
  for i = 1, n do
    local a = i * 10 - 3
    local k = tonumber(ARGV[a])
    local f = novel and novel[i]
    if f then
      -- the values become familiar in the current epoch (the filter's key lives through the next epoch); a bit
      -- another counter of the request set already is set again at no harm
      if #f.unset > 0 then
        for _, b in ipairs(f.unset) do redis.call('SETBIT', f.key, b, 1) end
        redis.call('PEXPIRE', f.key, 2 * fam)
      end
      if f.last ~= f.e and not novel[f.key] then
        novel[f.key] = true
        redis.call('HSET', KEYS[k], 'f', (f.first or string.format('%d', now)) .. ':' .. string.format('%d', f.e))
      end
      if not ttl[k] or ttl[k] < 2 * fam then ttl[k] = 2 * fam end
    end
    if cost[i] > 0 then
      local field = lists[i].field or ARGV[a + 1] .. ARGV[a + 2] .. ':' .. string.format('%d', cur[i])
      redis.call('HINCRBY', KEYS[k], field, cost[i])
      local need = tonumber(ARGV[a + 2]) * 1000 + 2 * width[i]
      if not ttl[k] or ttl[k] < need then ttl[k] = need end
    end
  end
  for k, o in pairs(old) do
    if #o > 0 then redis.call('HDEL', KEYS[k], unpack(o)) end
  end
end
local out = {charged and 1 or 0}
for i = 1, n do out[i + 1] = counts[i] end
-- The baselines as of now; a charge in a later period than the last stored writes it (the first counter of the window).
if bases then
  local half, written = tonumber(ARGV[3]), {}
  for _, i in ipairs(bases) do
    local b = bstate[i]
    out[#out + 1] = bavg[i] or ''
    out[#out + 1] = bhist[i] or 0
    if charged and (not b.last or b.P > b.last) and not written[b.list] then
      written[b.list] = true
      redis.call('HSET', KEYS[b.k], b.field, (bavg[i] or '0') .. string.format(':%d:%d', b.P, b.start or b.P))
      local need = 4 * half
      if not ttl[b.k] or ttl[b.k] < need then ttl[b.k] = need end
    end
  end
end
-- Novelty: history_ms (-1: the filter was never charged) and the values new to it, per novelty counter.
if novel then
  for i = 1, n do
    local f = novel[i]
    if f then
      out[#out + 1] = f.first and math.max(0, now - tonumber(f.first)) or -1
      out[#out + 1] = cost[i]
    end
  end
end
for s = 1, ns do out[#out + 1] = distinct[s] end
for k, need in pairs(ttl) do
  if redis.call('PTTL', KEYS[k]) < need then redis.call('PEXPIRE', KEYS[k], need) end
end
if locks then
  for j = 1, #locks do out[#out + 1] = locks[j] end
end
return out
)lua";

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

// Charge once (store_request::once), kept around the check script and apart from it: ARGV's last element is the
// token ('' for none), taken off before the check reads ARGV. A charging request records <its first key>:once:
// <token> (same hash tag) for charge_once_ttl with one SET NX, and deletes it again when the check does not charge;
// a request whose token is recorded runs with charge 0, so it only reads, and its reply's first element is 2, "a
// repeat of a charged request" (parse_check_reply: mark_repeat).
static_assert(charge_once_ttl == std::chrono::minutes(10), "update the charge-once guard: PX 600000");
constexpr std::string_view once_head = R"lua(-- charge once: a repeat of a charged request only reads
local once, repeated = table.remove(ARGV), false
if once ~= '' and ARGV[2] == '1' and #KEYS > 0 then
  once = KEYS[1] .. ':once:' .. once
  if not redis.call('SET', once, '1', 'PX', 600000, 'NX') then
    repeated, once = true, nil
    ARGV[2] = '0'
  end
else
  once = nil
end
local out = (function()
)lua";
constexpr std::string_view once_tail = R"lua(
end)()
if repeated then
  out[1] = 2
elseif once and out[1] ~= 1 then
  redis.call('DEL', once)  -- not charged: a resend is checked again
end
return out
)lua";

std::string_view check_script() {
  static const std::string text = std::string(once_head) + std::string(check_text) + std::string(once_tail);
  return text;
}
std::string_view read_script() { return read_text; }
std::string_view lock_script() { return lock_text; }
std::string_view release_script() { return release_text; }
std::string_view reset_script() { return reset_text; }
std::string_view journal_add_script() { return journal_add_text; }

std::string_view script_text(std::size_t i) {
  switch (i) {
    case check_s: return check_script();
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

namespace {
// A burst factor: the shortest form that reads back as the same double; "0" for none.
void append_factor(std::string& out, double f) {
  if (!(f > 0)) return append_bulk(out, std::string_view("0"));
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, f);
  append_bulk(out, std::string_view(buf, static_cast<std::size_t>(r.ptr - buf)));
}
}  // namespace

void append_check_call(std::string& out, std::string_view verb, std::string_view script_or_sha,
                       const store_request& req, std::string_view prefix) {
  // Distinct identities, of the counters then of the signals, become KEYS (a request has a handful: a
  // linear search beats hashing).
  const std::size_t n = req.counters.size();
  const std::size_t specs = n + req.signals.size();
  const auto identity = [&](std::size_t i) -> const std::string& {
    return i < n ? req.counters[i].identity : req.signals[i - n].identity;
  };
  std::array<std::size_t, 64> small_index;
  std::vector<std::size_t> big_index;
  std::size_t* key_of = small_index.data();
  if (specs > small_index.size()) {
    big_index.resize(specs);
    key_of = big_index.data();
  }
  std::size_t keys = 0;
  for (std::size_t i = 0; i < specs; ++i) {
    std::size_t j = 0;
    while (j < i && identity(j) != identity(i)) ++j;
    key_of[i] = j < i ? key_of[j] : ++keys;  // 1-based, as Lua indexes KEYS
  }
  append_array_header(out, 3 + keys + check_head_args + check_counter_args * n +
                               check_signal_args * req.signals.size() + 1);
  append_bulk(out, verb);
  append_bulk(out, script_or_sha);
  append_bulk(out, std::uint64_t{keys});
  std::size_t written = 0;
  for (std::size_t i = 0; i < specs; ++i) {
    if (key_of[i] <= written) continue;
    written = key_of[i];
    const std::string& id = identity(i);
    char header[24];
    auto r = std::to_chars(header, header + sizeof header, prefix.size() + id.size() + 2);
    out += '$';
    out.append(header, r.ptr);
    out += "\r\n";
    out.append(prefix).append("{").append(id).append("}\r\n");
  }
  append_bulk(out, static_cast<std::uint64_t>(req.now_ms));
  append_bulk(out, req.charge ? std::string_view("1") : std::string_view("0"));
  append_bulk(out, static_cast<std::uint64_t>(req.half_life_ms));
  append_bulk(out, static_cast<std::uint64_t>(std::max<std::int64_t>(1, req.familiar_ms)));
  append_bulk(out, static_cast<std::uint64_t>(std::max<std::int64_t>(0, req.warmup_ms)));
  append_bulk(out, std::uint64_t{n});
  for (std::size_t i = 0; i < n; ++i) {
    const auto& c = req.counters[i];
    append_bulk(out, std::uint64_t{key_of[i]});
    append_bulk(out, std::string_view(&c.unit_tag, 1));
    append_bulk(out, std::uint64_t{c.window_s});
    append_bulk(out, std::uint64_t{c.cost});
    append_bulk(out, c.refuse_limit);
    append_factor(out, c.burst_factor);
    append_bulk(out, c.burst_floor);
    append_factor(out, c.refuse_factor);
    append_bulk(out, c.refuse_floor);
    if (c.novel.empty()) {
      append_bulk(out, std::string_view());
    } else {
      std::string bits;
      for (std::uint16_t b : c.novel) {
        if (!bits.empty()) bits += ',';
        bits += std::to_string(b);
      }
      append_bulk(out, bits);
    }
  }
  for (std::size_t i = 0; i < req.signals.size(); ++i) {
    const auto& s = req.signals[i];
    append_bulk(out, std::uint64_t{key_of[n + i]});
    append_bulk(out, std::string_view(&s.tag, 1));
    append_bulk(out, std::uint64_t{s.window_s});
    append_bulk(out, s.value);
    append_bulk(out, s.refuse_limit);
  }
  append_bulk(out, req.once);
}

}  // namespace rg
