package engine

import (
	"context"
	"fmt"
	"time"
)

// Fail ends run id FAILED with msg without executing it: a worker gives up
// on a run whose workers kept stopping (see [Queue]). Tasks that had not
// finished are marked CANCELLED with a note (attempts left RUNNING end
// FAILED, "interrupted: worker lost"), then the run is finished and
// its metrics recorded as [Engine.Execute] would. It returns the finished
// run; an error wrapping [ErrConflict] if the run is already terminal,
// [ErrNotFound] if unknown.
func (e *Engine) Fail(ctx context.Context, id, msg string) (*Run, error) {
	run, err := e.store.RunGet(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("fail run %s: %w", id, err)
	}
	if run.Status.Terminal() {
		return nil, fmt.Errorf("fail run %s: run is %s: %w", id, run.Status, ErrConflict)
	}
	now := time.Now().UTC()
	for name, ts := range run.Tasks {
		if ts.Status.Terminal() {
			continue
		}
		note := "cancelled: the run failed: " + msg
		// Attempts a lost worker left RUNNING end too.
		for _, a := range ts.Attempts {
			if a.Status != TaskRunning {
				continue
			}
			a.Status, a.EndedAt, a.Error = TaskFailed, now, interruptedMsg
			if err := e.store.TaskUpdate(ctx, &TaskUpdateParams{RunID: id, Task: name, Status: TaskCancelled, EndedAt: now, Error: note, Attempt: &a}); err != nil {
				return nil, fmt.Errorf("fail run %s: %w", id, err)
			}
		}
		err := e.store.TaskUpdate(ctx, &TaskUpdateParams{RunID: id, Task: name, Status: TaskCancelled, EndedAt: now, Error: note})
		if err != nil {
			return nil, fmt.Errorf("fail run %s: %w", id, err)
		}
	}
	final, err := e.store.RunFinish(ctx, &RunFinishParams{RunID: id, Status: RunFailed, At: now, Error: msg})
	if err != nil {
		return nil, fmt.Errorf("fail run %s: %w", id, err)
	}
	started := final.StartedAt
	if started.IsZero() {
		started = now
	}
	label := flowLabel(final.FlowFile, final.FlowName)
	e.ins.runStatus(ctx, label, RunFailed)
	e.ins.runEnded(ctx, label, RunFailed, now.Sub(started))
	e.cfg.Logger.WarnContext(ctx, "run failed without executing", LogKeyRunID, id, LogKeyFlow, final.FlowName, LogKeyError, msg)
	e.report(Progress{Kind: ProgressRunFinished, RunID: id, FlowName: final.FlowName, TraceID: final.TraceID, Status: string(RunFailed), Error: msg, Duration: now.Sub(started)})
	return final, nil
}
