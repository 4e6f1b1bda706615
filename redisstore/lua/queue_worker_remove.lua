-- queue_worker_remove.lua: forget a worker that stopped cleanly: its
-- registry entries, and its consumer in the queue's group if it holds no
-- entry (a consumer's pending entries must stay reclaimable).
--
-- KEYS[1]  workers sorted set  KEYS[2]  the worker's JSON key
-- KEYS[3]  queue stream
-- ARGV[1]  worker ID (also its consumer name)   ARGV[2]  consumer group
--
-- Returns 1.

redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
if redis.call('EXISTS', KEYS[3]) == 1 then
  local ok, p = pcall(redis.call, 'XPENDING', KEYS[3], ARGV[2], '-', '+', 1, ARGV[1])
  if ok and #p == 0 then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[3], ARGV[2], ARGV[1])
  end
end
return 1
