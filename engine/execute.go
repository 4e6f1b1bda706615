package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
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
// the run. [Engine.Execute] also returns an error wrapping it when the store
// stayed unavailable for longer than the run's outage budget.
var ErrHandBack = errors.New("run handed back")

// errFailStop is the cause that stops a run after a task with fail_policy
// stop failed.
var errFailStop = errors.New("a task failed")

// errOwnerLost is the cause that stops a run whose task writes were refused
// with ErrConflict: another worker took it over (or it was finished).
var errOwnerLost = errors.New("ownership lost: another worker took the run over")

// errStoreLost is the cause that stops a run once the store stayed
// unavailable for longer than persistRetryFor: it is handed back.
var errStoreLost = fmt.Errorf("store unavailable for too long: %w", ErrHandBack)

// errWriteSkipped is what persist returns once the execution stopped
// writing (store lost, or run owned by another worker).
var errWriteSkipped = errors.New("store write skipped: the execution stopped")

// interruptedMsg is the error of an attempt left RUNNING by a lost worker.
const interruptedMsg = "interrupted: worker lost"

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
//
// While the store is unavailable writes are retried, for at most 15 minutes
// in all per execution (waits end early when ctx ends); past that the run is
// handed back: the error wraps [ErrHandBack]. If a task write is refused
// with [ErrConflict] (another worker took the run over, or it was finished
// elsewhere) the execution stops without writing anything more and returns
// an error wrapping [ErrConflict].
//
// Ownership is data: the Attempt that RunStart returns is this execution's
// fence, carried in every later write's params (RunAttempt), so a store
// refuses the writes of an execution whose run another worker took over.
// p.Lease, when set, is the queue delivery: the store settles it with
// RunStart (a terminal or unknown run) or RunFinish, so a worker never
// acknowledges it after Execute returns nil, [ErrConflict] or
// [ErrNotFound]. On a hand-back the returned run is the run as this
// execution knew it (its Attempt is the fence to pass to
// [Queue.QueueRequeue]); on other errors it is nil.
func (e *Engine) Execute(ctx context.Context, p *ExecuteParams) (*Run, error) {
	bg := context.WithoutCancel(ctx)
	worker := p.WorkerID
	if worker == "" {
		worker = e.cfg.WorkerID
	}
	run := p.Started
	if run == nil || run.ID != p.RunID {
		var err error
		run, err = e.runStart(ctx, &RunStartParams{RunID: p.RunID, WorkerID: worker, At: time.Now().UTC(), Lease: p.Lease})
		if err != nil {
			return nil, fmt.Errorf("start run %s: %w", p.RunID, err)
		}
	}
	x := &execution{e: e, bg: bg, ctx: ctx, run: run, lease: p.Lease, fence: run.Attempt, settledFunc: p.SettledFunc,
		finishingFunc: p.FinishingFunc, brief: p.Brief}
	x.w = &writer{x: x}
	defer x.w.close()
	return x.execute(ctx)
}

// ExecuteParams are the arguments of [Engine.Execute].
type ExecuteParams struct {
	RunID string
	// WorkerID is recorded as the run's worker; defaults to Config.WorkerID.
	WorkerID string
	// Lease is the queue delivery of the run, if it came from a [Queue].
	Lease *Lease
	// Started, if set, is the run as the store already started it for this
	// execution (with Lease: [Lease.Started]): Execute does not call
	// RunStart. Pass it once: an Execute called again for the same delivery
	// (after ErrUnavailable) starts the run itself.
	Started *Run
	// SettledFunc, if set, is called once the store has stored this
	// execution's finish (and so settled Lease), before Execute returns: a
	// worker's heartbeat that then finds the lease gone knows the run ended
	// here rather than being taken over.
	SettledFunc func()
	// FinishingFunc, if set, is called once the execution's tasks have all
	// ended and its finish goes to the store (before it is stored): the
	// execution runs no task any more, only the finish write (and its
	// retries). A worker gives the run's execution slot to another run
	// then, as River's completer frees a job's slot before the completion
	// is committed, so a batch of finishes in flight never holds slots.
	FinishingFunc func()
	// Brief says the caller needs only the outcome: the run Execute returns
	// after finishing it may be brief (ID, Status, EndedAt, Error and
	// Attempt; no tasks), which saves the store reading the whole run back
	// (see [RunFinishParams.Brief]). A worker sets it.
	Brief bool
}

// execution is the state of one attempt of one run on this engine.
type execution struct {
	e   *Engine
	bg  context.Context // for store writes: never cancelled
	ctx context.Context // the caller's: ends persist's waits
	run *Run
	// lease is the run's queue delivery (nil when not from a queue); fence
	// the run's Attempt as RunStart returned it, carried by every write.
	lease *Lease
	// settledFunc and finishingFunc are ExecuteParams'.
	settledFunc, finishingFunc func()
	brief                      bool // ExecuteParams.Brief
	fence                      int
	// w is the execution's writer: every task change and the finish go
	// through it.
	w    *writer
	flow *Flow
	plan *plan
	sink *logSink

	runSpan trace.Span
	spanCtx context.Context
	// runSpanDone is set once this execution finished the run: its span
	// (whose id is the run's) is then ended, and so emitted.
	runSpanDone bool

	stop context.CancelCauseFunc // cancels the run's context

	// The store outage budget, shared by every write of the execution.
	omu       sync.Mutex
	downSince time.Time     // start of the current outage; zero when up
	downFor   time.Duration // finished outages so far
	storeLost atomic.Bool   // budget used up: hand the run back
	ownerLost atomic.Bool   // a write was refused with ErrConflict

	mu      sync.Mutex
	outputs map[string]any // decoded outputs of SUCCEEDED tasks
	// links holds each task's last attempt made by this execution, which
	// the span of its next attempt links to (see prevAttempt).
	links map[string]attemptLink

	// Indexed like plan.names; touched by the scheduling goroutine only
	// (before and after schedule, by execute).
	status []TaskStatus
	errs   []string
}

type taskResult struct {
	i      int
	status TaskStatus
	err    string
	// out is an iteration's decoded output (a task's goes to x.outputs).
	out any
}

// next says what follows an attempt.
type next int

const (
	nextDone  next = iota // the unit reached its final state
	nextRetry             // the attempt failed and may be retried
	nextRound             // until does not hold yet: run another round
)

func (x *execution) execute(ctx context.Context) (*Run, error) {
	e, run := x.e, x.run
	firstStart := run.Attempt == 1

	// The run span continues the trace fixed at submit, under the span id
	// fixed at submit: only the execution that finishes the run ends it.
	sctx, runSpan, fixed := e.startRunSpan(ctx, run,
		AttrRunID.String(run.ID), AttrFlowName.String(run.FlowName),
		AttrRunAttempt.Int(run.Attempt), AttrWorkerID.String(e.cfg.WorkerID),
		AttrCICDPipelineName.String(run.FlowName), AttrCICDPipelineRunID.String(run.ID),
	)
	x.runSpan, x.spanCtx = runSpan, sctx
	defer func() {
		if !fixed || x.runSpanDone {
			x.runSpan.End()
		}
	}()
	if !firstStart {
		x.runSpan.AddEvent("run resumed", trace.WithAttributes(AttrRunAttempt.Int(run.Attempt), AttrWorkerID.String(e.cfg.WorkerID)))
	}

	x.sink = &logSink{
		store: e.store, runID: run.ID, traceID: run.TraceID, maxBytes: e.cfg.LogMaxEntryBytes,
		otel: e.logger, flow: run.FlowName,
		now: func() time.Time { return time.Now().UTC() },
		onErr: func(err error) {
			e.cfg.Logger.WarnContext(sctx, "store log entry", LogKeyRunID, run.ID, LogKeyFlow, run.FlowName, LogKeyError, err)
		},
	}
	if e.cfg.Observer != nil {
		x.sink.onEntry = func(le LogEntry) {
			e.report(Progress{Kind: ProgressTaskLog, Time: le.Timestamp, RunID: run.ID, FlowName: run.FlowName, TraceID: run.TraceID,
				Task: le.Task, Stream: le.Stream, Level: le.Level, Text: le.Text})
		}
	}
	x.sink.setCap(int64(e.cfg.LogMaxEntries), x.storedLogEntries())

	label := flowLabel(run.FlowFile, run.FlowName)
	if firstStart {
		e.ins.runStatus(sctx, label, RunRunning)
		if !run.CreatedAt.IsZero() && !run.StartedAt.IsZero() {
			e.ins.queueWait.Record(sctx, run.StartedAt.Sub(run.CreatedAt).Seconds(),
				metricAttrs(LabelFlow.String(label)))
		}
	}
	e.ins.inProgress.Add(sctx, 1, metricAttrs(LabelFlow.String(label)))
	defer e.ins.inProgress.Add(sctx, -1, metricAttrs(LabelFlow.String(label)))
	e.report(Progress{Kind: ProgressRunStarted, RunID: run.ID, FlowName: run.FlowName, TraceID: run.TraceID, Attempt: run.Attempt, Status: string(run.Status)})

	flow, pl, err := e.loadSnapshot(run)
	if err != nil {
		// Also where an unknown `use` is caught when the process that
		// accepted the run has no task implementations (AllowUnknownUse).
		where := ""
		if id := e.cfg.WorkerID; id != "" {
			where = " on worker " + id
		}
		return x.abort(fmt.Sprintf("load flow snapshot%s: %v", where, err))
	}
	x.flow, x.plan = flow, pl

	// Tasks finished in an earlier attempt keep their state.
	x.outputs = make(map[string]any)
	for _, name := range pl.names {
		st := run.Tasks[name]
		if st != nil && st.Status == TaskSucceeded {
			var out any
			if len(st.Output) > 0 {
				if err := json.Unmarshal(st.Output, &out); err != nil {
					return x.abort(fmt.Sprintf("decode stored output of %s: %v", name, err))
				}
			}
			x.outputs[name] = out
		}
	}
	x.status = make([]TaskStatus, len(pl.names))
	x.errs = make([]string, len(pl.names))
	for i, name := range pl.names {
		x.status[i] = x.resumeTask(name)
	}
	if x.lost() {
		return x.stopped()
	}

	if run.Status == RunCancelling {
		x.cancelRemaining("run cancelled")
		return x.finish(RunCancelled, "cancelled before it was resumed")
	}
	if msg := x.firstFailureStop(); msg != "" {
		// A task with fail_policy stop failed before the run was taken over.
		x.cancelRemaining("cancelled: an upstream failure stopped the run")
		return x.finish(RunFailed, msg)
	}
	if flow.Timeout > 0 && !run.StartedAt.IsZero() && time.Since(run.StartedAt) >= flow.Timeout {
		// Taken over after its time ran out: start nothing.
		x.cancelRemaining("run timed out")
		return x.finish(RunFailed, fmt.Sprintf("run timed out after %s", flow.Timeout))
	}

	runCtx, stop := context.WithCancelCause(context.WithoutCancel(sctx))
	x.omu.Lock()
	x.stop = stop
	x.omu.Unlock()
	defer stop(nil)
	w := &watcher{x: x, done: make(chan struct{})}
	var watchers sync.WaitGroup
	watchers.Go(func() { w.watch(ctx, runCtx, stop) })

	x.schedule(runCtx)

	// Stop the watcher before looking at the outcome: a cancellation that
	// arrives now is too late to change it.
	cause := w.close(runCtx)
	watchers.Wait()

	switch {
	case x.ownerLost.Load():
		return x.stopped()
	case cause == nil:
		// Ran to the end.
	case errors.Is(cause, ErrHandBack):
		return x.handBack(cause)
	case errors.Is(cause, ErrRunTimeout):
		x.cancelRemaining("run timed out")
		return x.finish(RunFailed, fmt.Sprintf("run timed out after %s", flow.Timeout))
	case errors.Is(cause, errFailStop):
		x.cancelRemaining("cancelled: an upstream failure stopped the run")
		msg := x.firstFailureStop()
		if msg == "" {
			msg = "a task failed"
		}
		return x.finish(RunFailed, msg)
	default:
		x.cancelRemaining("run cancelled")
		return x.finish(RunCancelled, "run cancelled")
	}
	if msg := x.firstFailureStop(); msg != "" {
		return x.finish(RunFailed, msg)
	}
	return x.finish(RunCompleted, "")
}

// storedLogEntries is the number of log entries the run already has (from
// earlier executions), 0 if unknown.
func (x *execution) storedLogEntries() int64 {
	if x.run.Attempt <= 1 {
		return 0
	}
	last, err := x.e.store.LogList(x.bg, &LogListParams{RunID: x.run.ID, Tail: 1})
	if err != nil || len(last) == 0 {
		return 0
	}
	return last[len(last)-1].Seq
}

// resumeTask returns the scheduling status of a task from its stored state,
// fixing the state an earlier, lost execution left behind: attempts still
// RUNNING are closed, RUNNING tasks (and, in a RUNNING run, CANCELLED ones:
// the lost worker's shutdown cancelled them) go back to PENDING.
func (x *execution) resumeTask(name string) TaskStatus {
	st := x.run.Tasks[name]
	if st == nil {
		return TaskPending
	}
	i := x.plan.index[name]
	x.closeAttempts(st)
	switch {
	case st.Status == TaskSucceeded:
		return TaskSucceeded
	case st.Status == TaskCancelled && x.run.Status == RunRunning,
		st.Status == TaskRunning:
		x.taskUpdate(&TaskUpdateParams{RunID: x.run.ID, Task: name, Status: TaskPending, ResetEnd: true, Error: interruptedMsg})
		return TaskPending
	case st.Status.Terminal():
		x.errs[i] = st.Error
		return st.Status
	default:
		return TaskPending
	}
}

// closeAttempts ends the attempts of st that a lost worker left RUNNING:
// FAILED (or CANCELLED when the run is being cancelled), with an end time
// and the error "interrupted: worker lost". st's status is kept.
func (x *execution) closeAttempts(st *TaskState) {
	status := TaskFailed
	if x.run.Status == RunCancelling {
		status = TaskCancelled
	}
	now := time.Now().UTC()
	for _, a := range st.Attempts {
		if a.Status != TaskRunning {
			continue
		}
		a.Status, a.EndedAt, a.Error = status, now, interruptedMsg
		x.taskUpdate(&TaskUpdateParams{RunID: x.run.ID, Task: st.Name, Status: st.Status, Attempt: &a, Error: st.Error})
		x.e.emitInterruptedAttempt(x.spanCtx, x.run, st, &a)
	}
}

// abort ends a run that cannot be executed (its snapshot does not load, a
// stored output does not decode): every unfinished task of run.Tasks is
// CANCELLED and the run FAILED with msg.
func (x *execution) abort(msg string) (*Run, error) {
	names := make([]string, 0, len(x.run.Tasks))
	for name := range x.run.Tasks {
		names = append(names, name)
	}
	slices.Sort(names)
	now := time.Now().UTC()
	for _, name := range names {
		st := x.run.Tasks[name]
		if st == nil || st.Status.Terminal() {
			continue
		}
		x.closeAttempts(st)
		note := "cancelled: the run failed: " + msg
		x.taskUpdate(&TaskUpdateParams{RunID: x.run.ID, Task: name, Status: TaskCancelled, EndedAt: now, Error: note})
		x.e.report(Progress{Kind: ProgressTaskFinished, RunID: x.run.ID, FlowName: x.run.FlowName, TraceID: x.run.TraceID, Task: name, Status: string(TaskCancelled), Error: note})
	}
	if x.lost() {
		return x.stopped()
	}
	return x.finish(RunFailed, msg)
}

// failOrphans ends, FAILED, the sub-flow runs that an earlier execution of
// this run left going and this one did not resume (the run was cancelled
// or failed before their task ran again): nothing else would run them.
func (x *execution) failOrphans() {
	if x.plan == nil || !x.plan.subFlows {
		return
	}
	for row, st := range x.run.Tasks {
		name := row
		if parent, _, ok := IterationOf(row); ok {
			name = parent
		}
		if spec := x.flow.Tasks[name]; spec == nil || spec.SubFlow == nil || len(st.Attempts) == 0 {
			continue
		}
		id := st.Attempts[len(st.Attempts)-1].ChildRunID
		if id == "" {
			continue
		}
		if c, err := x.e.store.RunGet(x.bg, id); err == nil && !c.Status.Terminal() {
			_, _ = x.e.Fail(x.bg, id, "its parent run "+x.run.ID+" ended")
		}
	}
}

// endTask records a final state for task i, which is not running an attempt.
func (x *execution) endTask(i int, status TaskStatus, msg string) taskResult {
	now := time.Now().UTC()
	name := x.plan.names[i]
	x.taskUpdate(&TaskUpdateParams{RunID: x.run.ID, Task: name, Status: status, EndedAt: now, Error: msg})
	x.e.report(Progress{Kind: ProgressTaskFinished, RunID: x.run.ID, FlowName: x.run.FlowName, TraceID: x.run.TraceID, Task: name, Status: string(status), Error: msg})
	return taskResult{i: i, status: status, err: msg}
}

// endUnit records a final state for u, which is not running an attempt.
func (x *execution) endUnit(u *unit, status TaskStatus, msg string) taskResult {
	if u.it == nil {
		return x.endTask(u.i, status, msg)
	}
	x.taskUpdate(&TaskUpdateParams{RunID: x.run.ID, Task: u.row, Use: x.plan.specs[u.i].Use, Status: status, EndedAt: time.Now().UTC(), Error: msg})
	x.e.report(Progress{Kind: ProgressTaskFinished, RunID: x.run.ID, FlowName: x.run.FlowName, TraceID: x.run.TraceID, Task: u.row, Status: string(status), Error: msg})
	return taskResult{i: u.i, status: status, err: msg}
}

// cancelRemaining marks CANCELLED every task that has not finished.
func (x *execution) cancelRemaining(msg string) {
	for i, s := range x.status {
		if !s.Terminal() {
			x.status[i], x.errs[i] = TaskCancelled, msg
			x.endTask(i, TaskCancelled, msg)
		}
	}
}

// firstFailureStop describes the first failed task with fail_policy stop
// (in file order) for the run's error, or returns "".
func (x *execution) firstFailureStop() string {
	for i, s := range x.status {
		if s == TaskFailed && x.plan.specs[i].FailPolicy != FailIsolate {
			return fmt.Sprintf("task %s failed: %s", x.plan.names[i], x.errs[i])
		}
	}
	return ""
}

// handBack leaves the run RUNNING for another worker: interrupted tasks go
// back to PENDING.
func (x *execution) handBack(cause error) (*Run, error) {
	for i, s := range x.status {
		if s == TaskCancelled || s == TaskRunning {
			x.taskUpdate(&TaskUpdateParams{RunID: x.run.ID, Task: x.plan.names[i], Status: TaskPending, ResetEnd: true, Error: "interrupted: worker stopping"})
		}
	}
	// The next worker must read every finished task as finished: write
	// them before the run is handed back.
	x.w.flush()
	if x.ownerLost.Load() {
		return x.stopped()
	}
	x.runSpan.SetStatus(codes.Unset, "handed back")
	x.runSpan.SetAttributes(attribute.Bool("pyoco.run.handed_back", true))
	if x.storeLost.Load() {
		return x.run, fmt.Errorf("run %s: %w", x.run.ID, errStoreLost)
	}
	if !errors.Is(cause, ErrHandBack) {
		cause = ErrHandBack
	}
	return x.run, fmt.Errorf("run %s: %w", x.run.ID, cause)
}

// lost reports whether the execution must stop writing: the store stayed
// unavailable too long, or another worker owns the run.
func (x *execution) lost() bool { return x.storeLost.Load() || x.ownerLost.Load() }

// stopped ends an execution that lost the store or the run quietly.
func (x *execution) stopped() (*Run, error) {
	if x.ownerLost.Load() {
		x.e.cfg.Logger.InfoContext(x.spanCtx, "run taken over elsewhere: stopped executing it", LogKeyRunID, x.run.ID)
		x.runSpan.SetAttributes(attribute.Bool("pyoco.run.ownership_lost", true))
		return nil, fmt.Errorf("run %s: %w: %w", x.run.ID, errOwnerLost, ErrConflict)
	}
	x.runSpan.SetAttributes(attribute.Bool("pyoco.run.handed_back", true))
	return x.run, fmt.Errorf("run %s: %w", x.run.ID, errStoreLost)
}

func metricAttrs(kv ...attribute.KeyValue) metric.MeasurementOption {
	return metric.WithAttributes(kv...)
}

// finish records the run's final status, its metrics and its span status.
// If the run was finished by someone else (a worker that took it over, or
// one that failed it after too many takeovers), the stored run is returned
// and this execution records no metric and no span result: the finish was
// not this execution's, and whoever made it counted it.
func (x *execution) finish(status RunStatus, msg string) (*Run, error) {
	if x.lost() {
		return x.stopped()
	}
	e, run := x.e, x.run
	x.failOrphans()
	end := time.Now().UTC()
	var final *Run
	elsewhere := false
	fp := &RunFinishParams{RunID: run.ID, Status: status, At: end, Error: msg, RunAttempt: x.fence, Lease: x.lease, Brief: x.brief}
	if x.finishingFunc != nil {
		x.finishingFunc()
	}
	err := x.w.finish(fp, func(c context.Context, r *Run, err error) error {
		if errors.Is(err, ErrConflict) {
			// Refused: the run is terminal already, or taken over (the
			// fence). A run still going, or one another worker started
			// since, is not ours: this execution stops quietly and records
			// nothing. A terminal run of this attempt is ours only if the
			// stored finish is the one this call wrote (a retry after a
			// lost reply); any other was made, and counted, elsewhere.
			r, err = e.store.RunGet(c, run.ID)
			switch {
			case err != nil:
			case !r.Status.Terminal() || r.Attempt != x.fence:
				x.ownerLost.Store(true)
			default:
				elsewhere = !finishedBy(r, x.fence, status, msg, end)
			}
		}
		final = r
		return err
	})
	if x.ownerLost.Load() {
		// Refused here, or by a write that went just before this one (a
		// held task change's delayed write): the run is not ours.
		return x.stopped()
	}
	if err != nil {
		if x.storeLost.Load() {
			return x.run, fmt.Errorf("finish run %s: %w: %w", run.ID, errStoreLost, err)
		}
		return nil, fmt.Errorf("finish run %s: %w", run.ID, err)
	}
	if x.settledFunc != nil {
		x.settledFunc()
	}
	started := run.StartedAt
	if started.IsZero() {
		started = end
	}
	dur := end.Sub(started)
	if elsewhere {
		// Report what is stored, but count nothing: the metrics and the
		// span result belong to whoever finished the run.
		e.cfg.Logger.InfoContext(x.spanCtx, "run finished elsewhere: its end is not counted here",
			LogKeyRunID, run.ID, "status", string(final.Status))
		x.runSpan.SetAttributes(attribute.Bool("pyoco.run.finished_elsewhere", true))
		e.report(Progress{Kind: ProgressRunFinished, RunID: run.ID, FlowName: run.FlowName, TraceID: run.TraceID, Status: string(final.Status), Error: final.Error, Duration: dur})
		return final, nil
	}
	label := flowLabel(run.FlowFile, run.FlowName)
	e.ins.runStatus(x.spanCtx, label, status)
	e.ins.runEnded(x.spanCtx, label, status, dur)
	x.runSpanDone = true
	x.runSpan.SetAttributes(AttrRunStatus.String(string(status)), AttrCICDPipelineResult.String(cicdResult(string(status))))
	if status == RunFailed {
		x.runSpan.SetStatus(codes.Error, msg)
		x.runSpan.RecordError(errors.New(msg))
	}
	e.report(Progress{Kind: ProgressRunFinished, RunID: run.ID, FlowName: run.FlowName, TraceID: run.TraceID, Status: string(status), Error: msg, Duration: dur})
	return final, nil
}

// finishedBy reports whether r's finish is the one written by the execution
// of attempt that asked for status and msg at end. Stores keep times to the
// millisecond at least.
func finishedBy(r *Run, attempt int, status RunStatus, msg string, end time.Time) bool {
	d := r.EndedAt.Sub(end)
	return r.Status == status && r.Error == msg && r.Attempt == attempt &&
		d > -time.Millisecond && d < time.Millisecond
}
