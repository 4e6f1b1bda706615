-- task_update.lua: change one task of a non-terminal run. The caller
-- computes the task-hash fields (see codec.go); the script checks the run and
-- the task and applies the change.
--
-- KEYS[1]  run hash            KEYS[2]  tasks hash
-- ARGV[1]  the task's status field (it exists for every task of the run)
-- ARGV[2]  d = number of fields to delete
-- ARGV[3 … 2+d]   fields to delete
-- ARGV[3+d …]     fields and values to set
--
-- Returns 1; the error replies "NOTFOUND run", "NOTFOUND task" and
-- "CONFLICT <status>" (terminal run) change nothing.

local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return redis.error_reply('NOTFOUND run')
end
if status == 'COMPLETED' or status == 'FAILED' or status == 'CANCELLED' then
  return redis.error_reply('CONFLICT ' .. status)
end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then
  return redis.error_reply('NOTFOUND task')
end
local d = tonumber(ARGV[2])
if d > 0 then
  redis.call('HDEL', KEYS[2], unpack(ARGV, 3, 2 + d))
end
if #ARGV > 2 + d then
  redis.call('HSET', KEYS[2], unpack(ARGV, 3 + d, #ARGV))
end
return 1
