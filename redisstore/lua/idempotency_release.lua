-- idempotency_release.lua: unbind an Idempotency-Key if it is still bound
-- to the given run (compare-and-delete: a newer binding is left alone).
--
-- KEYS[1]  the key's string ("{ns}:idem:<key>")
-- ARGV[1]  run ID
--
-- Returns 1 when the binding was removed, 0 otherwise.

if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
