-- queue_reclaim.lua: take over queue entries whose holder stopped renewing
-- them (XAUTOCLAIM with min-idle = the lease), at most a count. Entries of
-- runs that are gone or terminal are acknowledged and deleted instead of
-- returned.
--
-- KEYS[1]  queue stream
-- ARGV[1]  consumer group      ARGV[2]  consumer (the reclaiming worker)
-- ARGV[3]  min idle (ms)       ARGV[4]  count
-- ARGV[5]  run hash key prefix ("{ns}:run:")
--
-- Returns a list of {entry ID, run ID, delivery count}; the count includes
-- this delivery (XAUTOCLAIM increments it).

local terminal = {COMPLETED = true, FAILED = true, CANCELLED = true}
local count = tonumber(ARGV[4])
local out = {}
local start = '0-0'
for _ = 1, 10 do
  local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], start, 'COUNT', count - #out)
  start = r[1]
  for _, e in ipairs(r[2]) do
    if e then
      local id, fields, runID = e[1], e[2], nil
      for i = 1, #fields, 2 do
        if fields[i] == 'run_id' then
          runID = fields[i + 1]
        end
      end
      local status = runID and redis.call('HGET', ARGV[5] .. runID, 'status')
      if not status or terminal[status] then
        redis.call('XACK', KEYS[1], ARGV[1], id)
        redis.call('XDEL', KEYS[1], id)
      else
        local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
        out[#out + 1] = {id, runID, p[1][4]}
      end
    end
  end
  if start == '0-0' or #out >= count then
    break
  end
end
return out
