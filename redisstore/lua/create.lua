-- create.lua: store a new PENDING run, add it to its indexes and record its
-- PENDING event, and queue it for the workers, all at once.
--
-- KEYS[1]  run hash (with its tasks' fields: layout 2)
-- KEYS[2]  tasks hash (unused: runs stored before layout 2 had one)
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
-- ARGV[8+n …]     the tasks' fields and values
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

-- The run's fields and its tasks' go in one hash (layout 2: a task's fields
-- are "<kind>:<task>", a run's have no ':'); the layout mark and the queue
-- entry's ID ride in its first HSET.
local first = {'layout', '2'}
if ARGV[7] == '1' then
  first[3] = 'qid'
  first[4] = redis.call('XADD', KEYS[7], '*', 'run_id', ARGV[3], 'flow', ARGV[4])
end
local to = math.min(nargs, 8 + 193)
for i = 8, to do
  first[#first + 1] = ARGV[i]
end
redis.call('HSET', KEYS[1], unpack(first))
hset(KEYS[1], to + 1, nargs)

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
