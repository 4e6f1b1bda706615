-- get.lua: read a run and its tasks in one consistent snapshot.
--
-- KEYS[1]  run hash            KEYS[2]  tasks hash (read only for a run
--          stored before layout 2, which keeps its tasks in its run hash)
--
-- Returns {run hash as field/value list, tasks hash as field/value list
-- (empty for layout 2)};
-- the error reply "NOTFOUND run" if the run hash does not exist.

local run = redis.call('HGETALL', KEYS[1])
if #run == 0 then
  return redis.error_reply('NOTFOUND run')
end
for i = 1, #run, 2 do
  if run[i] == 'layout' and run[i + 1] == '2' then
    return {run, {}} -- the tasks are in the run hash
  end
end
return {run, redis.call('HGETALL', KEYS[2])}
