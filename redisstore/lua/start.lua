-- start.lua: hand a run to a worker. PENDING becomes RUNNING (StartedAt set,
-- moved from the PENDING to the RUNNING index, RUNNING event recorded); a
-- RUNNING or CANCELLING run (a takeover) keeps its status and records no
-- event. Either way attempt is incremented and worker set.
--
-- When the worker passes the queue entry that delivered the run (ARGV[5]),
-- the entry of a run that is gone or terminal (cancelled or finished while
-- it was being delivered) is acknowledged and deleted here, so the worker
-- needs no separate check or ack for it.
--
-- KEYS[1]  run hash            KEYS[2]  tasks hash
-- KEYS[3]  events stream
-- KEYS[4]  PENDING index       KEYS[5]  RUNNING index
-- KEYS[6]  queued-per-flow hash (decremented when PENDING ends)
-- KEYS[7]  queue stream
-- ARGV[1]  worker ID           ARGV[2]  at (Unix ms)
-- ARGV[3]  events stream MAXLEN (approximate)
-- ARGV[4]  queue consumer group
-- ARGV[5]  queue entry ID ("" when the caller has none)
--
-- Returns {run hash, tasks hash} as field/value lists, after the change;
-- the error replies "NOTFOUND run" and "CONFLICT <status>" (terminal run)
-- change nothing but the entry's acknowledgement.

local f = redis.call('HMGET', KEYS[1], 'status', 'member', 'id', 'flow', 'attempt')
local status = f[1]
if not status or status == 'COMPLETED' or status == 'FAILED' or status == 'CANCELLED' then
  if ARGV[5] ~= '' then
    redis.call('XACK', KEYS[7], ARGV[4], ARGV[5])
    redis.call('XDEL', KEYS[7], ARGV[5])
  end
  if not status then
    return redis.error_reply('NOTFOUND run')
  end
  return redis.error_reply('CONFLICT ' .. status)
end
local attempt = string.format('%d', (tonumber(f[5]) or 0) + 1)
if status == 'PENDING' then
  redis.call('HSET', KEYS[1], 'status', 'RUNNING', 'started', ARGV[2], 'attempt', attempt, 'worker', ARGV[1])
  redis.call('ZREM', KEYS[4], f[2])
  redis.call('ZADD', KEYS[5], 0, f[2])
  if redis.call('HINCRBY', KEYS[6], f[4], -1) <= 0 then
    redis.call('HDEL', KEYS[6], f[4])
  end
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*',
    'run_id', f[3], 'flow', f[4], 'status', 'RUNNING', 'time', ARGV[2])
else
  redis.call('HSET', KEYS[1], 'attempt', attempt, 'worker', ARGV[1])
end
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}
