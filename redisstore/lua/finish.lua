-- finish.lua: move a non-terminal run to a terminal status: set status,
-- ended and error, move it between status indexes, record the event, and
-- start its retention (PEXPIREAT on the run's keys, entry in the expiry set).
--
-- KEYS[1]  run hash            KEYS[2]  tasks hash
-- KEYS[3]  logs stream         KEYS[4]  events stream
-- KEYS[5]  expiry sorted set
-- KEYS[6…11] status indexes, in the order PENDING, RUNNING, CANCELLING,
--          COMPLETED, FAILED, CANCELLED
-- KEYS[12] queued-per-flow hash  KEYS[13] queue stream (a PENDING run's
--          count is decremented; the run's queue entry is deleted, so a
--          queued run is never picked up)
-- ARGV[1]  new status (COMPLETED, FAILED or CANCELLED)
-- ARGV[2]  at (Unix ms)        ARGV[3]  error text ("" for none)
-- ARGV[4]  events stream MAXLEN (approximate)
-- ARGV[5]  retention (ms)
-- ARGV[6]  queue consumer group
-- ARGV[7]  the queue entry ID of the worker finishing the run ("" for none):
--          acknowledged and deleted, whatever the reply except the fence's,
--          so the worker needs no separate ack
-- ARGV[8]  expected attempt ("" for no check): the fence of task_update.lua.
--          A stale writer gets "CONFLICT owner lost: …" and changes nothing,
--          not even the entry (which the new owner holds under the same ID)
-- ARGV[9]  "1": brief, reply with the run's attempt alone
--          (RunFinishParams.Brief); "": the whole run
-- ARGV[10] m = number of held task changes (see task_update.lua, whose
--          groups follow), applied before the status changes with one HMGET
--          and one HSET (task_apply.lua); one of a task that does not exist
--          is skipped
--
-- Returns {run hash, tasks hash} as field/value lists, after the change,
-- or for a brief finish the run's attempt (a string, "" for none);
-- the error replies "NOTFOUND run", "CONFLICT <status>" (already terminal)
-- and "INVALID status <status>" change nothing but that acknowledgement;
-- "CONFLICT owner lost: …" changes nothing.

local index = {PENDING = 6, RUNNING = 7, CANCELLING = 8, COMPLETED = 9, FAILED = 10, CANCELLED = 11}
local terminal = {COMPLETED = true, FAILED = true, CANCELLED = true}

-- @task_apply

local f = redis.call('HMGET', KEYS[1], 'status', 'member', 'id', 'flow', 'gc', 'qid', 'attempt', 'logseq')
local status, to = f[1], ARGV[1]
if status and ARGV[8] ~= '' and f[7] ~= ARGV[8] then
  return redis.error_reply('CONFLICT owner lost: the run was taken over (attempt ' .. tostring(f[7]) .. ')')
end

if ARGV[7] ~= '' then
  redis.call('XACK', KEYS[13], ARGV[6], ARGV[7])
  redis.call('XDEL', KEYS[13], ARGV[7])
end
if not status then
  return redis.error_reply('NOTFOUND run')
end
if terminal[status] then
  return redis.error_reply('CONFLICT ' .. status)
end
if not terminal[to] then
  return redis.error_reply('INVALID status ' .. to)
end

local m = tonumber(ARGV[10]) or 0
if m > 0 then
  apply_tasks(KEYS[2], 11, m)
end

redis.call('HSET', KEYS[1], 'status', to, 'ended', ARGV[2], 'error', ARGV[3])
if status == 'PENDING' then
  if redis.call('HINCRBY', KEYS[12], f[4], -1) <= 0 then
    redis.call('HDEL', KEYS[12], f[4])
  end
end
if f[6] and f[6] ~= ARGV[7] then
  -- Still queued (PENDING, or handed back), or held by a worker: a deleted
  -- entry is never delivered again, and a held one is dropped when acked or
  -- reclaimed.
  redis.call('XDEL', KEYS[13], f[6])
end
redis.call('ZREM', KEYS[index[status]], f[2])
redis.call('ZADD', KEYS[index[to]], 0, f[2])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*',
  'run_id', f[3], 'flow', f[4], 'status', to, 'time', ARGV[2])

local t = redis.call('TIME')
local at = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[5]))
redis.call('PEXPIREAT', KEYS[1], at)
redis.call('PEXPIREAT', KEYS[2], at)
if f[8] then
  -- The run has log lines (log_append.lua counts them in logseq before it
  -- adds them): no stream, no expiry to set. Later lines get the run's TTL.
  redis.call('PEXPIREAT', KEYS[3], at)
end
redis.call('ZADD', KEYS[5], at, f[5])

if ARGV[9] == '1' then
  return f[7] or ''
end
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}
