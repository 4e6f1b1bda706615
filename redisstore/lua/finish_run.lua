-- finish_run.lua: not a script of its own; finish.lua and finish_many.lua
-- include it (scripts.go splices it in place of their "-- @finish_run"
-- line), after task_apply.lua.
--
-- finish_run(K, base, now) finishes one run as finish.lua documents: K
-- holds its keys in finish.lua's KEYS order, ARGV[base + 1 …] its
-- arguments in finish.lua's ARGV order (task groups from base + 11), now is
-- Redis's clock in Unix ms (redis_now_ms(): one TIME per script). It returns
-- finish.lua's reply, an error reply as a value (redis.error_reply), so a
-- caller over several runs can return each run's own.

local index = {PENDING = 6, RUNNING = 7, CANCELLING = 8, COMPLETED = 9, FAILED = 10, CANCELLED = 11}
local terminal = {COMPLETED = true, FAILED = true, CANCELLED = true}

-- redis_now_ms returns Redis's clock (TIME) in Unix ms: the retention
-- clock.
local function redis_now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function finish_run(K, base, now)
  local m = tonumber(ARGV[base + 10]) or 0
  local checks, groups = task_groups(base + 11, m)
  -- One HMGET reads the run and, when its tasks live in the run hash
  -- (layout 2), the held changes' check fields too.
  local f, have = read_run(K[1], {'status', 'member', 'id', 'flow', 'gc', 'qid', 'attempt', 'logseq', 'layout'}, checks)
  local status, to = f[1], ARGV[base + 1]
  if status and ARGV[base + 8] ~= '' and f[7] ~= ARGV[base + 8] then
    return redis.error_reply('CONFLICT owner lost: the run was taken over (attempt ' .. tostring(f[7]) .. ')')
  end

  if ARGV[base + 7] ~= '' then
    redis.call('XACK', K[13], ARGV[base + 6], ARGV[base + 7])
    redis.call('XDEL', K[13], ARGV[base + 7])
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

  local set = {'status', to, 'ended', ARGV[base + 2], 'error', ARGV[base + 3]}
  local here = f[9] == '2'
  if here then
    -- The task changes and the status change: one HSET of the run hash.
    apply_tasks(K[1], checks, groups, have, set)
  else
    -- A run stored before layout 2: its tasks hash, then the run hash.
    apply_tasks(K[2], checks, groups, nil, nil)
    redis.call('HSET', K[1], unpack(set))
  end
  if status == 'PENDING' then
    if redis.call('HINCRBY', K[12], f[4], -1) <= 0 then
      redis.call('HDEL', K[12], f[4])
    end
  end
  if f[6] and f[6] ~= ARGV[base + 7] then
    -- Still queued (PENDING, or handed back), or held by a worker: a deleted
    -- entry is never delivered again, and a held one is dropped when acked or
    -- reclaimed.
    redis.call('XDEL', K[13], f[6])
  end
  redis.call('ZREM', K[index[status]], f[2])
  redis.call('ZADD', K[index[to]], 0, f[2])
  redis.call('XADD', K[4], 'MAXLEN', '~', ARGV[base + 4], '*',
    'run_id', f[3], 'flow', f[4], 'status', to, 'time', ARGV[base + 2])

  local at = string.format('%d', now + tonumber(ARGV[base + 5]))
  redis.call('PEXPIREAT', K[1], at)
  if not here then
    redis.call('PEXPIREAT', K[2], at)
  end
  if f[8] then
    -- The run has log lines (log_append.lua counts them in logseq before it
    -- adds them): no stream, no expiry to set. Later lines get the run's TTL.
    redis.call('PEXPIREAT', K[3], at)
  end
  redis.call('ZADD', K[5], at, f[5])

  if ARGV[base + 9] == '1' then
    return f[7] or ''
  end
  if here then
    return {redis.call('HGETALL', K[1]), {}}
  end
  return {redis.call('HGETALL', K[1]), redis.call('HGETALL', K[2])}
end
