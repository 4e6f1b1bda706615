-- meta.lua: fix a namespace's partition count at first use.
--
-- KEYS[1]  the namespace's meta hash ({ns}:meta)
-- KEYS[2]  the single-tag layout's index of all runs ({ns}:idx:all)
-- KEYS[3]  the single-tag layout's queue stream ({ns}:queue)
-- ARGV[1]  the partition count the caller was opened with
--
-- Returns the namespace's partition count: the stored one; else 1 when the
-- namespace holds data of the single-tag layout (earlier versions wrote no
-- meta hash); else ARGV[1]. Whatever it returns is stored, so the first
-- caller decides for everyone after it.

local n = redis.call('HGET', KEYS[1], 'partitions')
if n then
  return tonumber(n)
end
n = tonumber(ARGV[1])
if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[3]) == 1 then
  n = 1
end
redis.call('HSET', KEYS[1], 'partitions', n)
return n
