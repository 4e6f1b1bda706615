package engine

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/pyoco/pyoco/internal/backoff"
	"log/slog"
	"runtime/debug"
	"slices"
	"strconv"
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
	run, err := e.runStart(ctx, &RunStartParams{RunID: p.RunID, WorkerID: worker, At: time.Now().UTC(), Lease: p.Lease})
	if err != nil {
		return nil, fmt.Errorf("start run %s: %w", p.RunID, err)
	}
	x := &execution{e: e, bg: bg, ctx: ctx, run: run, lease: p.Lease, fence: run.Attempt, settledFunc: p.SettledFunc, brief: p.Brief}
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
	// SettledFunc, if set, is called once the store has stored this
	// execution's finish (and so settled Lease), before Execute returns: a
	// worker's heartbeat that then finds the lease gone knows the run ended
	// here rather than being taken over.
	SettledFunc func()
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
	// settledFunc is ExecuteParams.SettledFunc.
	settledFunc func()
	brief       bool // ExecuteParams.Brief
	fence       int
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

// plan is a flow's graph by task index (file order), for the scheduler.
type plan struct {
	names []string
	index map[string]int
	specs []*TaskSpec
	up    [][]int
	down  [][]int

	// flowName and inline give the metric labels (see [LabelInline]).
	flowName string
	inline   bool
	// subFlows is true when a task runs a sub-flow (see failOrphans).
	subFlows bool
	// attemptAttrs caches the metric attributes of an attempt's end, by
	// task index·3 + outcome (made on first use: building a set hashes it).
	attemptAttrs []atomic.Pointer[metric.MeasurementOption]
}

// attemptOpt returns the metric attributes {flow, task, status} of an
// attempt of task i that ended with status.
func (p *plan) attemptOpt(i int, status TaskStatus) metric.MeasurementOption {
	k := 0
	switch status {
	case TaskSucceeded:
	case TaskFailed:
		k = 1
	case TaskCancelled:
		k = 2
	default:
		return metric.WithAttributeSet(attribute.NewSet(LabelFlow.String(p.flowName), LabelTask.String(p.taskLabel(i)), LabelStatus.String(string(status))))
	}
	slot := &p.attemptAttrs[i*3+k]
	if o := slot.Load(); o != nil {
		return *o
	}
	o := metric.WithAttributeSet(attribute.NewSet(LabelFlow.String(p.flowName), LabelTask.String(p.taskLabel(i)), LabelStatus.String(string(status))))
	slot.Store(&o)
	return o
}

// taskLabel is the task label value of task i.
func (p *plan) taskLabel(i int) string {
	if p.inline {
		return LabelInline
	}
	return p.names[i]
}

func newPlan(f *Flow) *plan {
	p := &plan{
		names: f.Order,
		index: make(map[string]int, len(f.Order)),
		specs: make([]*TaskSpec, len(f.Order)),
		up:    make([][]int, len(f.Order)),
		down:  make([][]int, len(f.Order)),

		flowName:     flowLabel(f.File, f.Name),
		inline:       f.File == InlineFlowFile,
		attemptAttrs: make([]atomic.Pointer[metric.MeasurementOption], 3*len(f.Order)),
	}
	for i, name := range f.Order {
		p.index[name] = i
		p.specs[i] = f.Tasks[name]
		p.subFlows = p.subFlows || p.specs[i].SubFlow != nil
	}
	for i, s := range p.specs {
		for _, u := range s.Upstream {
			j := p.index[u]
			p.up[i] = append(p.up[i], j)
			p.down[j] = append(p.down[j], i)
		}
	}
	return p
}

// readyQueue is a min-heap of startable task indexes: the first in file
// order starts first.
type readyQueue []int

func (q *readyQueue) push(v int) {
	h := append(*q, v)
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if h[p] <= h[i] {
			break
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
	*q = h
}

func (q *readyQueue) pop() int {
	h := *q
	v := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	for i := 0; ; {
		l, m := 2*i+1, i
		if l < len(h) && h[l] < h[m] {
			m = l
		}
		if r := l + 1; r < len(h) && h[r] < h[m] {
			m = r
		}
		if m == i {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	*q = h
	return v
}

// scheduler is the bookkeeping of one schedule call: per task, how many
// upstream tasks ended and how many succeeded, so that each change costs
// only the task's downstream edges.
type scheduler struct {
	x       *execution
	nDone   []int32
	nOK     []int32
	queued  []bool
	ready   readyQueue
	recheck []int // pending tasks whose upstream changed
}

// settled records that task i reached a terminal status.
func (s *scheduler) settled(i int) {
	ok := s.x.status[i] == TaskSucceeded
	for _, d := range s.x.plan.down[i] {
		s.nDone[d]++
		if ok {
			s.nOK[d]++
		}
		s.recheck = append(s.recheck, d)
	}
}

// check queues the pending task i if its trigger is satisfied, or skips it
// if it never can be.
func (s *scheduler) check(i int) {
	x := s.x
	if x.status[i] != TaskPending || s.queued[i] {
		return
	}
	spec, n := x.plan.specs[i], int32(len(x.plan.up[i]))
	if spec.Trigger == TriggerAny && n > 0 {
		switch {
		case s.nOK[i] > 0:
			s.admit(i)
		case s.nDone[i] == n:
			s.skip(i, "skipped: no upstream task succeeded")
		}
		return
	}
	switch {
	case s.nOK[i] == n:
		s.admit(i)
	case s.nDone[i] > s.nOK[i]:
		for _, u := range x.plan.up[i] {
			if st := x.status[u]; st.Terminal() && st != TaskSucceeded {
				s.skip(i, fmt.Sprintf("skipped: upstream %s %s", x.plan.names[u], st))
				return
			}
		}
	}
}

// admit queues task i, whose trigger is satisfied, unless its switch did
// not take its branch or its when is false (then it is SKIPPED), or its
// switch has not ended yet (then it waits: the switch is upstream, so its
// end checks i again).
func (s *scheduler) admit(i int) {
	x := s.x
	spec := x.plan.specs[i]
	if spec.Branch != "" {
		sw := x.plan.index[spec.Branch]
		st := x.status[sw]
		if !st.Terminal() {
			return
		}
		if st != TaskSucceeded {
			s.skip(i, fmt.Sprintf("skipped: switch %s %s", spec.Branch, st))
			return
		}
		x.mu.Lock()
		dec, _ := x.outputs[spec.Branch].(map[string]any)
		x.mu.Unlock()
		taken, _ := dec["tasks"].([]any)
		if !slices.Contains(taken, any(spec.Name)) {
			s.skip(i, fmt.Sprintf("skipped: switch %s took %s", spec.Branch, describeCase(dec, len(x.plan.specs[sw].Switch.Default) > 0)))
			return
		}
	}
	if spec.When != nil {
		ok, err := spec.When.evalBool(x.exprScope(spec.When, nil, nil))
		switch {
		case err != nil:
			x.status[i], x.errs[i] = TaskFailed, "when: "+err.Error()
			x.endTask(i, TaskFailed, x.errs[i])
			s.settled(i)
			if spec.FailPolicy != FailIsolate {
				x.stop(errFailStop)
			}
			return
		case !ok:
			s.skip(i, "skipped: when "+quoteExpr(spec.When.Text)+" is false")
			return
		}
	}
	s.queue(i)
}

// describeCase says which case a switch's decision (its output) took.
func describeCase(dec map[string]any, hasDefault bool) string {
	c, _ := dec["case"].(string)
	if dec["default"] == true {
		if !hasDefault {
			return fmt.Sprintf("no case (value %q)", c)
		}
		return "the default"
	}
	return fmt.Sprintf("case %q", c)
}

func (s *scheduler) queue(i int) {
	s.queued[i] = true
	s.ready.push(i)
}

func (s *scheduler) skip(i int, reason string) {
	x := s.x
	x.status[i], x.errs[i] = TaskSkipped, reason
	name := x.plan.names[i]
	now := time.Now().UTC()
	x.taskUpdate(&TaskUpdateParams{RunID: x.run.ID, Task: name, Status: TaskSkipped, EndedAt: now, Error: reason})
	x.e.report(Progress{Kind: ProgressTaskFinished, RunID: x.run.ID, FlowName: x.run.FlowName, TraceID: x.run.TraceID, Task: name, Status: string(TaskSkipped), Error: reason})
	s.settled(i)
}

// schedule starts tasks as their triggers allow until every task is
// finished or runCtx is done and nothing runs any more.
func (x *execution) schedule(runCtx context.Context) {
	p := x.plan
	n := len(p.names)
	s := &scheduler{x: x, nDone: make([]int32, n), nOK: make([]int32, n), queued: make([]bool, n)}
	for i := range n {
		if x.status[i].Terminal() {
			s.settled(i)
		}
	}
	s.recheck = s.recheck[:0]
	for i := range n {
		s.recheck = append(s.recheck, i)
	}

	maxPar := x.flow.MaxParallel
	if maxPar <= 0 {
		maxPar = DefaultMaxParallel
	}
	// Up to maxPar long-lived workers run the tasks (their grown stacks are
	// reused). Both channels have room for every task that can be running,
	// so neither side ever blocks the other.
	jobs := make(chan int, maxPar)
	results := make(chan taskResult, maxPar)
	running, workers := 0, 0
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(jobs)
	for {
		if runCtx.Err() == nil {
			// Skips travel down the graph: skipping appends to recheck.
			// A when that fails to evaluate can stop the run.
			for k := 0; k < len(s.recheck) && runCtx.Err() == nil; k++ {
				s.check(s.recheck[k])
			}
			s.recheck = s.recheck[:0]
			for running < maxPar && len(s.ready) > 0 && runCtx.Err() == nil {
				i := s.ready.pop()
				x.status[i] = TaskRunning
				running++
				if workers < running {
					workers++
					wg.Go(func() {
						w := &taskWorker{}
						defer w.stop()
						for i := range jobs {
							results <- x.runTask(runCtx, i, w)
						}
					})
				}
				jobs <- i
			}
		}
		if running == 0 {
			return
		}
		// Running tasks see a cancellation through their contexts; their
		// results keep coming.
		r := <-results
		running--
		x.status[r.i], x.errs[r.i] = r.status, r.err
		s.settled(r.i)
		if r.status == TaskFailed && p.specs[r.i].FailPolicy != FailIsolate {
			x.stop(errFailStop)
		}
	}
}

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

// decide evaluates a switch: its output, the recorded decision that the
// tasks of its branches (and a run taken over later) follow.
func (x *execution) decide(spec *TaskSpec) (any, error) {
	sw := spec.Switch
	v, err := sw.Expr.eval(x.exprScope(sw.Expr, nil, nil))
	if err != nil {
		return nil, &noRetryError{"switch: " + err.Error()}
	}
	key, err := caseKey(v)
	if err != nil {
		return nil, &noRetryError{fmt.Sprintf("switch: expression %s %v", quoteExpr(sw.Expr.Text), err)}
	}
	_, matched := sw.Cases[key]
	tasks := sw.Taken(key)
	if tasks == nil {
		tasks = []string{}
	}
	return map[string]any{"value": v, "case": key, "default": !matched, "tasks": tasks}, nil
}

// exprScope is what expression e sees now: the run's params, the outputs
// so far of the tasks it reads, and the iteration and round output when
// given.
func (x *execution) exprScope(e *Expr, it *Iteration, output any) *exprScope {
	outs := make(map[string]any, len(e.nodes))
	x.mu.Lock()
	for _, name := range e.nodes {
		if v, ok := x.outputs[name]; ok {
			outs[name] = v
		}
	}
	x.mu.Unlock()
	s := &exprScope{params: x.run.Params, outputs: outs, output: output}
	if it != nil {
		s.item, s.index = it.Item, it.Index
	}
	return s
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
	if err == nil && x.ownerLost.Load() {
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
