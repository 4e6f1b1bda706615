-- queue_heartbeat_lost.lua: renew the leases a worker still holds, as
-- queue_heartbeat.lua does, and report the ones it no longer holds: the
-- entry is not pending for this consumer (another worker reclaimed it, or
-- it was acknowledged), or the run's stored attempt differs from the one
-- the worker's start left (another worker took the run over since).
--
-- KEYS[1]  queue stream        KEYS[2…n+1] the leases' run hashes
-- ARGV[1]  consumer group      ARGV[2]  consumer (the worker)
-- ARGV[3…] n pairs: entry ID, expected attempt ("" for no check)
--
-- Returns the 1-based positions of the lost leases.

local args = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0}
local n, lost = 0, {}
for k = 1, (#ARGV - 2) / 2 do
  local id, want = ARGV[2 * k + 1], ARGV[2 * k + 2]
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  local held = p[1] and p[1][2] == ARGV[2]
  if held and want ~= '' then
    local a = redis.call('HGET', KEYS[k + 1], 'attempt')
    held = (not a) or a == want
  end
  if held then
    args[#args + 1] = id
    n = n + 1
  else
    lost[#lost + 1] = k
  end
end
if n > 0 then
  args[#args + 1] = 'JUSTID'
  redis.call(unpack(args))
end
return lost
