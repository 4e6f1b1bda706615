-- start.lua: hand a run to a worker. PENDING becomes RUNNING (StartedAt set,
-- moved from the PENDING to the RUNNING index, RUNNING event recorded); a
-- RUNNING or CANCELLING run (a takeover) keeps its status and records no
-- event. Either way attempt is incremented and worker set.
--
-- KEYS[1]  run hash            KEYS[2]  tasks hash
-- KEYS[3]  events stream
-- KEYS[4]  PENDING index       KEYS[5]  RUNNING index
-- KEYS[6]  queued-per-flow hash (decremented when PENDING ends)
-- ARGV[1]  worker ID           ARGV[2]  at (Unix ms)
-- ARGV[3]  events stream MAXLEN (approximate)
--
-- Returns {run hash, tasks hash} as field/value lists, after the change;
-- the error replies "NOTFOUND run" and "CONFLICT <status>" (terminal run)
-- change nothing.

local f = redis.call('HMGET', KEYS[1], 'status', 'member', 'id', 'flow')
local status = f[1]
if not status then
  return redis.error_reply('NOTFOUND run')
end
if status == 'COMPLETED' or status == 'FAILED' or status == 'CANCELLED' then
  return redis.error_reply('CONFLICT ' .. status)
end
if status == 'PENDING' then
  redis.call('HSET', KEYS[1], 'status', 'RUNNING', 'started', ARGV[2])
  redis.call('ZREM', KEYS[4], f[2])
  redis.call('ZADD', KEYS[5], 0, f[2])
  if redis.call('HINCRBY', KEYS[6], f[4], -1) <= 0 then
    redis.call('HDEL', KEYS[6], f[4])
  end
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*',
    'run_id', f[3], 'flow', f[4], 'status', 'RUNNING', 'time', ARGV[2])
end
redis.call('HINCRBY', KEYS[1], 'attempt', 1)
redis.call('HSET', KEYS[1], 'worker', ARGV[1])
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}
