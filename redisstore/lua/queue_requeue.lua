-- queue_requeue.lua: a worker hands a run back (it is stopping): its entry
-- is acknowledged and deleted, and, if the run is not terminal, a new entry
-- is added for any worker (at the end of the stream: streams have no front)
-- and recorded in the run hash's "qid".
--
-- The fence (see task_update.lua): with an expected attempt, a run whose
-- stored attempt differs was taken over by another worker, which holds the
-- entry under the same ID; the hand-back is refused and changes nothing.
--
-- KEYS[1]  queue stream        KEYS[2]  the run hash
-- ARGV[1]  consumer group      ARGV[2]  entry ID
-- ARGV[3]  expected attempt ("" for no check)
--
-- Returns the new entry ID, or false if the run is gone or terminal; the
-- error reply "CONFLICT owner lost: …" changes nothing.

local f = redis.call('HMGET', KEYS[2], 'status', 'id', 'flow', 'attempt')
local status = f[1]
if status and ARGV[3] ~= '' and f[4] ~= ARGV[3] then
  return redis.error_reply('CONFLICT owner lost: the run was taken over (attempt ' .. tostring(f[4]) .. ')')
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if not (status == 'PENDING' or status == 'RUNNING' or status == 'CANCELLING') then
  return false
end
local qid = redis.call('XADD', KEYS[1], '*', 'run_id', f[2], 'flow', f[3])
redis.call('HSET', KEYS[2], 'qid', qid)
return qid
