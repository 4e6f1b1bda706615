// foreach: a task's iterations, run as rows name[i].

package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// runForeach runs the iterations of foreach task i, each a unit with its
// own row ("name[index]"), attempts and span, at most ForeachParallel (or
// the flow's max_parallel) at once. Iterations that succeeded before a
// takeover are not run again. The task's output is the list of the
// iterations' outputs, in order. A failed iteration with fail_policy stop
// cancels the iterations still running and fails the task; with isolate the
// others go on, and the task fails at the end.
func (x *execution) runForeach(runCtx context.Context, i int, w *taskWorker) taskResult {
	e, run, spec := x.e, x.run, x.plan.specs[i]
	name := spec.Name
	v, err := spec.Foreach.eval(x.exprScope(spec.Foreach, nil, nil))
	if err != nil {
		return x.endTask(i, TaskFailed, "foreach: "+err.Error())
	}
	items, ok := normalizeJSON(v).([]any)
	switch {
	case !ok:
		return x.endTask(i, TaskFailed, fmt.Sprintf("foreach: expression %s gave %s, not a list", quoteExpr(spec.Foreach.Text), jsonKind(normalizeJSON(v))))
	case len(items) > MaxForeachItems:
		return x.endTask(i, TaskFailed, fmt.Sprintf("foreach: expression %s gave %d items: at most %d", quoteExpr(spec.Foreach.Text), len(items), MaxForeachItems))
	}
	start := time.Now().UTC()
	if st := x.stored(name); st != nil && !st.StartedAt.IsZero() {
		start = st.StartedAt
	}
	x.taskUpdate(&TaskUpdateParams{RunID: run.ID, Task: name, Status: TaskRunning, StartedAt: start, ResetEnd: true})
	e.report(Progress{Kind: ProgressTaskStarted, RunID: run.ID, FlowName: run.FlowName, TraceID: run.TraceID, Task: name, Status: string(TaskRunning)})

	outs := make([]any, len(items))
	errs := make([]string, len(items))
	var todo []int
	for k := range items {
		st := x.stored(IterationName(name, k))
		switch {
		case st == nil:
			todo = append(todo, k)
		case st.Status == TaskSucceeded:
			if len(st.Output) > 0 {
				if err := json.Unmarshal(st.Output, &outs[k]); err != nil {
					return x.endTask(i, TaskFailed, fmt.Sprintf("decode stored output of %s: %v", st.Name, err))
				}
			}
		case st.Status == TaskFailed || st.Status == TaskSkipped:
			errs[k] = st.Error
		default:
			// Left RUNNING (or CANCELLED) by a lost worker: run it again.
			x.closeAttempts(st)
			todo = append(todo, k)
		}
	}

	par := spec.ForeachParallel
	if par <= 0 {
		par = x.flow.MaxParallel
	}
	if par <= 0 {
		par = DefaultMaxParallel
	}
	par = min(par, max(len(todo), 1))
	ictx, stopIters := context.WithCancelCause(runCtx)
	defer stopIters(nil)
	next := make(chan int)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		results = make([]taskResult, len(items))
	)
	for slot := range par {
		wg.Go(func() {
			iw := w
			if slot > 0 {
				iw = &taskWorker{}
				defer iw.stop()
			}
			for k := range next {
				if ictx.Err() != nil {
					continue // stopped: start no more iterations
				}
				u := &unit{i: i, row: IterationName(name, k), it: &Iteration{Index: k, Item: items[k]}}
				r := x.runUnit(ictx, u, iw)
				mu.Lock()
				results[k] = r
				mu.Unlock()
				if r.status == TaskFailed && spec.FailPolicy != FailIsolate {
					stopIters(fmt.Errorf("iteration %s failed", u.row))
				}
			}
		})
	}
feed:
	for _, k := range todo {
		if ictx.Err() != nil {
			break
		}
		select {
		case next <- k:
		case <-ictx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()

	failed := -1
	for _, k := range todo {
		r := results[k]
		switch r.status {
		case TaskSucceeded:
			outs[k] = r.out
		case "":
			// Never started: the iterations were stopped.
		default:
			errs[k] = r.err
		}
	}
	for k, msg := range errs {
		if msg != "" && failed < 0 && x.iterFailed(results[k], x.stored(IterationName(name, k))) {
			failed = k
		}
	}
	if failed >= 0 {
		return x.endTask(i, TaskFailed, fmt.Sprintf("iteration %s failed: %s", IterationName(name, failed), errs[failed]))
	}
	if runCtx.Err() != nil {
		return x.endTask(i, TaskCancelled, "cancelled: "+context.Cause(runCtx).Error())
	}
	raw, out, err := encodeOutput(outs, e.cfg.OutputMaxBytes)
	if err != nil {
		return x.endTask(i, TaskFailed, "foreach: the list of outputs: "+err.Error())
	}
	end := time.Now().UTC()
	x.mu.Lock()
	x.outputs[name] = out
	x.mu.Unlock()
	x.taskUpdate(&TaskUpdateParams{RunID: run.ID, Task: name, Status: TaskSucceeded, EndedAt: end, Output: raw})
	e.report(Progress{Kind: ProgressTaskFinished, RunID: run.ID, FlowName: run.FlowName, TraceID: run.TraceID, Task: name, Status: string(TaskSucceeded), Duration: end.Sub(start)})
	return taskResult{i: i, status: TaskSucceeded}
}

// iterFailed reports whether an iteration ended FAILED, in this execution
// (r) or before it (st).
func (x *execution) iterFailed(r taskResult, st *TaskState) bool {
	if r.status != "" {
		return r.status == TaskFailed
	}
	return st != nil && st.Status == TaskFailed
}
