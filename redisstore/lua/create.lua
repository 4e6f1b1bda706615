-- create.lua: store a new PENDING run, add it to its indexes and record its
-- PENDING event, and queue it for the workers, all at once.
--
-- KEYS[1]  run hash            KEYS[2]  tasks hash
-- KEYS[3]  events stream       KEYS[4]  index of all runs
-- KEYS[5]  PENDING index       KEYS[6]  flow index
-- KEYS[7]  queue stream        KEYS[8]  queued-per-flow hash
-- KEYS[9…] tag indexes (one per distinct tag)
-- ARGV[1]  index member ("<created>:<id>")
-- ARGV[2]  events stream MAXLEN (approximate)
-- ARGV[3]  run ID              ARGV[4]  flow name
-- ARGV[5]  created at (Unix ms, the event's time)
-- ARGV[6]  n = number of run-hash arguments (field, value, field, value…)
-- ARGV[7]  "1" to queue the run, "" not to (a sub-flow's run: its parent
--          runs it)
-- ARGV[8 … 7+n]   run-hash fields and values
-- ARGV[8+n …]     tasks-hash fields and values
--
-- The queue entry ({run_id, flow}) is XADDed to KEYS[7] and its ID kept in
-- the run hash's "qid" field; KEYS[8][flow] counts PENDING runs.
--
-- Returns the event's stream ID; the error reply "CONFLICT run exists" if
-- the run hash exists (nothing is written).
--
-- schedule_claim.lua replaces the next line with its own prelude (the
-- claim of a schedule tick) and reuses the rest: nkeys and nargs are the
-- keys and arguments that belong to this script.
local nkeys, nargs = #KEYS, #ARGV

if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('CONFLICT run exists')
end

-- hset writes ARGV[from…to] (field/value pairs) in bounded chunks, so a run
-- with many tasks never overflows Lua's stack in unpack.
local function hset(key, from, to)
  local i = from
  while i <= to do
    local j = math.min(i + 199, to)
    redis.call('HSET', key, unpack(ARGV, i, j))
    i = j + 1
  end
end

local n = tonumber(ARGV[6])
if ARGV[7] == '1' then
  -- The entry ID rides in the run hash's first HSET (no HSET of its own).
  local qid = redis.call('XADD', KEYS[7], '*', 'run_id', ARGV[3], 'flow', ARGV[4])
  local to = math.min(7 + n, 8 + 197)
  redis.call('HSET', KEYS[1], 'qid', qid, unpack(ARGV, 8, to))
  hset(KEYS[1], to + 1, 7 + n)
else
  hset(KEYS[1], 8, 7 + n)
end
hset(KEYS[2], 8 + n, nargs)

local member = ARGV[1]
for i = 4, 6 do
  redis.call('ZADD', KEYS[i], 0, member)
end
for i = 9, nkeys do
  redis.call('ZADD', KEYS[i], 0, member)
end
redis.call('HINCRBY', KEYS[8], ARGV[4], 1)
return redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*',
  'run_id', ARGV[3], 'flow', ARGV[4], 'status', 'PENDING', 'time', ARGV[5])
