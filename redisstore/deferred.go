package redisstore

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/pyoco/pyoco/engine"
)

// taskFlushDelay is how long a deferred task change (see [Store.TaskUpdate])
// waits for the run's next write before it is written on its own.
const taskFlushDelay = 2 * time.Millisecond

// Retrying a deferred flush while Redis is unavailable: from
// deferredRetryMin doubling to deferredRetryMax, for at most
// deferredRetryFor (as long as the engine retries its own writes).
const (
	deferredRetryMin = 50 * time.Millisecond
	deferredRetryMax = 5 * time.Second
	deferredRetryFor = 15 * time.Minute
)

// deferredTasks holds, per run, the task changes TaskUpdate deferred.
type deferredTasks struct {
	mu   sync.Mutex
	runs map[string]*runBatch
}

// runBatch is one run's deferred changes. Its mu is held while they are
// being written, so changes reach Redis in the order TaskUpdate got them.
type runBatch struct {
	mu      sync.Mutex
	args    []any // change groups (see task_update.lua)
	n       int   // number of groups
	timer   *time.Timer
	retry   time.Duration // current back-off
	failing time.Time     // start of the current outage
	gone    bool          // removed from deferredTasks.runs
}

// add defers one change group of runID, arming the flush timer.
func (d *deferredTasks) add(s *Store, runID string, group []any) {
	for {
		d.mu.Lock()
		if d.runs == nil {
			d.runs = make(map[string]*runBatch)
		}
		b := d.runs[runID]
		if b == nil {
			b = &runBatch{}
			d.runs[runID] = b
		}
		d.mu.Unlock()
		b.mu.Lock()
		if b.gone {
			b.mu.Unlock()
			continue
		}
		b.args = append(b.args, group...)
		b.n++
		if b.timer == nil {
			b.timer = time.AfterFunc(taskFlushDelay, func() { d.flush(s, runID, b) })
		}
		b.mu.Unlock()
		return
	}
}

// take returns runID's batch, locked, or nil if it has none. The caller
// writes b.args with its own change and then calls done.
func (d *deferredTasks) take(runID string) *runBatch {
	for {
		d.mu.Lock()
		b := d.runs[runID]
		d.mu.Unlock()
		if b == nil {
			return nil
		}
		b.mu.Lock()
		if !b.gone {
			return b
		}
		b.mu.Unlock()
	}
}

// done releases a batch from take (nil: nothing): kept for a later write
// if keep (Redis was unavailable), else forgotten (written, or refused for
// good: the run is gone or terminal).
func (d *deferredTasks) done(runID string, b *runBatch, keep bool) {
	if b == nil {
		return
	}
	if !keep {
		d.forget(runID, b)
	}
	b.mu.Unlock()
}

// forget removes b (locked by the caller) and stops its timer.
func (d *deferredTasks) forget(runID string, b *runBatch) {
	b.args, b.n, b.gone = nil, 0, true
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	d.mu.Lock()
	if d.runs[runID] == b {
		delete(d.runs, runID)
	}
	d.mu.Unlock()
}

// flush writes b's changes on its own (its timer fired), retrying with
// back-off while Redis is unavailable.
func (d *deferredTasks) flush(s *Store, runID string, b *runBatch) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gone || b.n == 0 {
		return
	}
	b.timer = nil
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	args := append([]any{b.n}, b.args...)
	err := taskUpdateScript.Run(ctx, s.client, []string{s.keys.run(runID), s.keys.tasks(runID)}, args...).Err()
	if err = interpretError(err); errors.Is(err, engine.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		now := time.Now()
		if b.failing.IsZero() {
			b.failing, b.retry = now, deferredRetryMin
		} else {
			b.retry = min(2*b.retry, deferredRetryMax)
		}
		if now.Sub(b.failing) < deferredRetryFor {
			b.timer = time.AfterFunc(b.retry, func() { d.flush(s, runID, b) })
			return
		}
	}
	d.forget(runID, b)
}

// flushRun writes runID's deferred changes now, if it has any (RunGet reads
// this Store's own writes). Errors keep them only if Redis is unavailable.
func (d *deferredTasks) flushRun(ctx context.Context, s *Store, runID string) {
	b := d.take(runID)
	if b == nil {
		return
	}
	var err error
	if b.n > 0 {
		args := append([]any{b.n}, b.args...)
		err = interpretError(taskUpdateScript.Run(ctx, s.client, []string{s.keys.run(runID), s.keys.tasks(runID)}, args...).Err())
	}
	d.done(runID, b, errors.Is(err, engine.ErrUnavailable))
}
