// Package memstore provides [Store], the embedded in-memory [engine.Store]
// used by `pyoco run` and by `pyoco server` when no Redis is configured. It is
// also the fake that engine tests run against; [storetest.Run] checks it
// against the same contract as the Redis store.
//
// State lives in one process and is lost when it exits. Every method takes a
// single mutex, so each change of a run, its indexes and its event happen in
// one atomic step, as the contract in [engine.RunStore] requires.
//
// [WebhookStore] is the in-memory webhook delivery log (a [delivery.Store]),
// over a Store's events; [Idempotency] keeps Idempotency-Key bindings (a
// Store has one, as an [engine.IdempotencyStore]).
//
// memstore imports only the standard library, engine and the leaf package
// webhooks/delivery (which imports only engine); it must not import
// redisstore, api, webhooks, or any other edge package.
//
// [delivery.Store]: https://pkg.go.dev/github.com/pyoco/pyoco/webhooks/delivery#Store
// [storetest.Run]: https://pkg.go.dev/github.com/pyoco/pyoco/engine/storetest#Run
package memstore
