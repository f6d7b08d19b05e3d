// The check-and-charge function: every counter of a request read with one HGETALL per identity, all charged or
// none, stale buckets deleted, TTLs only raised, locks in force, baselines and signal caches read from the same
// HGETALL, signals in HyperLogLogs; its library's name, and the RESP of one call.
#include "redis_check.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <vector>

#include "redis_script.hpp"

namespace rg {

namespace {

// The library hard-codes these; a change in store.hpp must change it too.
static_assert(buckets_per_window == 12, "update the check library: it counts 12 + 1 buckets");
static_assert(signal_buckets == 4, "update the check library: a signal bucket is a quarter window, 5 are counted");
// The check's library indexes its arguments and layout and builds its reply with these numbers written out.
static_assert(check_call_args == 4 && check_layout_head == 4 && check_layout_counter == 10 &&
                  check_layout_signal == 4,
              "update the check library: counter i's layout starts at i * 10 - 5, the signals' at 5 + 10 * n");
static_assert(check_baseline_fields == 2 && check_novelty_fields == 2 && check_lock_fields == 2,
              "update the check library: it appends 2 values per baseline, per novelty counter and per lock");
static_assert(familiar_bits == 512, "familiarity filters are strings of 512 bits (GETBIT/SETBIT offsets)");

// The check's library (its call, layout and reply: redis_check.hpp). Per-command overhead dominates
// (REDIS-NOTES), then what Lua allocates and converts: one HGETALL per distinct key gives every bucket of every
// window of that identity, its lock, baselines, signal caches and the expiry it was last given; the writes to a
// key are one HSET; a key's TTL moves only when it has to. The fields of a window are tag..window..":"..bucket;
// the other fields have no ':'. Normal requests cost no command beyond these: a baseline is written once per
// period, a signal's union counted only when its HLL changed.
constexpr std::string_view check_body = R"lua(-- Redis keeps a function library's state between calls: each layout is parsed once, and the tables a call
-- works in belong to its layout and are reused, so a call allocates little and converts few numbers.
-- The standard library is there when a function runs, not while the library loads: taken on the first call.
local floor, max, min, find, sub, fmt, match, call
local layouts, nlayouts = {}, 0
-- Memos, each dropped whole at 4096 entries: a bucket field's window prefix and index ("m60:359267533"; false
-- for other fields), a decimal string's number, a count's decimal string.
local fprefix, fidx, nfield = {}, {}, 0
local nums, nnum = {}, 0
local strs, nstr = {}, 0
-- Detection's memos, likewise: a baseline field's parts ("avg:last:start" -> {avg, last, start}), a familiarity
-- field's ("first:last" -> {first, first as a number, last}), a novelty argument's bits ("17,300" -> {17, 300}).
local bparts, fparts, bitlists, nparts = {}, {}, {}, 0

local function field(f)
  local p, prefix, idx = find(f, ':', 2, true), false, false
  if p then
    idx = tonumber(sub(f, p + 1)) or false
    if idx then prefix = sub(f, 1, p - 1) end
  end
  if nfield >= 4096 then fprefix, fidx, nfield = {}, {}, 0 end
  fprefix[f], fidx[f], nfield = prefix, idx, nfield + 1
  return prefix
end
local function num(s)
  local v = tonumber(s)
  if nnum >= 4096 then nums, nnum = {}, 0 end
  nums[s], nnum = v, nnum + 1
  return v
end
local function str(v)
  local s = fmt('%d', v)
  if nstr >= 4096 then strs, nstr = {}, 0 end
  strs[v], nstr = s, nstr + 1
  return s
end
local function remember(memo, s, r)
  if nparts >= 4096 then bparts, fparts, bitlists, nparts = {}, {}, {}, 0 end
  memo[s], nparts = r, nparts + 1
  return r
end
local function baseline_parts(s)
  local avg, last, start = match(s, '^([^:]+):(%d+):(%d+)$')
  return remember(bparts, s, avg and {avg, tonumber(last), tonumber(start)} or false)
end
local function familiar_parts(s)
  local first, last = match(s, '^(%d+):(%d+)$')
  return remember(fparts, s, first and {first, tonumber(first), tonumber(last)} or false)
end
local function bit_list(s)
  local r = {}
  for bit in string.gmatch(s, '%d+') do r[#r + 1] = tonumber(bit) end
  return remember(bitlists, s, r)
end

-- A layout: per counter its key, bucket group (key, tag and window: counters of one identity, unit and window
-- share their buckets), cost, limits and burst rule; per signal its key, tag, window and limit (redis_check.hpp).
local function parse(s, nkeys)
  local t = {}
  for w in string.gmatch(s, '%S+') do t[#t + 1] = w end
  local n = tonumber(t[4])
  local L = {half = tonumber(t[1]), fam = tonumber(t[2]), warm = tonumber(t[3]), n = n, c = {}, g = {}, s = {},
             byprefix = {}, args = 4, cost = {}, out = {}, keys = nkeys,
             old = {}, extra = {}, texp = {}, existed = {}, ttl = {}, hset = {}, raise = {}}
  for k = 1, nkeys do
    L.byprefix[k], L.old[k], L.extra[k], L.texp[k], L.existed[k], L.ttl[k], L.raise[k] =
      {}, false, false, false, false, false, false
    L.hset[k] = {'HSET', false}
  end
  for i = 1, n do
    local a = i * 10 - 5
    local k, w = tonumber(t[a]), tonumber(t[a + 2])
    assert(k >= 1 and k <= nkeys, 'rateguard: a counter names a key the call does not pass')
    local prefix = t[a + 1] .. t[a + 2]
    local g = L.byprefix[k][prefix]
    if not g then
      g = #L.g + 1
      L.byprefix[k][prefix] = g
      local width = floor(w * 1000 / 12)
      L.g[g] = {k = k, prefix = prefix, width = width, wms = w * 1000, ttl = w * 1000 + 2 * width,
                cur = 0, sum = 0, field = false, val = 0, add = 0, sums = false}
    end
    local c = {k = k, g = g, w = w, cost = tonumber(t[a + 3]), limit = tonumber(t[a + 4]), bf = tonumber(t[a + 5]),
               bfloor = tonumber(t[a + 6]), rf = tonumber(t[a + 7]), rfloor = tonumber(t[a + 8]), bits = false}
    if t[a + 9] == 'n' then
      L.args = L.args + 1
      c.bits = L.args
      L.novel = true
    end
    if c.bf > 0 then
      L.g[g].sums = {}
      L.bases = L.bases or {}
      L.bases[#L.bases + 1] = i
    end
    L.c[i], L.cost[i] = c, 0
  end
  for a = 5 + 10 * n, #t, 4 do
    local k, w = tonumber(t[a]), tonumber(t[a + 2])
    assert(k >= 1 and k <= nkeys, 'rateguard: a signal names a key the call does not pass')
    L.args = L.args + 1
    L.s[#L.s + 1] = {k = k, name = t[a + 1] .. t[a + 2], w = w, wid = w * 250, limit = tonumber(t[a + 3]),
                     value = L.args}
  end
  return L
end

local none = {}

-- Writes to an identity's hash are gathered in its layout (field, value, ...) and made with one HSET per key; the
-- TTL each key needs, likewise.
local function put(L, k, f, v)
  local h = L.hset[k]
  h[#h + 1] = f
  h[#h + 1] = v
end
local function need(L, k, ms)
  local ttl = L.ttl
  if not ttl[k] or ttl[k] < ms then ttl[k] = ms end
end

local function check(keys, args)
  if not call then
    floor, max, min, find, sub = math.floor, math.max, math.min, string.find, string.sub
    fmt, match, call = string.format, string.match, redis.call
  end
  local now = tonumber(args[1])
  if now == 0 then
    local t = call('TIME')
    now = tonumber(t[1]) * 1000 + floor(tonumber(t[2]) / 1000)
  end
  local charge, L = args[2] == '1', layouts[args[3]]
  if not L or L.keys ~= #keys then
    if nlayouts >= 256 then layouts, nlayouts = {}, 0 end
    L = parse(args[3], #keys)
    layouts[args[3]], nlayouts = L, nlayouts + 1
  end
  -- Charge once: a repeat of a charged request only reads.
  local once, repeated = args[4], false
  if once ~= '' and charge and #keys > 0 then
    once = keys[1] .. ':once:' .. once
    if not call('SET', once, '1', 'PX', '600000', 'NX') then
      repeated, once, charge = true, nil, false
    end
  else
    once = nil
  end
  local n, C, G, cost = L.n, L.c, L.g, L.cost
  for g = 1, #G do
    local x = G[g]
    local w = x.width
    x.cur, x.sum, x.field, x.val, x.add = (now - now % w) / w, 0, false, 0, 0  -- floor(now / w), without a call
    if x.sums then x.sums = {} end
  end
  local old, extra, texp, existed, locks = L.old, L.extra, L.texp, L.existed, nil
  for k = 1, #keys do
    local flat = call('HGETALL', keys[k])
    local bp, o, e, t = L.byprefix[k], false, none, false
    for j = 1, #flat, 2 do
      local f = flat[j]
      local prefix = fprefix[f]
      if prefix == nil then prefix = field(f) end
      if prefix then
        local g = bp[prefix]
        if g then
          local x, idx = G[g], fidx[f]
          local c = x.cur
          if idx < c - 12 then
            if not o then o = {'HDEL', keys[k]} end
            o[#o + 1] = f
          elseif idx <= c then
            local v = flat[j + 1]
            v = nums[v] or num(v)
            x.sum = x.sum + v
            if idx == c then x.field, x.val = f, v end
          end
          local s = x.sums
          if s then
            local q, v = floor(idx / 12), flat[j + 1]
            s[q] = (s[q] or 0) + (nums[v] or num(v))
          end
        end
      elseif f == 't' then
        t = flat[j + 1]  -- the key's expiry as last set, in the scripts' clock
        t = nums[t] or num(t)
      else
        if e == none then e = {} end
        e[f] = flat[j + 1]  -- lock, baselines (b...), signal caches (x...), familiarity (f...)
      end
    end
    old[k], extra[k], texp[k], existed[k] = o, e, t, #flat > 0
    -- "until:since:reason"; one that has ended is ignored (release or the key's TTL removes it)
    local v = e.lock
    local u = v and tonumber(match(v, '^%d+'))
    if u and u > now then
      locks = locks or {}
      locks[#locks + 1] = k
      locks[#locks + 1] = v
    end
  end
  for i = 1, n do cost[i] = C[i].cost end
  -- Novelty counters: their cost is how many of the values' bits are set in neither the current epoch's filter
  -- of the key nor the one before (its field f = "first_ms:last epoch written" says which exist).
  local novel = nil
  if L.novel then
    local epoch = floor(now / L.fam)
    novel = {}
    for i = 1, n do
      local c = C[i]
      if c.bits then
        local k = c.k
        local fv = extra[k].f
        local fp = fv and (fparts[fv] or familiar_parts(fv))
        local first, firstn, last = false, false, nil
        if fp then first, firstn, last = fp[1], fp[2], fp[3] end
        local e = max(epoch, last or epoch)
        local base = keys[k] .. ':f:'
        local key = base .. (strs[e] or str(e))
        local before = nil
        local added, unset = 0, {}
        local bits = args[c.bits]
        for _, b in ipairs(bitlists[bits] or bit_list(bits)) do
          local known = 0
          if last == e then known = call('GETBIT', key, b) end
          if known == 0 then
            unset[#unset + 1] = b
            if last and last >= e - 1 then
              before = before or base .. (strs[e - 1] or str(e - 1))
              known = call('GETBIT', before, b)
            end
            if known == 0 then added = added + 1 end
          end
        end
        cost[i] = added
        novel[i] = {k = k, first = first, firstn = firstn, last = last, e = e, key = key, unset = unset}
      end
    end
  end
  -- Baselines (store.hpp has the formula), folded from the buckets read before any was deleted.
  local bavg, bhist, bstate = nil, nil, nil
  if L.bases then
    bavg, bhist, bstate = {}, {}, {}
    local half = L.half
    for _, i in ipairs(L.bases) do
      local c = C[i]
      local k, x = c.k, G[c.g]
      local wms, field, P = x.wms, 'b' .. x.prefix, floor(x.cur / 12)
      local bv = extra[k][field]
      local bp = bv and (bparts[bv] or baseline_parts(bv))
      local avg, last, start = nil, nil, nil
      if bp then
        avg, last, start = bp[1], bp[2], bp[3]
        if P > last then  -- else the stored string is the answer: no number conversion on the common path
          local alpha, v = 1 - 2 ^ (-wms / half), tonumber(avg)
          local y = min(x.sums[last] or 0, max(c.bf * v, c.bfloor))
          local seen = last - start + 1
          v = v + (y - v) * max(alpha, 1 / seen)
          -- the gap's empty periods: plain mean while 1/seen >= alpha (floor(1/alpha) periods), then the decay
          local gap = P - last - 1
          local m = min(gap, max(0, floor(1 / alpha) - seen))
          avg = fmt('%.17g', v * seen / (seen + m) * (1 - alpha) ^ (gap - m))
        end
        bavg[i], bhist[i] = avg, max(0, P - start) * wms
      end
      bstate[i] = {k = k, g = c.g, field = field, P = P, last = last, start = start}
    end
  end
  -- Charged only when no refusing limit is passed: a count limit's refuse_limit, or a refusing burst rule's
  -- max(refuse_factor x baseline, refuse_floor) once the baseline is warm (baseline_warm in store_types.hpp).
  local charged, warm, ttl, hset = charge, L.warm, L.ttl, L.hset
  for k = 1, #keys do
    ttl[k] = false
    local h = hset[k]
    for j = #h, 3, -1 do h[j] = nil end
    h[2] = keys[k]
  end
  if charged then
    for i = 1, n do
      local c = C[i]
      local limit, after = c.limit, G[c.g].sum + cost[i]
      -- a novelty limit refuses only once it applies (novelty_warm in store_types.hpp)
      local f = novel and novel[i]
      if limit > 0 and after > limit and (not f or (f.first and max(0, now - f.firstn) >= warm)) then
        charged = false
        break
      end
      if c.rf > 0 and bavg[i] and bhist[i] >= warm and bhist[i] >= 3000 * c.w and
         after > floor(max(c.rf * tonumber(bavg[i]), c.rfloor)) then
        charged = false
        break
      end
    end
  end
  -- Signals: one HyperLogLog per quarter window, the union of the last 5 counted only when this quarter's
  -- changed or the quarter moved on (the count cached in the identity's hash as "quarter:count"). Explain
  -- (no charge) adds nothing, so its count leaves this request's value out.
  local distinct = nil
  if #L.s > 0 then
    distinct = {}
    for s, S in ipairs(L.s) do
      local k, w, wid = S.k, S.w, S.wid
      local b = floor(now / wid)
      local bs = fmt('%d', b)
      local base, f, added = keys[k] .. ':' .. S.name .. ':', 'x' .. S.name, 1
      if charge then
        local key = base .. bs
        added = call('PFADD', key, args[S.value])
        if added == 1 then call('PEXPIRE', key, w * 1000 + 2 * wid) end
      end
      local cache = extra[k][f]
      local p = added == 0 and cache and find(cache, ':', 1, true)
      local c
      if p and sub(cache, 1, p - 1) == bs then
        c = tonumber(sub(cache, p + 1))
      else
        local union = {}
        for j = 0, 4 do union[j + 1] = base .. fmt('%d', b - j) end
        c = call('PFCOUNT', unpack(union))
        if charge then
          local v = bs .. ':' .. c
          put(L, k, f, v)
          if extra[k] == none then extra[k] = {} end
          extra[k][f] = v
          need(L, k, w * 1000 + 2 * wid)
        end
      end
      distinct[s] = c
      if S.limit > 0 and c > S.limit then charged = false end
    end
  end
  if charged then
    for i = 1, n do
      local c = C[i]
      local k = c.k
      local f = novel and novel[i]
      if f then
        -- the values become familiar in the current epoch (the filter's key lives through the next epoch); a bit
        -- another counter of the request set already is set again at no harm
        if #f.unset > 0 then
          for _, b in ipairs(f.unset) do call('SETBIT', f.key, b, 1) end
          call('PEXPIRE', f.key, 2 * L.fam)
        end
        if f.last ~= f.e and not novel[f.key] then
          novel[f.key] = true
          put(L, k, 'f', (f.first or fmt('%d', now)) .. ':' .. fmt('%d', f.e))
        end
        need(L, k, 2 * L.fam)
      end
      if cost[i] > 0 then
        local x = G[c.g]
        x.add = x.add + cost[i]
        need(L, k, x.ttl)
      end
    end
    for g = 1, #G do
      local x = G[g]
      if x.add > 0 then
        local v = x.val + x.add
        put(L, x.k, x.field or x.prefix .. ':' .. (strs[x.cur] or str(x.cur)), strs[v] or str(v))
      end
    end
  end
  local out, m = L.out, n + 1
  out[1] = charged and 1 or 0
  for i = 1, n do out[i + 1] = G[C[i].g].sum end
  -- The baselines as of now; a charge in a later period than the last stored writes it (the first counter of the window).
  if L.bases then
    local written = {}
    for _, i in ipairs(L.bases) do
      local b = bstate[i]
      out[m + 1], out[m + 2], m = bavg[i] or '', bhist[i] or 0, m + 2
      if charged and (not b.last or b.P > b.last) and not written[b.g] then
        written[b.g] = true
        put(L, b.k, b.field, (bavg[i] or '0') .. fmt(':%d:%d', b.P, b.start or b.P))
        need(L, b.k, 4 * L.half)
      end
    end
  end
  -- Novelty: history_ms (-1: the filter was never charged) and the values new to it, per novelty counter.
  if novel then
    for i = 1, n do
      local f = novel[i]
      if f then
        out[m + 1], out[m + 2], m = f.first and max(0, now - f.firstn) or -1, cost[i], m + 2
      end
    end
  end
  if distinct then
    for s = 1, #distinct do out[m + 1], m = distinct[s], m + 1 end
  end
  -- TTLs only grow. The expiry last set is kept in the hash (t, in the scripts' clock), so a key whose TTL is long
  -- enough costs no command; a key without t (written before there was one) is asked once (PTTL). A raise adds a
  -- twelfth, so a busy key's TTL moves about once a bucket, not on every call.
  local raise = L.raise
  for k = 1, #keys do
    raise[k] = false
    local ms = ttl[k]
    if ms then
      local t = texp[k]
      if not t and existed[k] then
        local r = call('PTTL', keys[k])
        if r >= ms then
          t = now + r
          put(L, k, 't', fmt('%d', t))
        end
      end
      if not t or t < now + ms then
        local at = ms + floor(ms / 12)
        raise[k] = fmt('%d', at)
        put(L, k, 't', fmt('%d', now + at))
      end
    end
  end
  for k = 1, #keys do
    local h = hset[k]
    if #h > 2 then call(unpack(h)) end
    if raise[k] then call('PEXPIRE', keys[k], raise[k]) end
    if charged and old[k] then call(unpack(old[k])) end
  end
  if locks then
    for j = 1, #locks do out[m + 1], m = locks[j], m + 1 end
  end
  for j = #out, m + 1, -1 do out[j] = nil end
  if repeated then
    out[1] = 2
  elseif once and out[1] ~= 1 then
    call('DEL', once)  -- not charged: a resend is checked again
  end
  return out
end

)lua";

}  // namespace

// Charge once (store_request::once): a charging request records <its first key>:once:<token> (same hash tag) for
// charge_once_ttl with one SET NX, and deletes it again when the check does not charge; a request whose token is
// recorded runs with charge 0, so it only reads, and its reply's first element is 2, "a repeat of a charged
// request" (parse_check_reply: mark_repeat).
static_assert(charge_once_ttl == std::chrono::minutes(10), "update the charge-once guard: PX 600000");

namespace {
struct check_names {
  std::string library, function;
};
const check_names& names() {
  static const check_names n = [] {
    std::uint64_t h = 14695981039346656037ull;  // FNV-1a 64 of the code
    for (const char c : check_body) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
    char hex[17];
    for (int i = 15; i >= 0; --i, h >>= 4) hex[i] = "0123456789abcdef"[h & 15];
    hex[16] = 0;
    const std::string tag(hex);
    check_names r;
    r.function = "rateguard_check_" + tag;
    r.library = "#!lua name=rateguard_" + tag + "\n" + std::string(check_body) + "redis.register_function('" +
                r.function + "', check)\n";
    return r;
  }();
  return n;
}

// The layout of `req` as one bulk string ($length, the text, CRLF), appended to `out`.
void append_layout(std::string& out, const store_request& req, const std::size_t* key_of) {
  const std::size_t n = req.counters.size();
  // The layout is written in place: room for its longest form behind room for its bulk header, then moved up
  // to the header once its length is known (a raw pointer: ~70 numbers a request, no string bookkeeping each).
  constexpr std::size_t header_room = 24;  // "$" + up to 20 digits + "\r\n"
  // At most, with spaces: 4 numbers of 20 digits; a counter's 21 (key) + 2 (tag) + 11 + 11 (32-bit window, cost)
  // + 3 x 21 (limit, floors) + 2 x 25 (factors: a double's shortest form) + 2 = 160; a signal's 21 + 2 + 11 + 21.
  constexpr std::size_t head_most = 4 * 21, counter_most = 160, signal_most = 55;
  const std::size_t most = head_most + counter_most * n + signal_most * req.signals.size();
  const std::size_t header_at = out.size();
  out.resize(header_at + header_room + most);
  char* const begin = out.data() + header_at + header_room;
  char* const end = begin + most;
  char* p = begin;
  const auto number = [&p, end](std::uint64_t v) {
    p = std::to_chars(p, end, v).ptr;
    *p++ = ' ';
  };
  const auto word = [&p](char c) {
    *p++ = c;
    *p++ = ' ';
  };
  const auto factor = [&](double f) {  // the shortest form that reads back as the same double; 0 for none
    if (!(f > 0)) return word('0');
    p = std::to_chars(p, end, f).ptr;
    *p++ = ' ';
  };
  number(static_cast<std::uint64_t>(req.half_life_ms));
  number(static_cast<std::uint64_t>(std::max<std::int64_t>(1, req.familiar_ms)));
  number(static_cast<std::uint64_t>(std::max<std::int64_t>(0, req.warmup_ms)));
  number(n);
  for (std::size_t i = 0; i < n; ++i) {
    const auto& c = req.counters[i];
    number(key_of[i]);
    word(c.unit_tag);
    number(c.window_s);
    number(c.cost);
    number(c.refuse_limit);
    factor(c.burst_factor);
    number(c.burst_floor);
    factor(c.refuse_factor);
    number(c.refuse_floor);
    word(c.novel.empty() ? '-' : 'n');
  }
  for (std::size_t i = 0; i < req.signals.size(); ++i) {
    const auto& s = req.signals[i];
    number(key_of[n + i]);
    word(s.tag);
    number(s.window_s);
    number(s.refuse_limit);
  }
  const auto length = static_cast<std::size_t>(p - 1 - begin);  // without the last word's space
  char header[header_room] = "$";
  char* h = std::to_chars(header + 1, header + sizeof header, length).ptr;
  *h++ = '\r';
  *h++ = '\n';
  const auto header_length = static_cast<std::size_t>(h - header);
  std::memmove(out.data() + header_at + header_length, begin, length);
  std::memcpy(out.data() + header_at, header, header_length);
  out.resize(header_at + header_length + length);
  out += "\r\n";
}
}  // namespace

std::string_view check_layouts::get(const store_request& req, const std::size_t* key_of) {
  // Everything append_layout writes, as numbers (the factors by their bits).
  const std::size_t n = req.counters.size();
  std::vector<std::uint64_t>& v = scratch_;
  v.clear();
  const auto bits = [](double d) { return std::bit_cast<std::uint64_t>(d); };
  v.insert(v.end(), {static_cast<std::uint64_t>(req.half_life_ms), static_cast<std::uint64_t>(req.familiar_ms),
                     static_cast<std::uint64_t>(req.warmup_ms), n, req.signals.size()});
  for (std::size_t i = 0; i < n; ++i) {
    const counter_spec& c = req.counters[i];
    v.insert(v.end(), {key_of[i], static_cast<std::uint64_t>(c.unit_tag), c.window_s, c.cost, c.refuse_limit,
                       bits(c.burst_factor), c.burst_floor, bits(c.refuse_factor), c.refuse_floor,
                       c.novel.empty() ? 0u : 1u});
  }
  for (std::size_t i = 0; i < req.signals.size(); ++i) {
    const signal_spec& g = req.signals[i];
    v.insert(v.end(), {key_of[n + i], static_cast<std::uint64_t>(g.tag), g.window_s, g.refuse_limit});
  }
  if (used_ > 0 && entries_[last_].numbers == v) return entries_[last_].text;
  for (std::size_t e = 0; e < used_; ++e)
    if (entries_[e].numbers == v) {
      last_ = e;
      return entries_[e].text;
    }
  entry& e = entries_[next_];
  last_ = next_;
  next_ = (next_ + 1) % kept;
  used_ = std::max(used_, last_ + 1);
  e.numbers.assign(v.begin(), v.end());
  e.text.clear();
  append_layout(e.text, req, key_of);
  return e.text;
}

std::string_view check_library() { return names().library; }
std::string_view check_function() { return names().function; }
void append_check_call(std::string& out, std::string_view function, const store_request& req,
                       std::string_view prefix, check_layouts* layouts) {
  // Distinct identities, of the counters then of the signals, become keys (a request has a handful: a linear
  // search beats hashing).
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
  std::size_t novel = 0;
  for (std::size_t i = 0; i < specs; ++i) {
    std::size_t j = 0;
    while (j < i && identity(j) != identity(i)) ++j;
    key_of[i] = j < i ? key_of[j] : ++keys;  // 1-based, as Lua indexes tables
    if (i < n && !req.counters[i].novel.empty()) ++novel;
  }
  append_array_header(out, 3 + keys + check_call_args + novel + req.signals.size());
  append_bulk(out, std::string_view("FCALL"));
  append_bulk(out, function);
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
  if (layouts != nullptr)
    out.append(layouts->get(req, key_of));
  else
    append_layout(out, req, key_of);
  append_bulk(out, req.once);
  for (std::size_t i = 0; i < n; ++i) {
    const auto& c = req.counters[i];
    if (c.novel.empty()) continue;
    std::string bits;
    for (std::uint16_t b : c.novel) {
      if (!bits.empty()) bits += ',';
      bits += std::to_string(b);
    }
    append_bulk(out, bits);
  }
  for (const auto& s : req.signals) append_bulk(out, s.value);
}

}  // namespace rg
