// Running one unit: its task worker, sub-flow children, attempts with
// retries and timeouts, and the task call itself.

package engine

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// taskWorker runs task functions on a goroutine it keeps between attempts;
// an attempt that is abandoned keeps that goroutine, and the next attempt
// gets a new one.
type taskWorker struct {
	fns chan func()
}

// do runs fn on the worker's goroutine.
func (w *taskWorker) do(fn func()) {
	if w.fns == nil {
		fns := make(chan func())
		w.fns = fns
		go func() {
			for fn := range fns {
				fn()
			}
		}()
	}
	w.fns <- fn
}

// stop lets the goroutine end once its current function (if any) returns.
func (w *taskWorker) stop() {
	if w.fns != nil {
		close(w.fns)
		w.fns = nil
	}
}

// unit is what runs attempts: a task, or one iteration of a foreach task.
type unit struct {
	i   int    // the task's index in the plan
	row string // its row in the run's tasks: the task's name, or name[index]
	// it is set for an iteration.
	it *Iteration
}

// runTask runs task i to its final state: every attempt of a plain task
// (or switch), every iteration of a foreach task.
func (x *execution) runTask(runCtx context.Context, i int, w *taskWorker) taskResult {
	if x.plan.specs[i].Foreach != nil {
		return x.runForeach(runCtx, i, w)
	}
	res := x.runUnit(runCtx, &unit{i: i, row: x.plan.names[i]}, w)
	return res
}

// runUnit runs every attempt of u (retries, until rounds) and returns its
// final state.
func (x *execution) runUnit(runCtx context.Context, u *unit, w *taskWorker) taskResult {
	e, run, spec := x.e, x.run, x.plan.specs[u.i]
	prior, rounds := 0, 0
	var first time.Time
	if st := x.stored(u.row); st != nil {
		prior = len(st.Attempts)
		first = st.StartedAt // a takeover keeps the first attempt's start
		for _, a := range st.Attempts {
			if a.Status == TaskSucceeded {
				rounds++ // an until round that ended before the takeover
			}
		}
	}
	def := x.defOf(spec)
	for n, tries := 0, 0; ; n++ {
		attempt := prior + n + 1
		lastRound := spec.Until == nil || rounds+1 >= spec.Repeat.Max
		res, next := x.runAttempt(runCtx, u, w, def, attempt, tries >= spec.Retries, lastRound, &first)
		var delay time.Duration
		switch next {
		case nextRetry:
			if tries >= spec.Retries {
				return res
			}
			delay = retryDelay(spec.RetryDelay, spec.RetryMaxDelay, tries)
			tries++
			e.report(Progress{Kind: ProgressTaskRetrying, RunID: run.ID, FlowName: run.FlowName, TraceID: run.TraceID, Task: u.row, Attempt: attempt, Status: string(TaskFailed), Error: res.err, RetryIn: delay})
		case nextRound:
			rounds++
			tries = 0
			delay = spec.Repeat.Interval
		default:
			return res
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-runCtx.Done():
			t.Stop()
			msg := "cancelled while waiting to retry: " + res.err
			if next == nextRound {
				msg = "cancelled while waiting for the next round"
			}
			return x.endUnit(u, TaskCancelled, msg)
		}
	}
}

// stored is the state of a task row when this execution started (nil if none).
func (x *execution) stored(row string) *TaskState {
	return x.run.Tasks[row]
}

// childRunID is the sub-flow run of attempt n of row: the run of the
// row's last earlier attempt if that one was interrupted (a takeover, a
// hand-back) while its child was still going or after it COMPLETED, so the
// child is resumed rather than started again; otherwise a new run, whose
// ID is derived from the parent's, the row and n (a retry of this write
// finds the same run).
func (x *execution) childRunID(row string, n int) string {
	if st := x.stored(row); st != nil && len(st.Attempts) > 0 {
		last := st.Attempts[len(st.Attempts)-1]
		if last.ChildRunID != "" && (last.Error == interruptedMsg || last.Status == TaskCancelled || last.Status == TaskRunning) {
			if c, err := x.e.store.RunGet(x.bg, last.ChildRunID); err == nil && (!c.Status.Terminal() || c.Status == RunCompleted) {
				return last.ChildRunID
			}
		}
	}
	return ChildRunID(x.run.ID, row, n)
}

// ChildRunID is the ID of the sub-flow run of attempt n of task row of run
// parent: a UUID (version 8) hashed from the three.
func ChildRunID(parent, row string, n int) string {
	sum := sha256.Sum256([]byte(parent + "\x00" + row + "\x00" + strconv.Itoa(n)))
	var u [16]byte
	copy(u[:], sum[:16])
	u[6] = (u[6] & 0x0f) | 0x80 // version 8
	u[8] = (u[8] & 0x3f) | 0x80 // variant 10
	return formatUUID(u)
}

// childDef runs spec's sub-flow as run id: created (a child in this run's
// trace, under the attempt's span) unless it exists, executed here unless it
// ended. Cancelling the attempt cancels the child; a hand-back hands it
// back too (the next attempt resumes it). The output is the child's task
// outputs by task.
func (x *execution) childDef(spec *TaskSpec, id string) *TaskDef {
	return &TaskDef{Name: spec.Use, Run: func(ctx context.Context, tc *TaskContext, inputs map[string]any) (any, error) {
		e := x.e
		child, err := e.store.RunGet(x.bg, id)
		if errors.Is(err, ErrNotFound) {
			child, err = e.Submit(x.bg, &SubmitParams{
				RunID: id, Flow: spec.SubFlow, Params: inputs, ParentRunID: x.run.ID,
				TraceParent: tc.TraceParent, TraceID: x.run.TraceID, Tags: []string{"parent:" + x.run.ID},
			})
			if errors.Is(err, ErrConflict) {
				child, err = e.store.RunGet(x.bg, id)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("sub-flow run %s: %w", id, err)
		}
		if !child.Status.Terminal() {
			final, err := e.Execute(ctx, &ExecuteParams{RunID: id, WorkerID: x.run.WorkerID})
			switch {
			case final != nil && final.Status.Terminal():
				child = final
			case err != nil:
				return nil, fmt.Errorf("sub-flow run %s: %w", id, err)
			default:
				return nil, fmt.Errorf("sub-flow run %s stopped %s", id, final.Status)
			}
		}
		switch child.Status {
		case RunCompleted:
		case RunCancelled:
			return nil, &noRetryError{fmt.Sprintf("sub-flow run %s CANCELLED", id)}
		default:
			return nil, fmt.Errorf("sub-flow run %s %s: %s", id, child.Status, child.Error)
		}
		outs := make(map[string]any, len(child.Tasks))
		for name, st := range child.Tasks {
			if st.Status != TaskSucceeded {
				continue
			}
			var v any
			if len(st.Output) > 0 {
				if err := json.Unmarshal(st.Output, &v); err != nil {
					return nil, fmt.Errorf("sub-flow run %s: output of %s: %w", id, name, err)
				}
			}
			outs[name] = v
		}
		return outs, nil
	}}
}

// defOf is the implementation of spec: the registry's, or a switch's.
func (x *execution) defOf(spec *TaskSpec) *TaskDef {
	if spec.SubFlow != nil {
		return nil // set per attempt (childDef)
	}
	if spec.Switch != nil {
		return &TaskDef{Name: UseSwitch, Run: func(context.Context, *TaskContext, map[string]any) (any, error) {
			return x.decide(spec)
		}}
	}
	def, _ := x.e.reg.Lookup(spec.Use)
	return def
}

// retryDelay is delay·2^i capped at maxDelay (a task's retry_delay; no jitter: the flow says it).
func retryDelay(delay, maxDelay time.Duration, i int) time.Duration {
	if maxDelay <= 0 {
		maxDelay = DefaultRetryMaxDelay
	}
	d := delay
	for ; i > 0 && d < maxDelay; i-- {
		d *= 2
	}
	return min(d, maxDelay)
}

// noRetryError is a task failure that retrying cannot fix.
type noRetryError struct{ msg string }

func (e *noRetryError) Error() string { return e.msg }

// attemptIO is what one attempt hands its task function, allocated together.
type attemptIO struct {
	gate           attemptGate
	stdout, stderr lineWriter
	log            taskLogHandler
	tc             TaskContext
}

// attemptOutcome is what the goroutine running a task function hands back.
type attemptOutcome struct {
	raw json.RawMessage
	out any
	err error
	// late is the cause with which the attempt's context had ended when
	// the function returned (nil if it had not).
	late error
}

// runAttempt runs attempt number n of u and records it. last says whether
// the unit has no retries left, lastRound whether no until round is left.
func (x *execution) runAttempt(runCtx context.Context, u *unit, w *taskWorker, def *TaskDef, n int, last, lastRound bool, first *time.Time) (res taskResult, nx next) {
	e, run, spec := x.e, x.run, x.plan.specs[u.i]
	i, name := u.i, u.row
	use := ""
	if u.it != nil {
		use = spec.Use // an iteration's row is created by its first write
	}
	start := time.Now().UTC()
	if first.IsZero() {
		*first = start
	}
	attrs := []attribute.KeyValue{
		AttrRunID.String(run.ID), AttrFlowName.String(run.FlowName),
		AttrTaskName.String(spec.Name), AttrTaskUse.String(spec.Use), AttrTaskAttempt.Int(n),
		AttrWorkerID.String(e.cfg.WorkerID),
		AttrCICDPipelineName.String(run.FlowName), AttrCICDPipelineRunID.String(run.ID),
		AttrCICDPipelineTaskName.String(name),
	}
	if u.it != nil {
		attrs = append(attrs, AttrTaskIndex.Int(u.it.Index))
	}
	opts := []trace.SpanStartOption{trace.WithAttributes(attrs...)}
	if l := x.prevAttempt(name).linkOpt(x.runSpan.SpanContext()); l != nil {
		opts = append(opts, l)
	}
	ctx, span := e.tracer.Start(runCtx, "task "+name, opts...)
	defer span.End()
	sc := span.SpanContext()
	x.setPrevAttempt(name, sc)
	att := Attempt{Number: n, Status: TaskRunning, StartedAt: start, WorkerID: e.cfg.WorkerID, SpanID: spanIDString(sc)}
	if spec.SubFlow != nil {
		att.ChildRunID = x.childRunID(u.row, n)
		def = x.childDef(spec, att.ChildRunID)
	}
	x.w.start(&TaskUpdateParams{RunID: run.ID, Task: name, Use: use, Status: TaskRunning, StartedAt: *first, Attempt: &att, ResetEnd: true})
	e.report(Progress{Kind: ProgressTaskStarted, RunID: run.ID, FlowName: run.FlowName, TraceID: run.TraceID, Task: name, Attempt: n, Status: string(TaskRunning)})

	var status TaskStatus
	var errMsg string
	var output json.RawMessage
	var decoded any
	again := false
	retry := true
	func() {
		if x.lost() {
			// The start could not be stored (the run was taken over, or the
			// store is lost): the task must not run.
			status, errMsg, retry = TaskCancelled, "cancelled: "+errWriteSkipped.Error(), false
			return
		}
		if def == nil {
			status, errMsg, retry = TaskFailed, fmt.Sprintf("unknown task %q", spec.Use), false
			return
		}
		inputs := map[string]any{}
		if len(spec.Inputs) > 0 {
			x.mu.Lock()
			scope := &RefScope{Outputs: x.outputs, Params: run.Params, Env: e.cfg.LookupEnv, Iteration: u.it}
			resolved, err := ResolveInputs(spec.Inputs, scope)
			x.mu.Unlock()
			if err == nil {
				inputs, err = normalizeInputs(resolved)
			}
			if err != nil {
				status, errMsg, retry = TaskFailed, err.Error(), false
				return
			}
		}
		actx := ctx
		if spec.Timeout > 0 {
			var cancel context.CancelFunc
			actx, cancel = context.WithTimeoutCause(ctx, spec.Timeout, ErrTaskTimeout)
			defer cancel()
		}
		// One allocation for the attempt's writers and context.
		aio := &attemptIO{}
		gate := &aio.gate
		stdout, stderr := &aio.stdout, &aio.stderr
		*stdout = lineWriter{ctx: actx, sink: x.sink, gate: gate, task: name, stream: StreamStdout, level: "INFO", sc: sc}
		*stderr = lineWriter{ctx: actx, sink: x.sink, gate: gate, task: name, stream: StreamStderr, level: "INFO", sc: sc}
		aio.log = taskLogHandler{sink: x.sink, gate: gate, task: name, sc: sc}
		tc := &aio.tc
		*tc = TaskContext{
			RunID: run.ID, FlowName: run.FlowName, Task: name, Use: spec.Use, Attempt: n,
			Params:      run.Params,
			Logger:      slog.New(&aio.log),
			Stdout:      stdout,
			Stderr:      stderr,
			TraceParent: FormatTraceParent(sc),
		}
		// The function runs in its own goroutine so that one that ignores
		// its context cannot hold the run: once the context ends it has
		// TaskGracePeriod to return, then it is abandoned (its logs are
		// dropped, its result ignored).
		done := make(chan attemptOutcome, 1)
		w.do(func() {
			var o attemptOutcome
			o.raw, o.out, o.err = callTask(actx, def.Run, tc, inputs, e.cfg.OutputMaxBytes)
			if actx.Err() != nil {
				o.late = context.Cause(actx)
			}
			stdout.Flush()
			stderr.Flush()
			done <- o
		})
		var o attemptOutcome
		select {
		case o = <-done:
		case <-actx.Done():
			t := time.NewTimer(e.cfg.TaskGracePeriod)
			select {
			case o = <-done:
				t.Stop()
			case <-t.C:
				w.stop()
				gate.close()
				o = attemptOutcome{late: context.Cause(actx), err: fmt.Errorf("abandoned: still running %s after its context ended", e.cfg.TaskGracePeriod)}
			}
		}
		var nr *noRetryError
		var ie *InputError
		switch {
		case o.late != nil && runCtx.Err() != nil, o.err != nil && runCtx.Err() != nil:
			// The run is stopping (cancel, run timeout, another task's
			// failure, hand-back): whatever the function returned late
			// does not count.
			status, errMsg, retry = TaskCancelled, "cancelled: "+context.Cause(runCtx).Error(), false
		case o.late != nil && errors.Is(o.late, ErrTaskTimeout):
			status, errMsg = TaskFailed, fmt.Sprintf("task timed out after %s", spec.Timeout)
		case o.err == nil:
			status, output, decoded = TaskSucceeded, o.raw, o.out
			if spec.Until == nil {
				break
			}
			done, err := spec.Until.evalBool(x.exprScope(spec.Until, u.it, o.out))
			switch {
			case err != nil:
				status, errMsg, retry = TaskFailed, "until: "+err.Error(), false
			case done:
			case !lastRound:
				again = true
			default:
				// The attempt succeeded; the task fails.
				att.Status, att.EndedAt = TaskSucceeded, time.Now().UTC()
				status, errMsg, retry = TaskFailed, fmt.Sprintf("until %s still false after %d rounds (repeat.max)", quoteExpr(spec.Until.Text), spec.Repeat.Max), false
			}
		case errors.As(o.err, &nr), errors.As(o.err, &ie):
			status, errMsg, retry = TaskFailed, o.err.Error(), false
		default:
			status, errMsg = TaskFailed, o.err.Error()
		}
	}()

	end := time.Now().UTC()
	if att.EndedAt.IsZero() {
		att.Status, att.EndedAt, att.Error = status, end, errMsg
	}
	dur := end.Sub(start)
	span.SetAttributes(AttrTaskStatus.String(string(att.Status)), AttrCICDTaskRunResult.String(cicdResult(string(att.Status))))
	if att.Status == TaskFailed {
		span.SetStatus(codes.Error, errMsg)
		span.RecordError(errors.New(errMsg))
	}
	opt := x.plan.attemptOpt(i, att.Status)
	e.ins.taskDuration.Record(ctx, dur.Seconds(), opt)
	e.ins.tasks.Add(ctx, 1, opt)

	final := !again && (status != TaskFailed || !retry || last)
	upd := &TaskUpdateParams{RunID: run.ID, Task: name, Use: use, Status: TaskRunning, Attempt: &att, Error: errMsg}
	if final {
		upd.Status, upd.EndedAt, upd.Output = status, end, output
		if status == TaskSucceeded && u.it == nil {
			x.mu.Lock()
			x.outputs[name] = decoded
			x.mu.Unlock()
		}
	}
	x.taskUpdate(upd)
	if final {
		e.report(Progress{Kind: ProgressTaskFinished, RunID: run.ID, FlowName: run.FlowName, TraceID: run.TraceID, Task: name, Attempt: n, Status: string(status), Error: errMsg, Duration: dur})
	}
	res = taskResult{i: i, status: status, err: errMsg, out: decoded}
	switch {
	case again:
		return res, nextRound
	case status == TaskFailed && retry:
		return res, nextRetry
	}
	return res, nextDone
}

// normalizeInputs gives tasks their inputs as JSON values (numbers are
// float64, objects map[string]any), whether they came from YAML, params or
// stored outputs, exactly as an exec plug-in would see them.
func normalizeInputs(in map[string]any) (map[string]any, error) {
	if len(in) == 0 {
		return map[string]any{}, nil
	}
	raw, err := json.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("inputs are not JSON-serialisable: %w", err)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("inputs: %w", err)
	}
	if out == nil {
		out = map[string]any{}
	}
	return out, nil
}

// callTask runs fn, turning a panic into an error, and encodes its output:
// raw is the JSON (at most maxOut bytes), out its decoded value (what
// references see, on this worker as on one that resumes the run). An
// output that cannot be encoded, or is too large, is a [noRetryError].
func callTask(ctx context.Context, fn TaskFunc, tc *TaskContext, inputs map[string]any, maxOut int) (raw json.RawMessage, out any, err error) {
	defer func() {
		if r := recover(); r != nil {
			raw, out, err = nil, nil, fmt.Errorf("task panicked: %v\n%s", r, debug.Stack())
		}
	}()
	v, err := fn(ctx, tc, inputs)
	if err != nil {
		return nil, nil, err
	}
	return encodeOutput(v, maxOut)
}

// encodeOutput is the JSON of a task's output and its decoded value.
func encodeOutput(v any, maxOut int) (raw json.RawMessage, out any, err error) {
	defer func() {
		if r := recover(); r != nil {
			raw, out, err = nil, nil, &noRetryError{fmt.Sprintf("output is not JSON-serialisable: panic: %v", r)}
		}
	}()
	if v == nil {
		return json.RawMessage("null"), nil, nil
	}
	raw, err = json.Marshal(v)
	switch {
	case err != nil:
		return nil, nil, &noRetryError{fmt.Sprintf("output is not JSON-serialisable: %v", err)}
	case len(raw) > maxOut:
		return nil, nil, &noRetryError{fmt.Sprintf("output is %d bytes, over the %d-byte cap", len(raw), maxOut)}
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, nil, &noRetryError{fmt.Sprintf("output is not valid JSON: %v", err)}
	}
	return raw, out, nil
}
