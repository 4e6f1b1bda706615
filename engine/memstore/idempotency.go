package memstore

import (
	"context"
	"sync"
	"time"

	"github.com/pyoco/pyoco/engine"
)

// Idempotency is an in-process [engine.IdempotencyStore]: a map with
// expiry, swept lazily (no goroutine). [Store] keeps one; the API uses a
// standalone one, from [NewIdempotency], for a store that has none. It is
// safe for concurrent use; its bindings are lost when the process exits.
type Idempotency struct {
	now func() time.Time

	mu        sync.Mutex
	keys      map[string]idemEntry
	nextSweep time.Time
}

type idemEntry struct {
	runID   string
	expires time.Time
}

// idemSweepEvery is the least time between two sweeps of expired keys.
const idemSweepEvery = time.Minute

// NewIdempotency returns an empty Idempotency on the wall clock.
func NewIdempotency() *Idempotency {
	return &Idempotency{now: time.Now, keys: make(map[string]idemEntry)}
}

// IdempotencyGetOrSet implements [engine.IdempotencyStore]: it binds key to
// runID for ttl unless key is bound, and returns the run ID bound earlier
// ("" when this call bound it). It fails only when ctx is done.
func (m *Idempotency) IdempotencyGetOrSet(ctx context.Context, key, runID string, ttl time.Duration) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if now.After(m.nextSweep) {
		for k, e := range m.keys {
			if !now.Before(e.expires) {
				delete(m.keys, k)
			}
		}
		m.nextSweep = now.Add(idemSweepEvery)
	}
	if e, ok := m.keys[key]; ok && now.Before(e.expires) {
		return e.runID, nil
	}
	m.keys[key] = idemEntry{runID: runID, expires: now.Add(ttl)}
	return "", nil
}

// IdempotencyRelease implements [engine.IdempotencyStore]: it unbinds key if
// it is still bound to runID.
func (m *Idempotency) IdempotencyRelease(_ context.Context, key, runID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.keys[key]; ok && e.runID == runID {
		delete(m.keys, key)
	}
	return nil
}

// IdempotencyGetOrSet implements [engine.IdempotencyStore] (see
// [Idempotency.IdempotencyGetOrSet]); the bindings are independent of the
// runs' retention.
func (s *Store) IdempotencyGetOrSet(ctx context.Context, key, runID string, ttl time.Duration) (string, error) {
	return s.idem.IdempotencyGetOrSet(ctx, key, runID, ttl)
}

// IdempotencyRelease implements [engine.IdempotencyStore] (see
// [Idempotency.IdempotencyRelease]).
func (s *Store) IdempotencyRelease(ctx context.Context, key, runID string) error {
	return s.idem.IdempotencyRelease(ctx, key, runID)
}

// Interface guards.
var (
	_ engine.IdempotencyStore = (*Idempotency)(nil)
	_ engine.IdempotencyStore = (*Store)(nil)
)
