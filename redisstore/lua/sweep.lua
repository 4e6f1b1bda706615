-- sweep.lua: remove finished runs whose retention has passed from every
-- index. Redis deletes their keys itself (PEXPIREAT set by finish.lua and
-- cancel.lua); the expiry set remembers, per finished run, what its keys and
-- index entries are, so nothing is left behind.
--
-- Each expiry-set member is a sequence of netstrings ("<len>:<bytes>"):
-- run hash key, tasks hash key, logs stream key, index member, then the
-- flow index key and each tag index key. Its score is the expiry time (ms).
--
-- KEYS[1]  expiry sorted set   KEYS[2]  index of all runs
-- KEYS[3…8] the status indexes
-- ARGV[1]  batch: entries to handle at most
--
-- Returns the number of runs removed from the indexes.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGE', KEYS[1], '-inf', '(' .. string.format('%d', now),
  'BYSCORE', 'LIMIT', 0, tonumber(ARGV[1]))

local function decode(s)
  local out, i = {}, 1
  while i <= #s do
    local c = string.find(s, ':', i, true)
    local n = tonumber(string.sub(s, i, c - 1))
    out[#out + 1] = string.sub(s, c + 1, c + n)
    i = c + n + 1
  end
  return out
end

local removed = 0
for _, e in ipairs(due) do
  local f = decode(e)
  local runKey, member = f[1], f[4]
  local cur = redis.call('HGET', runKey, 'member')
  if cur == member then
    -- Still there (its expiry is a hair later than this script's clock, or
    -- someone changed it): look again when it is due, or stop tracking a run
    -- that no longer expires.
    local ttl = redis.call('PTTL', runKey)
    if ttl >= 0 then
      redis.call('ZADD', KEYS[1], now + math.max(ttl, 1), e)
    else
      redis.call('ZREM', KEYS[1], e)
    end
  else
    for i = 2, #KEYS do
      redis.call('ZREM', KEYS[i], member)
    end
    for i = 5, #f do
      redis.call('ZREM', f[i], member)
    end
    if not cur then
      -- A run created since with the same ID keeps its keys.
      redis.call('DEL', f[1], f[2], f[3])
    end
    redis.call('ZREM', KEYS[1], e)
    removed = removed + 1
  end
end
return removed
