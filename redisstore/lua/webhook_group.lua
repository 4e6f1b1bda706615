-- webhook_group.lua: create an endpoint's consumer group on the run-events
-- stream at its end ("$"), with its entries-read counter set to the
-- stream's entries-added, so that XINFO GROUPS can tell how many events
-- were trimmed before the group read them.
--
-- KEYS[1]  run-events stream
-- ARGV[1]  group name
--
-- Returns 1 (created) or 0 (it existed).

local added = 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'entries-added' then
      added = info[i + 1]
    end
  end
end
local r = redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '$', 'MKSTREAM', 'ENTRIESREAD', added)
if type(r) == 'table' and r.err then
  if string.sub(r.err, 1, 9) == 'BUSYGROUP' then
    return 0
  end
  return redis.error_reply(r.err)
end
return 1
