-- task_update.lua: apply one or more task changes to a non-terminal run, in
-- order. The caller computes the task-hash fields (see codec.go); the script
-- checks the run and each task and applies the changes. Earlier changes are
-- ones the Store deferred (terminal task statuses, see deferred.go): one of
-- a task that does not exist is skipped.
--
-- KEYS[1]  run hash            KEYS[2]  tasks hash
-- ARGV[1]  m = number of changes, then m groups of:
--            the task's status field (it exists for every task of the run),
--            d = number of fields to delete, s = number of set arguments,
--            d fields to delete, s fields and values to set
--
-- Returns 1; the error replies "NOTFOUND run" and "CONFLICT <status>"
-- (terminal run) change nothing; "NOTFOUND task" (the last change's task)
-- leaves the earlier changes applied.

local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return redis.error_reply('NOTFOUND run')
end
if status == 'COMPLETED' or status == 'FAILED' or status == 'CANCELLED' then
  return redis.error_reply('CONFLICT ' .. status)
end
local m, i = tonumber(ARGV[1]), 2
for u = 1, m do
  local field, d, s = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local from = i + 3
  i = from + d + s
  if redis.call('HEXISTS', KEYS[2], field) == 0 then
    if u == m then
      return redis.error_reply('NOTFOUND task')
    end
  else
    if d > 0 then
      redis.call('HDEL', KEYS[2], unpack(ARGV, from, from + d - 1))
    end
    if s > 0 then
      redis.call('HSET', KEYS[2], unpack(ARGV, from + d, from + d + s - 1))
    end
  end
end
return 1
