// The watcher: cancel requests and lease loss stop a running execution.

package engine

import (
	"context"
	"errors"
	"sync"
	"time"
)

// watcher cancels the run's context when the caller's ctx ends, when the
// store reports a cancellation request, or when the flow's timeout passes,
// until close is called.
type watcher struct {
	x    *execution
	done chan struct{}

	mu     sync.Mutex
	closed bool
}

// claim stops the run with cause unless the watcher was closed; it reports
// whether it did.
func (w *watcher) claim(stop context.CancelCauseFunc, cause error) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return false
	}
	stop(cause)
	return true
}

// close ends the watcher and returns the cause with which the run's
// context ended (nil if it did not): the final say on the run's outcome.
func (w *watcher) close(runCtx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	close(w.done)
	if runCtx.Err() == nil {
		return nil
	}
	return context.Cause(runCtx)
}

func (w *watcher) watch(ctx, runCtx context.Context, stop context.CancelCauseFunc) {
	x := w.x
	e := x.e
	var timeout <-chan time.Time
	if x.flow.Timeout > 0 {
		left := x.flow.Timeout
		if !x.run.StartedAt.IsZero() {
			left -= time.Since(x.run.StartedAt)
		}
		t := time.NewTimer(max(left, 0))
		defer t.Stop()
		timeout = t.C
	}
	var notify <-chan struct{}
	var poll <-chan time.Time
	if cn, ok := e.store.(CancelNotifier); ok {
		ch, err := cn.RunCancelNotify(runCtx, x.run.ID)
		if err == nil {
			notify = ch
		}
	}
	if notify == nil {
		t := time.NewTicker(e.cfg.CancelPollInterval)
		defer t.Stop()
		poll = t.C
	}
	requested := func(record bool) {
		if !w.claim(stop, ErrRunCancelled) {
			return
		}
		if record {
			// The caller cancelled: record CANCELLING so every reader sees it.
			if _, err := e.store.RunCancel(x.bg, &RunCancelParams{RunID: x.run.ID, At: time.Now().UTC()}); err != nil {
				e.cfg.Logger.WarnContext(x.spanCtx, "record cancellation", LogKeyRunID, x.run.ID, LogKeyError, err)
			}
		}
		e.ins.runStatus(x.bg, flowLabel(x.run.FlowFile, x.run.FlowName), RunCancelling)
		e.report(Progress{Kind: ProgressRunCancelling, RunID: x.run.ID, FlowName: x.run.FlowName, TraceID: x.run.TraceID, Status: string(RunCancelling)})
	}
	for {
		select {
		case <-w.done:
			return
		case <-runCtx.Done():
			return
		case <-ctx.Done():
			cause := context.Cause(ctx)
			if errors.Is(cause, ErrHandBack) {
				w.claim(stop, cause)
				return
			}
			requested(true)
			return
		case <-notify:
			if runCtx.Err() == nil {
				requested(false)
			}
			return
		case <-poll:
			r, err := e.store.RunGet(runCtx, x.run.ID)
			if err == nil && r.Status == RunCancelling {
				requested(false)
				return
			}
		case <-timeout:
			w.claim(stop, ErrRunTimeout)
			return
		}
	}
}
