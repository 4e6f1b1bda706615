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

// IdempotencyRelease implements [engine.IdempotencyStore].
func (m *idempotencyMap) IdempotencyRelease(_ context.Context, key, runID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.keys[key]; ok && e.runID == runID {
		delete(m.keys, key)
	}
	return nil
}

var _ engine.IdempotencyStore = (*idempotencyMap)(nil)

// failedSubmits remembers, for idemStale, the run ids whose Submit failed
// in this process after their Idempotency-Key was bound, so that a retry
// with the key submits again at once instead of waiting for a run that will
// never appear. It is bounded: when full, failures are not remembered, and
// a retry falls back to the age rule of awaitIdempotentRun.
type failedSubmits struct {
	now func() time.Time

	mu  sync.Mutex
	ids map[string]time.Time // run id → when it stops mattering
}

// maxFailedSubmits bounds failedSubmits.
const maxFailedSubmits = 10000

func newFailedSubmits(now func() time.Time) *failedSubmits {
	return &failedSubmits{now: now, ids: make(map[string]time.Time)}
}

func (f *failedSubmits) add(runID string) {
	now := f.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.ids) >= maxFailedSubmits {
		for id, exp := range f.ids {
			if !now.Before(exp) {
				delete(f.ids, id)
			}
		}
		if len(f.ids) >= maxFailedSubmits {
			return
		}
	}
	f.ids[runID] = now.Add(idemStale)
}

func (f *failedSubmits) has(runID string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	exp, ok := f.ids[runID]
	return ok && f.now().Before(exp)
}
