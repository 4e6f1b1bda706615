package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/codes"
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
	// The run's span (fixed at submit) is emitted here, since no
	// execution will end it; so are the spans of attempts a lost worker
	// never ended.
	sctx, span, fixed := e.startRunSpan(ctx, run,
		AttrRunID.String(run.ID), AttrFlowName.String(run.FlowName),
		AttrRunAttempt.Int(run.Attempt), AttrWorkerID.String(e.cfg.WorkerID),
		AttrCICDPipelineName.String(run.FlowName), AttrCICDPipelineRunID.String(run.ID),
	)
	ended := false
	defer func() {
		if !fixed || ended {
			span.End()
		}
	}()
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
			e.emitInterruptedAttempt(sctx, run, ts, &a)
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
	ended = true
	span.SetAttributes(AttrRunStatus.String(string(RunFailed)), AttrCICDPipelineResult.String(cicdResult(string(RunFailed))))
	span.SetStatus(codes.Error, msg)
	span.RecordError(errors.New(msg))
	label := flowLabel(final.FlowFile, final.FlowName)
	e.ins.runStatus(ctx, label, RunFailed)
	e.ins.runEnded(ctx, label, RunFailed, now.Sub(started))
	e.cfg.Logger.WarnContext(ctx, "run failed without executing", LogKeyRunID, id, LogKeyFlow, final.FlowName, LogKeyError, msg)
	e.report(Progress{Kind: ProgressRunFinished, RunID: id, FlowName: final.FlowName, TraceID: final.TraceID, Status: string(RunFailed), Error: msg, Duration: now.Sub(started)})
	return final, nil
}
