package redisstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pyoco/pyoco/engine"
)

// taskFlushDelay is how long a deferred task change (see [Store.TaskUpdate])
// waits for the run's next write before it is written on its own. The
// engine issues that write (the next task's start, or RunFinish) within
// microseconds when one follows, so 100µs still merges nearly every end
// with it, while a worker that dies loses an end only within about 100µs
// plus one round trip. A zero delay (written at once from the timer's
// goroutine) raced the engine's own write and cost about 15% of runs/s and
// two more commands per run (bench/queue).
const taskFlushDelay = 100 * time.Microsecond

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
	args    []any  // change groups (see task_update.lua)
	n       int    // number of groups
	fence   string // the deferring delivery's fence (see owners), "" for none
	timer   *time.Timer
	retry   time.Duration // current back-off
	failing time.Time     // start of the current outage
	gone    bool          // removed from deferredTasks.runs
}

// keepBatch reports whether deferred changes whose write failed with err
// must be kept for a later write: every failure but the run being gone
// (ErrNotFound) or refused for good (ErrConflict: terminal, or taken over).
func keepBatch(err error) bool {
	return err != nil && !errors.Is(err, engine.ErrNotFound) && !errors.Is(err, engine.ErrConflict)
}

// writeTasks runs task_update.lua for runID with fence and n change groups.
func (s *Store) writeTasks(ctx context.Context, runID, fence string, n int, groups []any) error {
	args := make([]any, 0, 2+len(groups))
	args = append(append(args, fence, n), groups...)
	return interpretError(taskUpdateScript.Run(ctx, s.client, []string{s.keys.run(runID), s.keys.tasks(runID)}, args...).Err())
}

// add defers one change group of runID, written with fence, arming the
// flush timer. Changes another delivery deferred (a takeover within this
// process) are written first, on their own: their fence decides.
func (d *deferredTasks) add(s *Store, runID, fence string, group []any) {
	for {
		d.mu.Lock()
		if d.runs == nil {
			d.runs = make(map[string]*runBatch)
		}
		b := d.runs[runID]
		if b == nil {
			b = &runBatch{fence: fence}
			d.runs[runID] = b
		}
		d.mu.Unlock()
		b.mu.Lock()
		if b.gone {
			b.mu.Unlock()
			continue
		}
		if b.n > 0 && b.fence != fence {
			s.writeStale(runID, b)
			b.mu.Unlock()
			continue
		}
		b.fence = fence
		b.args = append(b.args, group...)
		b.n++
		if b.timer == nil {
			b.timer = time.AfterFunc(taskFlushDelay, func() { d.flush(s, runID, b) })
		}
		b.mu.Unlock()
		return
	}
}

// writeStale writes b (locked) on its own, once, and forgets it: its
// changes came from another delivery of the run than the caller's.
func (s *Store) writeStale(runID string, b *runBatch) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.writeTasks(ctx, runID, b.fence, b.n, b.args)
	s.deferred.forget(runID, b)
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

// takeFor is take for a write with fence: a batch deferred under another
// fence is written on its own first, and nil returned.
func (s *Store) takeFor(runID, fence string) *runBatch {
	b := s.deferred.take(runID)
	if b != nil && b.n > 0 && b.fence != fence {
		s.writeStale(runID, b)
		b.mu.Unlock()
		return nil
	}
	return b
}

// done releases a batch from take (nil: nothing): kept for a later write
// if keep (the write failed, see keepBatch), else forgotten (written, or
// refused for good: the run is gone, terminal or taken over).
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
// back-off while the write fails (see keepBatch), for deferredRetryFor.
func (d *deferredTasks) flush(s *Store, runID string, b *runBatch) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gone || b.n == 0 {
		return
	}
	b.timer = nil
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.writeTasks(ctx, runID, b.fence, b.n, b.args); keepBatch(err) {
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
// this Store's own writes; a hand-back or ack must not leave a finished
// task to be run again). The write is not cancelled with ctx. It returns
// the write's error if the changes were kept for a later write (see
// keepBatch), else nil.
func (d *deferredTasks) flushRun(ctx context.Context, s *Store, runID string) error {
	b := d.take(runID)
	if b == nil {
		return nil
	}
	var err error
	if b.n > 0 {
		err = s.writeTasks(context.WithoutCancel(ctx), runID, b.fence, b.n, b.args)
	}
	keep := keepBatch(err)
	d.done(runID, b, keep)
	if keep {
		return err
	}
	return nil
}

// Flush writes every task change this Store deferred (see
// [Store.TaskUpdate]) now, and returns when they are written. Call it
// before a worker process exits, so no finished task's end is lost. Changes
// whose write fails are kept (and retried by their timer); the error wraps
// [engine.ErrUnavailable] when one of them failed so.
func (s *Store) Flush(ctx context.Context) error {
	s.deferred.mu.Lock()
	ids := make([]string, 0, len(s.deferred.runs))
	for id := range s.deferred.runs {
		ids = append(ids, id)
	}
	s.deferred.mu.Unlock()
	var errs []error
	for _, id := range ids {
		b := s.deferred.take(id)
		if b == nil {
			continue
		}
		var err error
		if b.n > 0 {
			err = s.writeTasks(ctx, id, b.fence, b.n, b.args)
		}
		keep := keepBatch(err)
		s.deferred.done(id, b, keep)
		if keep {
			errs = append(errs, fmt.Errorf("run %s: %w", id, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("flush deferred task changes: %w", err)
	}
	return nil
}

// handBackFlush writes runID's deferred changes before its lease is
// acknowledged or handed back, so the next worker reads every finished
// task as finished. A failure wraps [engine.ErrUnavailable]: the caller
// retries, and must not settle the lease before; unless ctx has ended, then
// it wraps ctx's error.
func (s *Store) handBackFlush(ctx context.Context, runID string) error {
	err := s.deferred.flushRun(ctx, s, runID)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		// The caller gave up: it cannot retry, so no ErrUnavailable (the
		// changes stay deferred; their timer goes on writing them).
		return fmt.Errorf("flush deferred task changes: %w (%v)", ctx.Err(), err)
	}
	if errors.Is(err, engine.ErrUnavailable) {
		return fmt.Errorf("flush deferred task changes: %w", err)
	}
	return fmt.Errorf("flush deferred task changes: %w: %w", engine.ErrUnavailable, err)
}
