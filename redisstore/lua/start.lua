-- start.lua: hand a run to a worker (start_run in run_start.lua). PENDING
-- becomes RUNNING (StartedAt set, moved from the PENDING to the RUNNING
-- index, RUNNING event recorded); a RUNNING or CANCELLING run (a takeover)
-- keeps its status and records no event. Either way attempt is incremented
-- and worker set.
--
-- When the worker passes the queue entry that delivered the run (ARGV[5]),
-- the entry of a run that is gone or terminal (cancelled or finished while
-- it was being delivered) is acknowledged and deleted here, so the worker
-- needs no separate check or ack for it.
--
-- KEYS[1]  run hash            KEYS[2]  tasks hash
-- KEYS[3]  events stream
-- KEYS[4]  PENDING index       KEYS[5]  RUNNING index
-- KEYS[6]  queued-per-flow hash (decremented when PENDING ends)
-- KEYS[7]  queue stream
-- ARGV[1]  worker ID           ARGV[2]  at (Unix ms)
-- ARGV[3]  events stream MAXLEN (approximate)
-- ARGV[4]  queue consumer group
-- ARGV[5]  queue entry ID ("" when the caller has none)
--
-- Returns {run hash, tasks hash} as field/value lists, after the change;
-- the error replies "NOTFOUND run" and "CONFLICT <status>" (terminal run)
-- change nothing but the entry's acknowledgement.

-- @run_start

return start_run(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7],
  ARGV[4], ARGV[5], ARGV[1], ARGV[2], ARGV[3])
