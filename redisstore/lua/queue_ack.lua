-- queue_ack.lua: acknowledge a queue entry and delete it, so the stream
-- holds only runs that are waiting or held by a worker.
--
-- The fence (see task_update.lua): with an expected attempt, a run whose
-- stored attempt differs was taken over by another worker, which holds the
-- entry under the same ID; the ack is refused and changes nothing.
--
-- KEYS[1]  queue stream        KEYS[2]  the run hash
-- ARGV[1]  consumer group      ARGV[2]  entry ID
-- ARGV[3]  expected attempt ("" for no check)
--
-- Returns the number of entries acknowledged (0 or 1); the error reply
-- "CONFLICT owner lost: …" changes nothing.

if ARGV[3] ~= '' then
  local a = redis.call('HGET', KEYS[2], 'attempt')
  if a and a ~= ARGV[3] then
    return redis.error_reply('CONFLICT owner lost: the run was taken over (attempt ' .. a .. ')')
  end
end
local n = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return n
