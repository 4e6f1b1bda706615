package api

import (
	"sync"
	"time"
)

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
