// Package backoff is pyoco's one retry back-off: a jittered exponential
// delay used by every loop that retries a store call while the store is
// unavailable (the engine's execution writer, the worker's queue loops and
// the webhook dispatcher). It imports only the standard library.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Defaults of a zero [Backoff].
const (
	DefaultMin = 50 * time.Millisecond
	DefaultMax = 5 * time.Second
)

// Backoff yields waits that double from Min to Max, each drawn uniformly
// from the upper half of the current step ([d/2, d]), so that many clients
// that failed together do not retry together. The zero value is ready to
// use (Min 50ms, Max 5s). It is not safe for concurrent use: each retry
// loop owns its own.
type Backoff struct {
	// Min is the first step. Defaults to DefaultMin.
	Min time.Duration
	// Max caps the step. Defaults to DefaultMax.
	Max time.Duration

	d time.Duration
}

// Next returns the wait before the next retry and advances the step.
func (b *Backoff) Next() time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = DefaultMin
	}
	if hi <= 0 {
		hi = DefaultMax
	}
	if hi < lo {
		hi = lo
	}
	if b.d == 0 {
		b.d = lo
	} else {
		b.d = min(b.d*2, hi)
	}
	return b.d/2 + rand.N(b.d/2+1)
}

// Reset starts the steps again from Min (after a success).
func (b *Backoff) Reset() { b.d = 0 }

// Failures reports whether Next was called since the last Reset.
func (b *Backoff) Failures() bool { return b.d != 0 }

// Sleep waits [Backoff.Next], or less when ctx ends first; it reports
// whether the whole wait passed.
func (b *Backoff) Sleep(ctx context.Context) bool {
	return Wait(ctx, b.Next())
}

// Wait sleeps for d or until ctx ends, and reports whether d passed.
func Wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
