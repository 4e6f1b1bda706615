-- schedule_intent.lua: claim one tick of a flow schedule when the namespace
-- has several partitions: the schedule hash (under the base tag) and the
-- tick's run (in its own partition) are in different slots, so no one
-- script can do both. This one claims the tick and records the run to
-- create as an intent; the caller then creates the run (create.lua in its
-- partition) and deletes the intent. A caller that crashes in between
-- leaves the intent, which the next ScheduleGet carries out: create.lua
-- refuses an existing run, so it is created exactly once.
--
-- KEYS[1]  the schedule hash (fields tick, run_id, run_at: Unix ms;
--          intent:<run id>: create.lua's keys and arguments as JSON)
-- ARGV[1]  the tick claimed (Unix ms)
-- ARGV[2]  the last tick the caller read (Unix ms; "" = never claimed)
-- ARGV[3]  "run": record the run; "skip": record the tick only
-- ARGV[4]  run ID               ARGV[5]  run created at (Unix ms)
-- ARGV[6]  the intent (JSON)
--
-- The claim holds only if the hash's tick is still ARGV[2] and ARGV[1] is
-- later. Returns "claimed" or "skipped"; the error reply "CONFLICT
-- schedule tick <last>" when the claim does not hold, with nothing written.

local tick, prev, mode = ARGV[1], ARGV[2], ARGV[3]
local last = redis.call('HGET', KEYS[1], 'tick')
if (last or '') ~= prev or (last and tonumber(tick) <= tonumber(last)) then
  return redis.error_reply('CONFLICT schedule tick ' .. (last or 'none'))
end
if mode == 'skip' then
  redis.call('HSET', KEYS[1], 'tick', tick)
  return 'skipped'
end
redis.call('HSET', KEYS[1], 'tick', tick, 'run_id', ARGV[4], 'run_at', ARGV[5], 'intent:' .. ARGV[4], ARGV[6])
return 'claimed'
