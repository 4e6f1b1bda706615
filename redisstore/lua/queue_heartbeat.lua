-- queue_heartbeat.lua: renew the leases a worker still holds, by resetting
-- their idle time (XCLAIM … 0 JUSTID by the same consumer, which does not
-- count as a delivery). Entries another worker took over, or that were
-- acknowledged, are left alone.
--
-- KEYS[1]  queue stream
-- ARGV[1]  consumer group      ARGV[2]  consumer (the worker)
-- ARGV[3…] entry IDs
--
-- Returns the number of leases renewed.

local args = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0}
local n = 0
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    args[#args + 1] = ARGV[i]
    n = n + 1
  end
end
if n == 0 then
  return 0
end
args[#args + 1] = 'JUSTID'
redis.call(unpack(args))
return n
