// Package worker provides [Worker], which takes runs from an
// [engine.Queue] and executes them with an [engine.Engine]: `pyoco worker`
// processes sharing one Redis, and the in-process workers of `pyoco server`
// on the memory store.
//
// A Worker executes up to Config.Concurrency runs at once; a run whose
// tasks all ended gives its slot to the next while its finish is written,
// so it holds up to twice as many. It renews the
// leases of the runs it holds every Config.HeartbeatInterval, announces
// itself in the store's [engine.WorkerRegistry], and reclaims runs whose
// worker stopped heart-beating for Config.Lease (at least one per Lease/2
// even with every slot busy; reclaimed runs take the next freed slot before
// new ones; none during the first Lease after Start); a reclaimed run
// resumes (tasks already SUCCEEDED are not run again), and after
// Config.MaxAttempts takeovers it ends FAILED instead. A store whose
// heartbeat reports the leases taken over by another worker
// (QueueHeartbeatLost, as the Redis store's) makes the worker stop those
// runs at once, without acknowledging or requeuing them.
// [Worker.Stop] stops taking runs, lets the running ones finish until its
// context ends, then hands the rest back for another worker;
// [Worker.StopTaking] is its first step alone. While the store is
// unavailable it backs off with jitter, logging once per outage.
//
// worker imports engine and the standard library only; it must not import
// a store, the API, the CLI or telemetry.
package worker
