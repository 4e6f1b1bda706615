-- list.lua: one step of RunList. Walks the smallest index that the filters
-- allow (the union of the status indexes, the flow index, the tag index, or
-- the index of all runs), newest first, from just after a position, checks
-- each candidate against the other filters, and returns the matching runs.
-- It stops after `want` matches, when the index is exhausted, or after
-- examining about `budget` candidates (so one call stays short); the caller
-- calls again from the returned position.
--
-- Index members are "<16 hex digits of created ms>:<run id>", all with score
-- 0, so ZRANGE … BYLEX REV gives (CreatedAt, ID) descending and a position
-- is a member.
--
-- KEYS[1]  index of all runs
-- KEYS[2 … 1+s]  the s status indexes of the filter (distinct)
-- then the flow index if ARGV[6] == '1', then the tag index if ARGV[7] == '1'
-- ARGV[1]  position: the member to continue after ("" = from the newest)
-- ARGV[2]  want: how many matching runs to return at most
-- ARGV[3]  budget: candidates to examine before returning
-- ARGV[4]  run hash key prefix (run key = prefix .. id)
-- ARGV[5]  s                   ARGV[6]  has flow ('1'/'0')
-- ARGV[7]  has tag ('1'/'0')   ARGV[8 … 7+s]  the status names
-- ARGV[8+s …]  the run-hash fields to return (a run hash also holds its
--          tasks' fields, which a list does not return)
--
-- Returns {position, exhausted (1/0), run hash 1, run hash 2, …}: the last
-- member examined, whether the walk reached the end of the index, and each
-- matching run's fields as a field/value list (the fields it has). Members whose run hash is gone
-- (expired, not yet swept) or no longer this member are skipped.

local pos, want, budget, prefix = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local s, hasFlow, hasTag = tonumber(ARGV[5]), ARGV[6] == '1', ARGV[7] == '1'

local statusKeys, statusSet = {}, {}
for i = 1, s do
  statusKeys[i] = KEYS[1 + i]
  statusSet[ARGV[7 + i]] = true
end
local fields = {}
for i = 8 + s, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
local k = 2 + s
local flowKey, tagKey
if hasFlow then flowKey = KEYS[k]; k = k + 1 end
if hasTag then tagKey = KEYS[k] end

-- Choose the driver: the smallest candidate set.
local driver, size, kind = {KEYS[1]}, redis.call('ZCARD', KEYS[1]), 'all'
if s > 0 then
  local n = 0
  for _, key in ipairs(statusKeys) do n = n + redis.call('ZCARD', key) end
  driver, size, kind = statusKeys, n, 'status'
end
if hasFlow then
  local n = redis.call('ZCARD', flowKey)
  if n < size then driver, size, kind = {flowKey}, n, 'flow' end
end
if hasTag then
  local n = redis.call('ZCARD', tagKey)
  if n < size then driver, size, kind = {tagKey}, n, 'tag' end
end

-- less compares bytes, as Redis orders members (Lua's < follows the locale).
local function less(a, b)
  if a == b then return false end
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

local filtered = s > 0 or hasFlow or hasTag
local batch = want
if filtered then batch = math.max(want, 64) end
batch = math.max(1, math.min(batch, budget))

local out = {pos, 0}
local matched, examined = 0, 0
while true do
  -- Fetch a batch after pos from each driver index; with several (a union of
  -- status indexes) merge them, and only trust members down to the highest
  -- last member of a full batch: below it an index may hold more.
  local merged, boundary, more = {}, nil, false
  local max = '+'
  if pos ~= '' then max = '(' .. pos end
  for _, key in ipairs(driver) do
    local got = redis.call('ZRANGE', key, max, '-', 'BYLEX', 'REV', 'LIMIT', 0, batch)
    for _, m in ipairs(got) do merged[#merged + 1] = m end
    if #got == batch then
      more = true
      if boundary == nil or less(boundary, got[#got]) then boundary = got[#got] end
    end
  end
  if #driver > 1 then
    table.sort(merged, function(a, b) return less(b, a) end)
  end
  for _, m in ipairs(merged) do
    if boundary and less(m, boundary) then break end
    pos = m
    examined = examined + 1
    local key = prefix .. string.sub(m, 18)
    local f = redis.call('HMGET', key, 'member', 'status')
    local ok = f[1] == m
    if ok and s > 0 then ok = statusSet[f[2]] == true end
    if ok and hasFlow and kind ~= 'flow' then ok = redis.call('ZSCORE', flowKey, m) ~= false end
    if ok and hasTag and kind ~= 'tag' then ok = redis.call('ZSCORE', tagKey, m) ~= false end
    if ok then
      local v = redis.call('HMGET', key, unpack(fields))
      local h = {}
      for j = 1, #fields do
        if v[j] then
          h[#h + 1] = fields[j]
          h[#h + 1] = v[j]
        end
      end
      out[#out + 1] = h
      matched = matched + 1
      if matched == want then
        out[1] = pos
        return out
      end
    end
  end
  out[1] = pos
  if not more then
    out[2] = 1
    return out
  end
  if examined >= budget then
    return out
  end
end
