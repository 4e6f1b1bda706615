-- queue_take.lua: take up to n queued runs for a worker and start them, in
-- one script (QueuePopParams.Start): an XREADGROUP without BLOCK, then for
-- each entry what start.lua does (start_run in run_start.lua), with the
-- entry as the delivery. A worker whose queue has runs so gets them
-- started in one round trip, not a read and then a start per run.
--
-- KEYS[1]  queue stream        KEYS[2]  events stream
-- KEYS[3]  PENDING index       KEYS[4]  RUNNING index
-- KEYS[5]  queued-per-flow hash
-- ARGV[1]  queue consumer group ARGV[2]  consumer (the worker ID)
-- ARGV[3]  n                   ARGV[4]  run key prefix ("{…}:run:")
-- ARGV[5]  tasks key prefix ("{…}:tasks:")
-- ARGV[6]  at (Unix ms)        ARGV[7]  events stream MAXLEN (approximate)
--
-- The run and tasks keys are named from the entries, so they are not in
-- KEYS: they share the queue's hash tag (its partition's), hence its slot.
--
-- Returns a flat list: entry ID, run ID, run hash, tasks hash (field/value
-- lists) for each run started, in queue order; the entry of a run that is gone or
-- terminal is acknowledged, deleted and left out. An empty list when the
-- queue had nothing new.

-- @run_start

local res = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS', KEYS[1], '>')
local out = {}
if not res then
  return out
end
for _, e in ipairs(res[1][2]) do
  local id, fields, run_id = e[1], e[2], nil
  for i = 1, #fields, 2 do
    if fields[i] == 'run_id' then
      run_id = fields[i + 1]
    end
  end
  if run_id then
    local r = start_run(ARGV[4] .. run_id, ARGV[5] .. run_id, KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[1],
      ARGV[1], id, ARGV[2], ARGV[6], ARGV[7])
    if not r.err then
      out[#out + 1] = id
      out[#out + 1] = run_id
      out[#out + 1] = r[1]
      out[#out + 1] = r[2]
    end
  else
    redis.call('XACK', KEYS[1], ARGV[1], id)
    redis.call('XDEL', KEYS[1], id)
  end
end
return out
