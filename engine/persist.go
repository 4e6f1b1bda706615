// The execution's writes to the store: retried while the store is down,
// skipped once ownership is lost.

package engine

import (
	"context"
	"errors"
	"github.com/pyoco/pyoco/internal/backoff"
	"time"
)

// taskUpdate hands a task change to the execution's writer, which writes
// it with the next write (see [writer]).
func (x *execution) taskUpdate(p *TaskUpdateParams) {
	x.w.later(p)
}

// loseOwnership stops the run after a write was refused with ErrConflict:
// the run is no longer this execution's.
func (x *execution) loseOwnership() {
	if x.ownerLost.CompareAndSwap(false, true) {
		x.omu.Lock()
		stop := x.stop
		x.omu.Unlock()
		if stop != nil {
			stop(errOwnerLost)
		}
	}
}

// persistRetryFor bounds how long, in all, one execution keeps retrying
// writes while the store is unavailable: long enough to ride out a Redis
// restart or fail-over. Past it the run is handed back.
const persistRetryFor = 15 * time.Minute

// persist runs a store write, retrying while the store is unavailable (with
// jittered back-off from 50ms to 5s; one warning per outage) within the
// execution's outage budget, and returns the last error. A wait ends early
// when the caller's context ends. When the budget is used up (or the wait
// was cut short) the run is stopped to be handed back, and every later
// write fails at once. Other failures are logged, except ErrConflict, which
// the caller handles.
func (x *execution) persist(fn func(context.Context) error) error {
	if x.lost() {
		return errWriteSkipped
	}
	var bo backoff.Backoff // 50ms doubling to 5s, jittered
	warned := false
	for {
		err := fn(x.bg)
		if err == nil {
			x.storeUp()
			if warned {
				x.e.cfg.Logger.InfoContext(x.spanCtx, "store write succeeded after retrying", LogKeyRunID, x.run.ID)
			}
			return nil
		}
		if errors.Is(err, ErrConflict) {
			return err
		}
		if !errors.Is(err, ErrUnavailable) {
			x.e.cfg.Logger.WarnContext(x.spanCtx, "store write", LogKeyRunID, x.run.ID, LogKeyError, err)
			return err
		}
		left := x.storeDown()
		if left <= 0 || x.storeLost.Load() {
			x.giveUp(err)
			return err
		}
		if !warned {
			warned = true
			x.e.cfg.Logger.WarnContext(x.spanCtx, "store write: store unavailable, retrying", LogKeyRunID, x.run.ID, LogKeyError, err)
		}
		if !backoff.Wait(x.ctx, min(bo.Next(), left)) {
			x.giveUp(err)
			return err
		}
	}
}

// storeDown records a failed write and returns how much of the outage
// budget is left.
func (x *execution) storeDown() time.Duration {
	x.omu.Lock()
	defer x.omu.Unlock()
	now := time.Now()
	if x.downSince.IsZero() {
		x.downSince = now
	}
	return persistRetryFor - x.downFor - now.Sub(x.downSince)
}

// storeUp records a successful write: the current outage, if any, is over.
func (x *execution) storeUp() {
	x.omu.Lock()
	defer x.omu.Unlock()
	if !x.downSince.IsZero() {
		x.downFor += time.Since(x.downSince)
		x.downSince = time.Time{}
	}
}

// giveUp stops the run to hand it back: the store is lost.
func (x *execution) giveUp(err error) {
	if x.storeLost.CompareAndSwap(false, true) {
		x.e.cfg.Logger.ErrorContext(x.spanCtx, "store unavailable for too long: handing the run back", LogKeyRunID, x.run.ID, LogKeyError, err)
		x.omu.Lock()
		stop := x.stop
		x.omu.Unlock()
		if stop != nil {
			stop(errStoreLost)
		}
	}
}
