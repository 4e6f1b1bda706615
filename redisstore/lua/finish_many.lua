-- finish_many.lua: finish several runs of one partition in one script (the
-- finishes of a Store.WriteBatch group commit): for each run, what
-- finish.lua does (finish_run in finish_run.lua), on its own: one run's
-- refusal is its reply and does not stop the others.
--
-- KEYS[1]  events stream       KEYS[2]  expiry sorted set
-- KEYS[3…8] status indexes, in the order PENDING, RUNNING, CANCELLING,
--          COMPLETED, FAILED, CANCELLED
-- KEYS[9]  queued-per-flow hash KEYS[10] queue stream
-- ARGV[1]  run key prefix ("{…}:run:")  ARGV[2]  tasks key prefix
-- ARGV[3]  logs key prefix
-- then per run: its ID, the number c of its arguments, and those c
-- arguments in finish.lua's ARGV order (task groups included).
--
-- The run, tasks and logs keys are named from the IDs, so they are not in
-- KEYS: they share the partition's hash tag, hence its slot.
--
-- Returns one reply per run, in order: finish.lua's reply or its error
-- reply.

-- @task_apply
-- @finish_run

local out = {}
local now = redis_now_ms() -- the retention clock, once for every run
local i = 3
while i < #ARGV do
  local id, c = ARGV[i + 1], tonumber(ARGV[i + 2])
  local K = {ARGV[1] .. id, ARGV[2] .. id, ARGV[3] .. id, KEYS[1], KEYS[2],
    KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]}
  out[#out + 1] = finish_run(K, i + 2, now)
  i = i + 2 + c
end
return out
