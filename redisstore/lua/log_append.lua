-- log_append.lua: append a batch of log entries to a run's log stream with
-- consecutive seqs. The seq counter is the run hash's "logseq" field; each
-- entry's stream ID is "0-<seq>", so seq ranges are ID ranges. A terminal
-- run accepts late lines: the stream then gets the run hash's remaining TTL.
--
-- KEYS[1]  run hash            KEYS[2]  logs stream
-- ARGV[1]  logs stream MAXLEN (approximate)
-- ARGV[2]  n = number of entries
-- ARGV[3]  k = number of field/value pairs per entry
-- ARGV[4 …] n groups of 2k arguments: each entry's fields and values
--
-- Returns the seq of the first entry; the error reply "NOTFOUND run".

if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('NOTFOUND run')
end
local n, k2 = tonumber(ARGV[2]), 2 * tonumber(ARGV[3])
local last = redis.call('HINCRBY', KEYS[1], 'logseq', n)
local first = last - n + 1
for i = 0, n - 1 do
  local from = 4 + i * k2
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '0-' .. string.format('%d', first + i),
    unpack(ARGV, from, from + k2 - 1))
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return first
