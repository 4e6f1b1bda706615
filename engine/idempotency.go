package engine

import (
	"context"
	"time"
)

// IdempotencyStore is an optional [Store] capability that remembers which
// run a client's Idempotency-Key created, so that a retried submit returns
// the same run instead of creating another (SPEC §4, POST /runs).
//
// A store shared by several API servers (Redis) should implement it, so
// that every server sees the same keys; without it the API keeps the keys
// in its own process.
//
// The value bound is opaque to the store: the API binds "<run id>
// <request hash>" so that the same key with another request is refused.
type IdempotencyStore interface {
	// IdempotencyGetOrSet atomically binds key to runID for ttl unless key
	// is already bound. It returns the run id bound earlier (existing), or
	// "" when this call made the binding. Errors wrap [ErrUnavailable] when
	// the store cannot be reached.
	IdempotencyGetOrSet(ctx context.Context, key, runID string, ttl time.Duration) (existing string, err error)
	// IdempotencyRelease unbinds key if it is still bound to runID (an
	// atomic compare-and-delete: a binding made since is left alone). The
	// API calls it when the submit the binding was made for failed, or
	// when it finds a binding whose run never appeared, so that a retry
	// with the key can submit again.
	IdempotencyRelease(ctx context.Context, key, runID string) error
}
