-- tests/bench/check_lines.lua: where the check library's Lua spends its VM instructions, line by line (run by
-- check_lines.sh). The library runs in a plain Lua 5.1 (the version Redis embeds) against an in-memory stand-in for
-- the Redis commands it calls, so the counts cover the library's own code only: what Redis spends in the commands
-- and in converting their replies is check_cost.sh's `commands` floor. A count hook tallies every VM instruction of
-- the library per source line over CALLS calls, after WARM calls that fill the keys as a steady flow would.
-- Usage: lua5.1 check_lines.lua LIBRARY plain|sample CALLS WARM STEP_MS TOP
local libfile, shape = arg[1], arg[2]
local calls, warm, step, top = tonumber(arg[3]), tonumber(arg[4]), tonumber(arg[5]), tonumber(arg[6])
local src = assert(io.open(libfile)):read('*a')
src = src:gsub('^#![^\n]*\n', ''):gsub('redis%.register_function%b()%s*$', '') .. '\nreturn check\n'

-- The commands the library calls, on Lua tables: a hash is a table of fields, a bit string a table of bits.
local db, now, commands = {}, 1764800000000, {}
redis = {}
function redis.call(cmd, ...)
  local a = {...}
  commands[cmd] = (commands[cmd] or 0) + 1
  if cmd == 'TIME' then
    return {string.format('%d', math.floor(now / 1000)), string.format('%d', now % 1000 * 1000)}
  elseif cmd == 'SET' then  -- SET key value PX ms NX
    if db[a[1]] then return false end
    db[a[1]] = a[2]
    return {ok = 'OK'}
  elseif cmd == 'DEL' then
    db[a[1]] = nil
    return 1
  elseif cmd == 'HGETALL' then
    local out = {}
    for f, v in pairs(db[a[1]] or {}) do out[#out + 1], out[#out + 2] = f, v end
    return out
  elseif cmd == 'HSET' then
    db[a[1]] = db[a[1]] or {}
    for i = 2, #a, 2 do db[a[1]][a[i]] = tostring(a[i + 1]) end
    return 1
  elseif cmd == 'HDEL' then
    for i = 2, #a do (db[a[1]] or {})[a[i]] = nil end
    return 1
  elseif cmd == 'GETBIT' then
    return (db[a[1]] or {})[a[2]] or 0
  elseif cmd == 'SETBIT' then
    db[a[1]] = db[a[1]] or {}
    db[a[1]][a[2]] = tonumber(a[3])
    return 0
  elseif cmd == 'PEXPIRE' then
    return 1
  elseif cmd == 'PTTL' then
    return 100000000
  end
  error('check_lines.lua: no stand-in for ' .. cmd)
end

-- Library functions the check calls, counted (it takes them on its first call: wrapped before).
local library = {}
local function counted(name, f)
  return function(...)
    library[name] = (library[name] or 0) + 1
    return f(...)
  end
end
tonumber = counted('tonumber', tonumber)
for _, n in ipairs({'match', 'gmatch', 'format', 'find', 'sub'}) do string[n] = counted(n, string[n]) end
math.floor = counted('floor', math.floor)
local check = assert(loadstring(src, '=check'))()

-- check_cost.sh's plain and sample_detection layouts (1000 users, one client address).
local BIG = '1000000000'
local head = '604800000 1209600000 0 '
local rest = ' 1 r 3600 1 0 0 0 0 0 - 2 m 60 1 0 0 0 0 0 - 2 m 3600 1 0 0 0 0 0 - 3 r 3600 1 ' .. BIG .. ' 0 0 0 0 -'
local layout, extra
if shape == 'plain' then
  layout = head .. '7 1 m 60 1 ' .. BIG .. ' 0 0 0 0 - 1 m 3600 1 ' .. BIG .. ' 0 0 0 0 - 1 m 86400 1 ' .. BIG ..
           ' 0 0 0 0 -' .. rest
  extra = {}
elseif shape == 'sample' then
  layout = head .. '9 1 m 60 1 ' .. BIG .. ' 0 0 0 0 - 1 m 3600 1 ' .. BIG .. ' 24 40 0 0 - 1 m 86400 1 ' .. BIG ..
           ' 10 100 0 0 -' .. rest .. ' 1 D 3600 0 0 0 0 0 0 n 1 N 3600 0 0 0 0 0 0 n'
  extra = {'17', '300'}
else
  error('shape: plain or sample')
end
math.randomseed(7)
local function one(i)
  local u = math.random(1000)
  now = now + step
  local args = {'0', '1', layout, 'once' .. i}
  for _, v in ipairs(extra) do args[#args + 1] = v end
  return check({'rg:{u:user' .. u .. '}', 'rg:{ip:127.0.0.1}', 'rg:{s:user' .. u .. '@bench.test}'}, args)
end
for i = 1, warm do one(i) end
for k in pairs(commands) do commands[k] = 0 end
for k in pairs(library) do library[k] = 0 end
local per_line = {}
debug.sethook(function()
  local info = debug.getinfo(2, 'Sl')
  if info.source == '=check' then per_line[info.currentline] = (per_line[info.currentline] or 0) + 1 end
end, '', 1)
for i = warm + 1, warm + calls do one(i) end
debug.sethook()

local lines, order, all = {}, {}, 0
for l in src:gmatch('([^\n]*)\n') do lines[#lines + 1] = l end
for l, c in pairs(per_line) do
  order[#order + 1] = l
  all = all + c
end
table.sort(order, function(a, b) return per_line[a] > per_line[b] end)
print(string.format('%s: %.0f VM instructions per call in the check library (%d calls after %d, %d ms apart)', shape,
                    all / calls, calls, warm, step))
local function per_call(t)
  local names, out = {}, {}
  for k in pairs(t) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do out[#out + 1] = string.format('%s=%.2f', k, t[k] / calls) end
  return table.concat(out, ' ')
end
print('Redis commands per call: ' .. per_call(commands))
print('library functions per call: ' .. per_call(library))
print(string.format('%9s %5s  %s', 'per call', 'line', 'source'))
for i = 1, math.min(#order, top) do
  local l = order[i]
  print(string.format('%9.1f %5d  %s', per_line[l] / calls, l, lines[l] or ''))
end
