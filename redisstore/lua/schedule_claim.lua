-- schedule_claim.lua: claim one tick of a flow schedule and, unless the tick
-- is skipped, create its run, in one script: a crash can neither lose the
-- tick's run nor make two, however many servers claim the tick at once.
-- scripts.go splices this prelude into create.lua in place of its
-- "local nkeys, nargs" line; create.lua's body then creates the run.
--
-- KEYS[1 … n-1]  create.lua's KEYS (none when skipping)
-- KEYS[n]        the schedule hash (fields tick, run_id, run_at: Unix ms)
-- ARGV[1 … m-3]  create.lua's ARGV (none when skipping)
-- ARGV[m-2]      the tick claimed (Unix ms)
-- ARGV[m-1]      the last tick the caller read (Unix ms; "" = never claimed)
-- ARGV[m]        "run": create the run; "skip": record the tick only
--
-- The claim holds only if the hash's tick is still ARGV[m-1] and ARGV[m-2]
-- is later. Returns create.lua's reply (the event's stream ID), or "skipped";
-- the error reply "CONFLICT schedule tick <last>" (or "CONFLICT run
-- exists") when the claim does not hold, with nothing written.

local skey = KEYS[#KEYS]
local nkeys, nargs = #KEYS - 1, #ARGV - 3
local tick, prev, mode = ARGV[nargs + 1], ARGV[nargs + 2], ARGV[nargs + 3]
local last = redis.call('HGET', skey, 'tick')
if (last or '') ~= prev or (last and tonumber(tick) <= tonumber(last)) then
  return redis.error_reply('CONFLICT schedule tick ' .. (last or 'none'))
end
if mode == 'skip' then
  redis.call('HSET', skey, 'tick', tick)
  return 'skipped'
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('CONFLICT run exists')
end
redis.call('HSET', skey, 'tick', tick, 'run_id', ARGV[3], 'run_at', ARGV[5])
