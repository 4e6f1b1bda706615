-- cancel.lua: request a run's cancellation. PENDING becomes CANCELLED at once
-- (ended set, retention started as in finish.lua); RUNNING becomes
-- CANCELLING. A PENDING run's PENDING tasks become CANCELLED (ended ARGV[1],
-- error ARGV[5]). Both move the run between status indexes, record the event and
-- publish the run ID on the cancel channel. A CANCELLING run stays so, with no
-- event and no message.
--
-- KEYS[1]  run hash            KEYS[2]  tasks hash (a run stored before
--          layout 2; one of layout 2 keeps its tasks in its run hash)
-- KEYS[3]  logs stream         KEYS[4]  events stream
-- KEYS[5]  expiry sorted set
-- KEYS[6…11] status indexes, in the order PENDING, RUNNING, CANCELLING,
--          COMPLETED, FAILED, CANCELLED
-- KEYS[12] queued-per-flow hash  KEYS[13] queue stream (a PENDING run's
--          count is decremented and its queue entry deleted: never picked up)
-- ARGV[1]  at (Unix ms)        ARGV[2]  events stream MAXLEN (approximate)
-- ARGV[3]  retention (ms)      ARGV[4]  cancel pub/sub channel
-- ARGV[5]  the cancelled tasks' error
--
-- Returns the run's new status; the error replies "NOTFOUND run" and
-- "CONFLICT <status>" (terminal run) change nothing.

local f = redis.call('HMGET', KEYS[1], 'status', 'member', 'id', 'flow', 'gc', 'qid', 'layout')
local status = f[1]
if not status then
  return redis.error_reply('NOTFOUND run')
end
if status == 'CANCELLING' then
  return status
end

local to, from
if status == 'PENDING' then
  to, from = 'CANCELLED', KEYS[6]
  redis.call('HSET', KEYS[1], 'status', to, 'ended', ARGV[1])
  local tk = KEYS[2]
  if f[7] == '2' then
    tk = KEYS[1] -- the tasks are in the run hash
  end
  local tf = redis.call('HGETALL', tk)
  for j = 1, #tf, 2 do
    if tf[j + 1] == 'PENDING' and string.sub(tf[j], 1, 7) == 'status:' then
      local name = string.sub(tf[j], 8)
      redis.call('HSET', tk, tf[j], 'CANCELLED', 'ended:' .. name, ARGV[1], 'error:' .. name, ARGV[5])
    end
  end
  local t = redis.call('TIME')
  local at = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[3]))
  for i = 1, 3 do
    redis.call('PEXPIREAT', KEYS[i], at)
  end
  redis.call('ZADD', KEYS[5], at, f[5])
  redis.call('ZADD', KEYS[11], 0, f[2])
  if redis.call('HINCRBY', KEYS[12], f[4], -1) <= 0 then
    redis.call('HDEL', KEYS[12], f[4])
  end
  if f[6] then
    redis.call('XDEL', KEYS[13], f[6])
  end
elseif status == 'RUNNING' then
  to, from = 'CANCELLING', KEYS[7]
  redis.call('HSET', KEYS[1], 'status', to)
  redis.call('ZADD', KEYS[8], 0, f[2])
else
  return redis.error_reply('CONFLICT ' .. status)
end
redis.call('ZREM', from, f[2])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[2], '*',
  'run_id', f[3], 'flow', f[4], 'status', to, 'time', ARGV[1])
redis.call('PUBLISH', ARGV[4], f[3])
return to
