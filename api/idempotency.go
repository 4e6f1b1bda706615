package api

import (
	"context"
	"sync"
	"time"

	"github.com/pyoco/pyoco/engine"
)

// idempotencyMap is the in-process [engine.IdempotencyStore] used when the
// store has none: a map with expiry, swept lazily (no goroutine).
type idempotencyMap struct {
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

func newIdempotencyMap(now func() time.Time) *idempotencyMap {
	return &idempotencyMap{now: now, keys: make(map[string]idemEntry)}
}

// IdempotencyGetOrSet implements [engine.IdempotencyStore].
func (m *idempotencyMap) IdempotencyGetOrSet(ctx context.Context, key, runID string, ttl time.Duration) (string, error) {
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

var _ engine.IdempotencyStore = (*idempotencyMap)(nil)
