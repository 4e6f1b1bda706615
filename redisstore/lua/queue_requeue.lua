-- queue_requeue.lua: a worker hands a run back (it is stopping): its entry
-- is acknowledged and deleted, and, if the run is not terminal, a new entry
-- is added for any worker (at the end of the stream: streams have no front)
-- and recorded in the run hash's "qid".
--
-- KEYS[1]  queue stream        KEYS[2]  the run hash
-- ARGV[1]  consumer group      ARGV[2]  entry ID
--
-- Returns the new entry ID, or false if the run is gone or terminal.

redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
local f = redis.call('HMGET', KEYS[2], 'status', 'id', 'flow')
local status = f[1]
if not (status == 'PENDING' or status == 'RUNNING' or status == 'CANCELLING') then
  return false
end
local qid = redis.call('XADD', KEYS[1], '*', 'run_id', f[2], 'flow', f[3])
redis.call('HSET', KEYS[2], 'qid', qid)
return qid
