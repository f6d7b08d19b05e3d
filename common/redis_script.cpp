// The check-and-charge script: every counter of a request read with one HGETALL per identity, all
// charged or none, stale buckets deleted, TTLs only raised. Keys are binary-safe hiredis arguments.
#include "redis_script.hpp"

#include <algorithm>

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
local old = {}
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
return out
)lua";

}  // namespace

std::string_view check_script() { return script_text; }

// numkeys, KEYS, ARGV of one check: the part shared by EVALSHA and EVAL.
std::vector<std::string> script_call_args(const store_request& req, std::string_view prefix) {
  std::vector<std::string> keys;
  std::vector<std::size_t> key_index;  // 1-based, per counter
  key_index.reserve(req.counters.size());
  for (const auto& c : req.counters) {
    std::string key;
    key.reserve(prefix.size() + c.identity.size() + 2);
    key.append(prefix).append("{").append(c.identity).append("}");
    auto it = std::find(keys.begin(), keys.end(), key);
    if (it == keys.end()) it = keys.insert(keys.end(), std::move(key));
    key_index.push_back(static_cast<std::size_t>(it - keys.begin()) + 1);
  }
  std::vector<std::string> args;
  args.reserve(1 + keys.size() + 2 + 5 * req.counters.size());
  args.push_back(std::to_string(keys.size()));
  for (auto& k : keys) args.push_back(std::move(k));
  args.push_back(std::to_string(req.now_ms));
  args.emplace_back(req.charge ? "1" : "0");
  for (std::size_t i = 0; i < req.counters.size(); ++i) {
    const auto& c = req.counters[i];
    args.push_back(std::to_string(key_index[i]));
    args.emplace_back(1, c.unit_tag);
    args.push_back(std::to_string(c.window_s));
    args.push_back(std::to_string(c.cost));
    args.push_back(std::to_string(c.refuse_limit));
  }
  return args;
}

}  // namespace rg
