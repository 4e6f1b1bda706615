-- queue_check.lua: after XREADGROUP delivered a queue entry, check that its
-- run still wants executing. An entry whose run is gone or terminal
-- (cancelled or finished while queued) is acknowledged and deleted.
--
-- KEYS[1]  queue stream        KEYS[2]  the entry's run hash
-- ARGV[1]  consumer group      ARGV[2]  entry ID
--
-- Returns 1 if the run is PENDING, RUNNING or CANCELLING (deliver it), 0 if
-- the entry was dropped.

local status = redis.call('HGET', KEYS[2], 'status')
if status == 'PENDING' or status == 'RUNNING' or status == 'CANCELLING' then
  return 1
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 0
