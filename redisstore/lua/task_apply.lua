-- task_apply.lua: not a script of its own; task_update.lua and finish.lua
-- include it (scripts.go splices it in place of their "-- @task_apply"
-- line).
--
-- task_groups(i, m) reads the m change groups of task changes found in ARGV
-- from index i (see task_update.lua for a group's layout) and returns their
-- check fields, in order, and the groups' positions. The caller reads the
-- check fields with the run's own (read_run: one HMGET for the run and its
-- tasks when the tasks live in the run hash), or lets apply_tasks read them.
--
-- apply_tasks(key, checks, groups, have, extra) applies the groups to the
-- hash key (the run hash, or a run's tasks hash in the layout before
-- "layout" 2; see codec.go), in order. have holds the check fields' values
-- when the caller read them, nil for apply_tasks to read them with its own
-- HMGET. A group whose check field does not exist is skipped. The sets of
-- consecutive groups go in one HSET (a later set of a field wins, as in
-- separate calls), and extra (field/value pairs, or nil) goes in the last
-- one, so a batch of n changes costs at most two commands, not 2n, and a
-- run's status change (finish_run.lua) rides in the same HSET. Returns
-- whether the last group's check field existed (true when m is 0).
local function task_groups(i, m)
  local checks, groups = {}, {}
  for u = 1, m do
    local d, s = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
    checks[u] = ARGV[i]
    groups[u] = {i + 3, d, s}
    i = i + 3 + d + s
  end
  return checks, groups
end

-- checks_in_hmget is how many check fields read_run adds to its HMGET (Lua's
-- stack bounds unpack).
local checks_in_hmget = 190

-- read_run(key, fields, checks) is one HMGET of the run hash key: fields
-- and, when there are at most checks_in_hmget of them, the check fields
-- after them. Returns the reply (fields first) and the check fields' values
-- for apply_tasks (nil when they were not read). The caller keeps those only
-- for a run of layout 2, whose tasks are in its run hash.
local function read_run(key, fields, checks)
  local n, m = #fields, #checks
  local merged = m <= checks_in_hmget
  if merged then
    for u = 1, m do
      fields[n + u] = checks[u]
    end
  end
  local f = redis.call('HMGET', key, unpack(fields))
  local have = nil
  if merged then
    have = {}
    for u = 1, m do
      have[u] = f[n + u]
    end
  end
  return f, have
end

local function apply_tasks(key, checks, groups, have, extra)
  local m = #checks
  if not have then
    have = {}
    for from = 1, m, 200 do
      local to = math.min(from + 199, m)
      local got = redis.call('HMGET', key, unpack(checks, from, to))
      for j = 1, #got do
        have[from + j - 1] = got[j]
      end
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
  if extra then
    for j = 1, #extra do
      set[#set + 1] = extra[j]
    end
  end
  flush()
  return m == 0 or (have[m] and true or false)
end
