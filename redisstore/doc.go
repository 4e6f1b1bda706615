// Package redisstore provides [Store], the engine's [engine.Store] (and
// [engine.CancelNotifier]) on Redis, for `pyoco server` and `pyoco worker`
// processes that share one Redis or Redis Cluster (any
// redis.UniversalClient).
//
// Runs are hashes, their tasks a hash per run, their logs a capped stream per
// run, status changes an events stream, and listings sorted-set indexes (all
// runs, per status, per flow, per tag) paged newest first by cursor. Every
// change of a run's status updates its hash, moves it between indexes and
// appends its event in one Lua script (lua/*.lua, each with a KEYS/ARGV/reply
// header), and every key a script touches carries one hash tag — the
// namespace's "{namespace}", or with [Config.Partitions] > 1 its run's
// partition's "{namespace:p<k>}" — so each script is atomic on Cluster too,
// and a partitioned namespace spreads over the Cluster's masters
// (partition.go). Finished runs expire after
// [Config.Retention] and are swept out of the indexes, leaving no garbage.
// docs/redis.md documents the key layout, the scripts and the error mapping.
//
// Errors wrap the engine's sentinels: [engine.ErrNotFound],
// [engine.ErrConflict], [engine.ErrBadCursor], and [engine.ErrUnavailable]
// when Redis cannot be reached (one function, interpretError, maps them).
//
// The package is checked by [storetest.Run] against a real redis-server and a
// real 3-node Redis Cluster, with one partition and with six
// (internal/redistest).
//
// redisstore imports engine, go-redis and the standard library; it must not
// import api, webhooks, plugins, telemetry or cmd.
//
// [storetest.Run]: https://pkg.go.dev/github.com/pyoco/pyoco/engine/storetest#Run
package redisstore
