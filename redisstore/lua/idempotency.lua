-- idempotency.lua: bind an Idempotency-Key to a run unless it is bound.
--
-- KEYS[1]  the key's string ("{ns}:idem:<key>")
-- ARGV[1]  run ID              ARGV[2]  ttl (ms)
--
-- Returns the run ID bound earlier, or false when this call bound it (for
-- ttl, measured on Redis's clock).

local cur = redis.call('GET', KEYS[1])
if cur then
  return cur
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
