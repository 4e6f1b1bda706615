-- task_update.lua: apply one or more task changes to a non-terminal run, in
-- order. The caller computes the task-hash fields (see codec.go); the script
-- checks the run and each task and applies the changes. Earlier changes are
-- ones the engine's writer held (task ends, see engine/writer.go): one of a
-- task that does not exist is skipped.
--
-- The writer's fence: ARGV[1] is the run's attempt number as the writer's
-- RunStart left it (start.lua increments it on every start), or "" when the
-- writer has none (an API-side write). A different stored attempt means
-- another worker took the run over since: the write is refused.
--
-- KEYS[1]  run hash            KEYS[2]  tasks hash (a run stored before
--          "layout" 2; a run with layout 2 keeps its tasks in its run hash)
-- ARGV[1]  expected attempt ("" for no check)
-- ARGV[2]  m = number of changes (applied with one HMGET and one HSET, see
--          task_apply.lua; with the run's fields when m <= 190), then m
--          groups of:
--            the check field: the task's status field (it exists for every task
--            of the run; for a foreach iteration "name[k]", its task's: the
--            row is created by its first write),
--            d = number of fields to delete, s = number of set arguments,
--            d fields to delete, s fields and values to set
--
-- Returns 1; the error replies "NOTFOUND run", "CONFLICT owner lost: …"
-- (fence) and "CONFLICT <status>" (terminal run) change nothing; "NOTFOUND task" (the last change's task)
-- leaves the earlier changes applied.

-- @task_apply

local m = tonumber(ARGV[2])
local checks, groups = task_groups(3, m)
-- One HMGET reads the run's status, fence and layout and, when the tasks
-- live in the run hash (layout 2), the tasks' check fields too.
local f, have = read_run(KEYS[1], {'status', 'attempt', 'layout'}, checks)
local status = f[1]
if not status then
  return redis.error_reply('NOTFOUND run')
end
if ARGV[1] ~= '' and f[2] ~= ARGV[1] then
  return redis.error_reply('CONFLICT owner lost: the run was taken over (attempt ' .. tostring(f[2]) .. ')')
end
if status == 'COMPLETED' or status == 'FAILED' or status == 'CANCELLED' then
  return redis.error_reply('CONFLICT ' .. status)
end
if m == 0 then
  return 1
end
local key = KEYS[1]
if f[3] ~= '2' then
  key, have = KEYS[2], nil -- a run stored before layout 2: its tasks hash
end
if not apply_tasks(key, checks, groups, have, nil) then
  return redis.error_reply('NOTFOUND task')
end
return 1
