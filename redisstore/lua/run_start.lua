-- run_start.lua: not a script of its own; start.lua and queue_take.lua
-- include it (scripts.go splices it in place of their "-- @run_start"
-- line).
--
-- start_run(run, tasks, events, pending, running, queued, queue, group,
-- entry, worker, at, maxlen) hands a run to a worker: PENDING becomes
-- RUNNING (StartedAt set, moved from the PENDING to the RUNNING index,
-- RUNNING event recorded); a RUNNING or CANCELLING run (a takeover) keeps
-- its status and records no event. Either way attempt is incremented and
-- worker set. The entry ("" for none) of a run that is gone or terminal is
-- acknowledged and deleted. Arguments are key names and ARGV values, as
-- documented in start.lua.
--
-- Returns {run hash, tasks hash} as field/value lists, after the change (the
-- tasks hash empty for a run of layout 2, whose tasks are in its run hash), or
-- the error reply "NOTFOUND run" or "CONFLICT <status>" (a terminal run).
local function start_run(run, tasks, events, pending, running, queued, queue, group, entry, worker, at, maxlen)
  local f = redis.call('HMGET', run, 'status', 'member', 'id', 'flow', 'attempt', 'layout')
  local status = f[1]
  if not status or status == 'COMPLETED' or status == 'FAILED' or status == 'CANCELLED' then
    if entry ~= '' then
      redis.call('XACK', queue, group, entry)
      redis.call('XDEL', queue, entry)
    end
    if not status then
      return redis.error_reply('NOTFOUND run')
    end
    return redis.error_reply('CONFLICT ' .. status)
  end
  local attempt = string.format('%d', (tonumber(f[5]) or 0) + 1)
  if status == 'PENDING' then
    redis.call('HSET', run, 'status', 'RUNNING', 'started', at, 'attempt', attempt, 'worker', worker)
    redis.call('ZREM', pending, f[2])
    redis.call('ZADD', running, 0, f[2])
    if redis.call('HINCRBY', queued, f[4], -1) <= 0 then
      redis.call('HDEL', queued, f[4])
    end
    redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*',
      'run_id', f[3], 'flow', f[4], 'status', 'RUNNING', 'time', at)
  else
    redis.call('HSET', run, 'attempt', attempt, 'worker', worker)
  end
  if f[6] == '2' then
    return {redis.call('HGETALL', run), {}} -- the tasks are in the run hash
  end
  return {redis.call('HGETALL', run), redis.call('HGETALL', tasks)}
end
