package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// ErrHandBack is the cancellation cause with which a worker that is shutting
// down stops a run without ending it: the run stays RUNNING, its
// interrupted tasks go back to PENDING and another worker takes it over.
// Any other cancellation of the context given to [Engine.Execute] cancels
// the run.
var ErrHandBack = errors.New("run handed back")

// errFailStop is the cause that stops a run after a task with fail_policy
// stop failed.
var errFailStop = errors.New("a task failed")

// Execute takes run id (PENDING, or RUNNING for a takeover) and runs it to
// the end: tasks in dependency order, at most max_parallel at once, with
// retries, time-outs, fail policies and triggers as the flow says. Tasks
// that SUCCEEDED in an earlier attempt of the run are not run again: their
// stored outputs feed references. It returns the finished run.
//
// Cancelling ctx cancels the run gracefully (running tasks are cancelled
// through their contexts, the run ends CANCELLED), unless the cause is
// [ErrHandBack]. A cancellation requested through the store ([Engine.Cancel])
// is noticed within Config.CancelPollInterval, at once with a
// [CancelNotifier] store. Store writes after cancellation use a context
// without ctx's cancellation, so the final state is always recorded.
func (e *Engine) Execute(ctx context.Context, id string) (*Run, error) {
	bg := context.WithoutCancel(ctx)
	run, err := e.store.RunStart(ctx, &RunStartParams{RunID: id, WorkerID: e.cfg.WorkerID, At: time.Now().UTC()})
	if err != nil {
		return nil, fmt.Errorf("start run %s: %w", id, err)
	}
	x := &execution{e: e, bg: bg, run: run}
	return x.execute(ctx)
}

// execution is the state of one attempt of one run on this engine.
type execution struct {
	e    *Engine
	bg   context.Context // for store writes: never cancelled
	run  *Run
	flow *Flow
	sink *logSink

	runSpan trace.Span
	spanCtx context.Context
	stop    context.CancelCauseFunc // cancels the run's context

	mu      sync.Mutex
	outputs map[string]any // decoded outputs of SUCCEEDED tasks
	status  map[string]TaskStatus
	errs    map[string]string
}

type taskResult struct {
	name   string
	status TaskStatus
	err    string
}

func (x *execution) execute(ctx context.Context) (*Run, error) {
	e, run := x.e, x.run
	firstStart := run.Attempt == 1
	log := e.cfg.Logger.With(LogKeyRunID, run.ID, LogKeyFlow, run.FlowName)

	// The run span continues the trace fixed at submit.
	tid, _ := trace.TraceIDFromHex(run.TraceID)
	sctx := context.WithoutCancel(ctx)
	startOpts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal)}
	if psid, err := trace.SpanIDFromHex(run.ParentSpanID); err == nil && tid.IsValid() {
		sctx = trace.ContextWithRemoteSpanContext(sctx, trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: tid, SpanID: psid, TraceFlags: trace.FlagsSampled, Remote: true,
		}))
	} else {
		sctx = trace.ContextWithSpanContext(sctx, trace.SpanContext{})
		if tid.IsValid() {
			sctx = ContextWithTraceID(sctx, tid)
		}
		startOpts = append(startOpts, trace.WithNewRoot())
	}
	startOpts = append(startOpts, trace.WithAttributes(
		AttrRunID.String(run.ID), AttrFlowName.String(run.FlowName),
		AttrRunAttempt.Int(run.Attempt), AttrWorkerID.String(e.cfg.WorkerID),
		AttrCICDPipelineName.String(run.FlowName), AttrCICDPipelineRunID.String(run.ID),
	))
	sctx, x.runSpan = e.tracer.Start(sctx, "run "+run.FlowName, startOpts...)
	x.spanCtx = sctx
	defer x.runSpan.End()

	maxEntries := int64(e.cfg.LogMaxEntries)
	if maxEntries < 0 {
		maxEntries = 1<<63 - 1
	}
	x.sink = &logSink{
		store: e.store, runID: run.ID, traceID: run.TraceID, maxEntries: maxEntries, maxBytes: e.cfg.LogMaxEntryBytes,
		now: func() time.Time { return time.Now().UTC() },
		onErr: func(err error) {
			log.WarnContext(sctx, "store log entry", LogKeyError, err)
		},
	}

	if firstStart {
		e.ins.runStatus(sctx, run.FlowName, RunRunning)
		if !run.CreatedAt.IsZero() && !run.StartedAt.IsZero() {
			e.ins.queueWait.Record(sctx, run.StartedAt.Sub(run.CreatedAt).Seconds(),
				metricAttrs(LabelFlow.String(run.FlowName)))
		}
	}
	e.ins.inProgress.Add(sctx, 1, metricAttrs(LabelFlow.String(run.FlowName)))
	defer e.ins.inProgress.Add(sctx, -1, metricAttrs(LabelFlow.String(run.FlowName)))
	e.report(Progress{Kind: ProgressRunStarted, RunID: run.ID, FlowName: run.FlowName, TraceID: run.TraceID, Attempt: run.Attempt, Status: string(run.Status)})

	flow, err := LoadFlow(run.FlowFile, []byte(run.FlowSource), e.reg)
	if err != nil {
		return x.finish(RunFailed, fmt.Sprintf("load flow snapshot: %v", err))
	}
	x.flow = flow

	// Tasks finished in an earlier attempt keep their state.
	x.outputs = make(map[string]any)
	x.status = make(map[string]TaskStatus, len(flow.Tasks))
	x.errs = make(map[string]string)
	for _, name := range flow.Order {
		st := run.Tasks[name]
		if st == nil {
			x.status[name] = TaskPending
			continue
		}
		switch {
		case st.Status == TaskSucceeded:
			var out any
			if len(st.Output) > 0 {
				if err := json.Unmarshal(st.Output, &out); err != nil {
					return x.finish(RunFailed, fmt.Sprintf("decode stored output of %s: %v", name, err))
				}
			}
			x.outputs[name] = out
			x.status[name] = TaskSucceeded
		case st.Status.Terminal():
			x.status[name] = st.Status
			x.errs[name] = st.Error
		default:
			x.status[name] = TaskPending
			if st.Status == TaskRunning {
				// Interrupted by a lost worker: it runs again.
				x.persist(func(ctx context.Context) error {
					return e.store.TaskUpdate(ctx, &TaskUpdateParams{RunID: run.ID, Task: name, Status: TaskPending, ResetEnd: true,
						Error: "interrupted: the worker running it was lost"})
				})
			}
		}
	}

	if run.Status == RunCancelling {
		x.cancelRemaining("run cancelled")
		return x.finish(RunCancelled, "cancelled before it was resumed")
	}

	runCtx, stop := context.WithCancelCause(context.WithoutCancel(sctx))
	x.stop = stop
	defer stop(nil)
	var watchers sync.WaitGroup
	defer watchers.Wait()
	defer stop(nil) // runs before Wait: ends the watchers
	watchers.Add(1)
	go func() {
		defer watchers.Done()
		x.watch(ctx, runCtx, stop)
	}()

	x.schedule(runCtx)

	cause := context.Cause(runCtx)
	switch {
	case runCtx.Err() == nil:
		// Ran to the end.
	case errors.Is(cause, ErrHandBack):
		return x.handBack()
	case errors.Is(cause, ErrRunTimeout):
		x.cancelRemaining("run timed out")
		return x.finish(RunFailed, fmt.Sprintf("run timed out after %s", flow.Timeout))
	case errors.Is(cause, errFailStop):
		x.cancelRemaining("cancelled: an upstream failure stopped the run")
		return x.finish(RunFailed, x.firstFailure())
	default:
		x.cancelRemaining("run cancelled")
		return x.finish(RunCancelled, "run cancelled")
	}
	if msg := x.firstFailureStop(); msg != "" {
		return x.finish(RunFailed, msg)
	}
	return x.finish(RunCompleted, "")
}

// watch cancels runCtx when the caller's ctx ends, when the store reports a
// cancellation request, or when the flow's timeout passes. It returns when
// runCtx is done.
func (x *execution) watch(ctx, runCtx context.Context, stop context.CancelCauseFunc) {
	e := x.e
	var timeout <-chan time.Time
	if x.flow != nil && x.flow.Timeout > 0 {
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
	requested := func() {
		e.ins.runStatus(x.bg, x.run.FlowName, RunCancelling)
		e.report(Progress{Kind: ProgressRunCancelling, RunID: x.run.ID, FlowName: x.run.FlowName, TraceID: x.run.TraceID, Status: string(RunCancelling)})
		stop(ErrRunCancelled)
	}
	for {
		select {
		case <-runCtx.Done():
			return
		case <-ctx.Done():
			cause := context.Cause(ctx)
			if errors.Is(cause, ErrHandBack) {
				stop(cause)
				return
			}
			// The caller cancelled: record CANCELLING so every reader sees it.
			if _, err := e.store.RunCancel(x.bg, &RunCancelParams{RunID: x.run.ID, At: time.Now().UTC()}); err != nil {
				e.cfg.Logger.WarnContext(x.spanCtx, "record cancellation", LogKeyRunID, x.run.ID, LogKeyError, err)
			}
			requested()
			return
		case <-notify:
			if runCtx.Err() == nil {
				requested()
			}
			return
		case <-poll:
			r, err := e.store.RunGet(runCtx, x.run.ID)
			if err == nil && r.Status == RunCancelling {
				requested()
				return
			}
		case <-timeout:
			stop(ErrRunTimeout)
			return
		}
	}
}

// schedule starts tasks as their triggers allow until every task is
// finished or runCtx is done and nothing runs any more.
func (x *execution) schedule(runCtx context.Context) {
	f := x.flow
	results := make(chan taskResult)
	running := 0
	var wg sync.WaitGroup
	defer wg.Wait()

	maxPar := f.MaxParallel
	if maxPar <= 0 {
		maxPar = DefaultMaxParallel
	}
	for {
		if runCtx.Err() == nil {
			x.skipBlocked()
			for _, name := range f.Order {
				if running >= maxPar {
					break
				}
				if x.status[name] != TaskPending || !x.ready(name) {
					continue
				}
				x.status[name] = TaskRunning
				running++
				wg.Add(1)
				go func() {
					defer wg.Done()
					results <- x.runTask(runCtx, name)
				}()
			}
		}
		if running == 0 {
			return
		}
		select {
		case r := <-results:
			running--
			x.mu.Lock()
			x.status[r.name] = r.status
			x.errs[r.name] = r.err
			x.mu.Unlock()
			if r.status == TaskFailed && f.Tasks[r.name].FailPolicy != FailIsolate {
				x.stop(errFailStop)
			}
		case <-runCtx.Done():
			// Running tasks see the cancellation through their contexts;
			// keep collecting their results.
			r := <-results
			running--
			x.mu.Lock()
			x.status[r.name] = r.status
			x.errs[r.name] = r.err
			x.mu.Unlock()
		}
	}
}

// ready reports whether name's trigger is satisfied.
func (x *execution) ready(name string) bool {
	t := x.flow.Tasks[name]
	if len(t.Upstream) == 0 {
		return true
	}
	if t.Trigger == TriggerAny {
		for _, up := range t.Upstream {
			if x.status[up] == TaskSucceeded {
				return true
			}
		}
		return false
	}
	for _, up := range t.Upstream {
		if x.status[up] != TaskSucceeded {
			return false
		}
	}
	return true
}

// skipBlocked marks SKIPPED the pending tasks that can never start: trigger
// all with an upstream that did not succeed, trigger any with every upstream
// finished and none succeeded. It repeats until nothing changes, so skips
// travel down the graph.
func (x *execution) skipBlocked() {
	for changed := true; changed; {
		changed = false
		for _, name := range x.flow.Order {
			if x.status[name] != TaskPending {
				continue
			}
			t := x.flow.Tasks[name]
			if len(t.Upstream) == 0 {
				continue
			}
			blocked, reason := false, ""
			if t.Trigger == TriggerAny {
				blocked = true
				for _, up := range t.Upstream {
					s := x.status[up]
					if s == TaskSucceeded || !s.Terminal() {
						blocked = false
						break
					}
				}
				reason = "skipped: no upstream task succeeded"
			} else {
				for _, up := range t.Upstream {
					if s := x.status[up]; s.Terminal() && s != TaskSucceeded {
						blocked, reason = true, fmt.Sprintf("skipped: upstream %s %s", up, s)
						break
					}
				}
			}
			if blocked {
				x.mu.Lock()
				x.status[name] = TaskSkipped
				x.errs[name] = reason
				x.mu.Unlock()
				now := time.Now().UTC()
				x.persist(func(ctx context.Context) error {
					return x.e.store.TaskUpdate(ctx, &TaskUpdateParams{RunID: x.run.ID, Task: name, Status: TaskSkipped, EndedAt: now, Error: reason})
				})
				x.e.report(Progress{Kind: ProgressTaskFinished, RunID: x.run.ID, FlowName: x.run.FlowName, TraceID: x.run.TraceID, Task: name, Status: string(TaskSkipped), Error: reason})
				changed = true
			}
		}
	}
}

// runTask runs every attempt of one task and returns its final state.
func (x *execution) runTask(runCtx context.Context, name string) taskResult {
	e, run, spec := x.e, x.run, x.flow.Tasks[name]
	prior := 0
	if st := run.Tasks[name]; st != nil {
		prior = len(st.Attempts)
	}
	def, _ := e.reg.Lookup(spec.Use)
	var first time.Time
	for i := 0; ; i++ {
		attempt := prior + i + 1
		res, retry := x.runAttempt(runCtx, spec, def, attempt, &first)
		if !retry || i >= spec.Retries {
			return res
		}
		delay := backoff(spec.RetryDelay, spec.RetryMaxDelay, i)
		e.report(Progress{Kind: ProgressTaskRetrying, RunID: run.ID, FlowName: run.FlowName, TraceID: run.TraceID, Task: name, Attempt: attempt, Status: string(TaskFailed), Error: res.err, RetryIn: delay})
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-runCtx.Done():
			t.Stop()
			return x.endTask(name, TaskCancelled, "cancelled while waiting to retry: "+res.err, nil)
		}
	}
}

// backoff is delay·2^i capped at maxDelay.
func backoff(delay, maxDelay time.Duration, i int) time.Duration {
	if maxDelay <= 0 {
		maxDelay = DefaultRetryMaxDelay
	}
	d := delay
	for ; i > 0 && d < maxDelay; i-- {
		d *= 2
	}
	return min(d, maxDelay)
}

// runAttempt runs attempt number n and records it. retry reports whether a
// failure may be retried.
func (x *execution) runAttempt(runCtx context.Context, spec *TaskSpec, def *TaskDef, n int, first *time.Time) (res taskResult, retry bool) {
	e, run, name := x.e, x.run, spec.Name
	start := time.Now().UTC()
	if first.IsZero() {
		*first = start
	}
	ctx, span := e.tracer.Start(runCtx, "task "+name, trace.WithAttributes(
		AttrRunID.String(run.ID), AttrFlowName.String(run.FlowName),
		AttrTaskName.String(name), AttrTaskUse.String(spec.Use), AttrTaskAttempt.Int(n),
		AttrWorkerID.String(e.cfg.WorkerID),
		AttrCICDPipelineName.String(run.FlowName), AttrCICDPipelineRunID.String(run.ID),
		AttrCICDPipelineTaskName.String(name),
	))
	defer span.End()
	sc := span.SpanContext()
	att := Attempt{Number: n, Status: TaskRunning, StartedAt: start, WorkerID: e.cfg.WorkerID, SpanID: spanIDString(sc)}
	x.persist(func(c context.Context) error {
		return e.store.TaskUpdate(c, &TaskUpdateParams{RunID: run.ID, Task: name, Status: TaskRunning, StartedAt: *first, Attempt: &att, ResetEnd: true})
	})
	e.report(Progress{Kind: ProgressTaskStarted, RunID: run.ID, FlowName: run.FlowName, TraceID: run.TraceID, Task: name, Attempt: n, Status: string(TaskRunning)})

	var status TaskStatus
	var errMsg string
	var output json.RawMessage
	retry = true
	func() {
		if def == nil {
			status, errMsg, retry = TaskFailed, fmt.Sprintf("unknown task %q", spec.Use), false
			return
		}
		x.mu.Lock()
		scope := &RefScope{Outputs: x.outputs, Params: run.Params, Env: e.cfg.LookupEnv}
		inputs, err := ResolveInputs(spec.Inputs, scope)
		x.mu.Unlock()
		if err == nil {
			inputs, err = normalizeInputs(inputs)
		}
		if err != nil {
			status, errMsg, retry = TaskFailed, err.Error(), false
			return
		}
		actx := ctx
		if spec.Timeout > 0 {
			var cancel context.CancelFunc
			actx, cancel = context.WithTimeoutCause(ctx, spec.Timeout, ErrTaskTimeout)
			defer cancel()
		}
		stdout := &lineWriter{ctx: actx, sink: x.sink, task: name, stream: StreamStdout, level: "INFO", sc: sc}
		stderr := &lineWriter{ctx: actx, sink: x.sink, task: name, stream: StreamStderr, level: "INFO", sc: sc}
		tc := &TaskContext{
			RunID: run.ID, FlowName: run.FlowName, Task: name, Use: spec.Use, Attempt: n,
			Params:      run.Params,
			Logger:      slog.New(&taskLogHandler{sink: x.sink, task: name, sc: sc}),
			Stdout:      stdout,
			Stderr:      stderr,
			TraceParent: FormatTraceParent(sc),
		}
		out, err := callTask(actx, def.Run, tc, inputs)
		stdout.Flush()
		stderr.Flush()
		switch {
		case err == nil:
			raw, merr := json.Marshal(out)
			switch {
			case merr != nil:
				status, errMsg, retry = TaskFailed, fmt.Sprintf("output is not JSON-serialisable: %v", merr), false
			case len(raw) > e.cfg.OutputMaxBytes:
				status, errMsg, retry = TaskFailed, fmt.Sprintf("output is %d bytes, over the %d-byte cap", len(raw), e.cfg.OutputMaxBytes), false
			default:
				status, output = TaskSucceeded, raw
				x.mu.Lock()
				x.outputs[name] = out
				x.mu.Unlock()
			}
		case runCtx.Err() != nil:
			// The run is stopping (cancel, run timeout, another task's failure, hand-back).
			status, errMsg, retry = TaskCancelled, "cancelled: "+context.Cause(runCtx).Error(), false
		case errors.Is(context.Cause(actx), ErrTaskTimeout):
			status, errMsg = TaskFailed, fmt.Sprintf("task timed out after %s", spec.Timeout)
		default:
			status, errMsg = TaskFailed, err.Error()
		}
	}()

	end := time.Now().UTC()
	att.Status, att.EndedAt, att.Error = status, end, errMsg
	dur := end.Sub(start)
	span.SetAttributes(AttrTaskStatus.String(string(status)), AttrCICDTaskRunResult.String(cicdResult(string(status))))
	if status == TaskFailed {
		span.SetStatus(codes.Error, errMsg)
		span.RecordError(errors.New(errMsg))
	}
	e.ins.attemptEnded(ctx, run.FlowName, name, status, dur)

	final := status != TaskFailed || !retry || n-x.priorAttempts(name) > spec.Retries
	upd := &TaskUpdateParams{RunID: run.ID, Task: name, Status: TaskRunning, Attempt: &att, Error: errMsg}
	if final {
		upd.Status, upd.EndedAt, upd.Output = status, end, output
	}
	x.persist(func(c context.Context) error { return e.store.TaskUpdate(c, upd) })
	if final {
		e.report(Progress{Kind: ProgressTaskFinished, RunID: run.ID, FlowName: run.FlowName, TraceID: run.TraceID, Task: name, Attempt: n, Status: string(status), Error: errMsg, Duration: dur})
	}
	return taskResult{name: name, status: status, err: errMsg}, status == TaskFailed && retry
}

func (x *execution) priorAttempts(name string) int {
	if st := x.run.Tasks[name]; st != nil {
		return len(st.Attempts)
	}
	return 0
}

// normalizeInputs gives tasks their inputs as JSON values (numbers are
// float64, objects map[string]any), whether they came from YAML, params or
// stored outputs, exactly as an exec plug-in would see them.
func normalizeInputs(in map[string]any) (map[string]any, error) {
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

// callTask runs fn, turning a panic into an error.
func callTask(ctx context.Context, fn TaskFunc, tc *TaskContext, inputs map[string]any) (out any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("task panicked: %v\n%s", r, debug.Stack())
		}
	}()
	return fn(ctx, tc, inputs)
}

// endTask records a final state for a task that is not running an attempt.
func (x *execution) endTask(name string, status TaskStatus, msg string, output json.RawMessage) taskResult {
	now := time.Now().UTC()
	x.persist(func(c context.Context) error {
		return x.e.store.TaskUpdate(c, &TaskUpdateParams{RunID: x.run.ID, Task: name, Status: status, EndedAt: now, Error: msg, Output: output})
	})
	x.e.report(Progress{Kind: ProgressTaskFinished, RunID: x.run.ID, FlowName: x.run.FlowName, TraceID: x.run.TraceID, Task: name, Status: string(status), Error: msg})
	return taskResult{name: name, status: status, err: msg}
}

// cancelRemaining marks CANCELLED every task that has not finished.
func (x *execution) cancelRemaining(msg string) {
	for _, name := range x.flow.Order {
		if s := x.status[name]; !s.Terminal() {
			x.status[name] = TaskCancelled
			x.errs[name] = msg
			x.endTask(name, TaskCancelled, msg, nil)
		}
	}
}

// firstFailure describes the first failed task (in file order) for the run's error.
func (x *execution) firstFailure() string {
	for _, name := range x.flow.Order {
		if x.status[name] == TaskFailed {
			return fmt.Sprintf("task %s failed: %s", name, x.errs[name])
		}
	}
	return "a task failed"
}

// firstFailureStop is firstFailure limited to tasks with fail_policy stop.
func (x *execution) firstFailureStop() string {
	for _, name := range x.flow.Order {
		if x.status[name] == TaskFailed && x.flow.Tasks[name].FailPolicy != FailIsolate {
			return fmt.Sprintf("task %s failed: %s", name, x.errs[name])
		}
	}
	return ""
}

// handBack leaves the run RUNNING for another worker: interrupted tasks go
// back to PENDING.
func (x *execution) handBack() (*Run, error) {
	for _, name := range x.flow.Order {
		if s := x.status[name]; s == TaskCancelled || s == TaskRunning || s == TaskPending {
			if s == TaskCancelled && x.run.Tasks[name] != nil && x.run.Tasks[name].Status == TaskCancelled {
				continue
			}
			x.persist(func(c context.Context) error {
				return x.e.store.TaskUpdate(c, &TaskUpdateParams{RunID: x.run.ID, Task: name, Status: TaskPending, ResetEnd: true, Error: "interrupted: worker stopping"})
			})
		}
	}
	x.runSpan.SetStatus(codes.Unset, "handed back")
	x.runSpan.SetAttributes(attribute.Bool("pyoco.run.handed_back", true))
	return nil, fmt.Errorf("run %s: %w", x.run.ID, ErrHandBack)
}

func metricAttrs(kv ...attribute.KeyValue) metric.MeasurementOption {
	return metric.WithAttributes(kv...)
}

// finish records the run's final status, its metrics and its span status.
func (x *execution) finish(status RunStatus, msg string) (*Run, error) {
	e, run := x.e, x.run
	end := time.Now().UTC()
	var final *Run
	x.persist(func(c context.Context) error {
		r, err := e.store.RunFinish(c, &RunFinishParams{RunID: run.ID, Status: status, At: end, Error: msg})
		if errors.Is(err, ErrConflict) {
			// Already finished elsewhere (e.g. a takeover raced us): report what is stored.
			r, err = e.store.RunGet(c, run.ID)
		}
		final = r
		return err
	})
	if final == nil {
		return nil, fmt.Errorf("finish run %s: store unavailable", run.ID)
	}
	started := run.StartedAt
	if started.IsZero() {
		started = end
	}
	dur := end.Sub(started)
	e.ins.runStatus(x.spanCtx, run.FlowName, status)
	e.ins.runEnded(x.spanCtx, run.FlowName, status, dur)
	x.runSpan.SetAttributes(AttrRunStatus.String(string(status)), AttrCICDPipelineResult.String(cicdResult(string(status))))
	if status == RunFailed {
		x.runSpan.SetStatus(codes.Error, msg)
		x.runSpan.RecordError(errors.New(msg))
	}
	e.report(Progress{Kind: ProgressRunFinished, RunID: run.ID, FlowName: run.FlowName, TraceID: run.TraceID, Status: string(status), Error: msg, Duration: dur})
	return final, nil
}

// persistRetryFor bounds how long persist keeps retrying a write while the
// store is unavailable: long enough to ride out a Redis restart or
// fail-over, so a run's state is never silently lost.
const persistRetryFor = 15 * time.Minute

// persist runs a store write, retrying while the store is unavailable (with
// jittered back-off from 50ms to 5s, for up to persistRetryFor; one warning
// per outage). Writes that fail otherwise are logged: the run goes on.
func (x *execution) persist(fn func(context.Context) error) {
	delay := 50 * time.Millisecond
	deadline := time.Now().Add(persistRetryFor)
	warned := false
	for {
		err := fn(x.bg)
		if err == nil {
			if warned {
				x.e.cfg.Logger.InfoContext(x.spanCtx, "store write succeeded after retrying", LogKeyRunID, x.run.ID)
			}
			return
		}
		if !errors.Is(err, ErrUnavailable) || time.Now().After(deadline) {
			x.e.cfg.Logger.WarnContext(x.spanCtx, "store write", LogKeyRunID, x.run.ID, LogKeyError, err)
			return
		}
		if !warned {
			warned = true
			x.e.cfg.Logger.WarnContext(x.spanCtx, "store write: store unavailable, retrying", LogKeyRunID, x.run.ID, LogKeyError, err)
		}
		time.Sleep(delay/2 + rand.N(delay/2+1))
		delay = min(delay*2, 5*time.Second)
	}
}
