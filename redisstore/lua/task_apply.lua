-- task_apply.lua: not a script of its own; task_update.lua and finish.lua
-- include it (scripts.go splices it in place of their "-- @task_apply"
-- line).
--
-- apply_tasks(key, i, m) applies the m change groups of task changes found
-- in ARGV from index i (see task_update.lua for a group's layout) to the
-- tasks hash key, in order. A group whose check field does not exist is
-- skipped. All check fields are read with one HMGET and the sets of
-- consecutive groups go in one HSET (a later set of a field wins, as in
-- separate calls), so a batch of n changes costs two commands, not 2n.
-- Returns whether the last group's check field existed.
local function apply_tasks(key, i, m)
  local checks, groups = {}, {}
  for u = 1, m do
    local d, s = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
    checks[u] = ARGV[i]
    groups[u] = {i + 3, d, s}
    i = i + 3 + d + s
  end
  local have = {}
  for from = 1, m, 200 do
    local to = math.min(from + 199, m)
    local got = redis.call('HMGET', key, unpack(checks, from, to))
    for j = 1, #got do
      have[from + j - 1] = got[j]
    end
  end
  local set = {}
  local function flush()
    for from = 1, #set, 200 do
      redis.call('HSET', key, unpack(set, from, math.min(from + 199, #set)))
    end
    set = {}
  end
  for u = 1, m do
    if have[u] then
      local from, d, s = groups[u][1], groups[u][2], groups[u][3]
      if d > 0 then
        flush()
        redis.call('HDEL', key, unpack(ARGV, from, from + d - 1))
      end
      for j = from + d, from + d + s - 1 do
        set[#set + 1] = ARGV[j]
      end
    end
  end
  flush()
  return have[m] and true or false
end
