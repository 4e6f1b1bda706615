-- get.lua: read a run and its tasks in one consistent snapshot.
--
-- KEYS[1]  run hash            KEYS[2]  tasks hash
--
-- Returns {run hash as field/value list, tasks hash as field/value list};
-- the error reply "NOTFOUND run" if the run hash does not exist.

local run = redis.call('HGETALL', KEYS[1])
if #run == 0 then
  return redis.error_reply('NOTFOUND run')
end
return {run, redis.call('HGETALL', KEYS[2])}
