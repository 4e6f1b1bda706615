package engine

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	otellog "go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Config tunes an [Engine]. The zero value is usable: every field has a default.
type Config struct {
	// WorkerID names this process in runs, spans and logs. Defaults to
	// "<hostname>-<pid>".
	WorkerID string
	// TracerProvider defaults to otel.GetTracerProvider(). Install
	// [IDGenerator] in it so runs keep the trace id fixed at submit.
	TracerProvider trace.TracerProvider
	// MeterProvider defaults to otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
	// LoggerProvider, if set, receives every task log entry as an
	// OpenTelemetry log record too (besides the store), carrying the
	// attempt's trace and span ids and a severity. Nil emits none.
	LoggerProvider otellog.LoggerProvider
	// Logger receives the engine's own operational records. Defaults to
	// discarding them.
	Logger *slog.Logger
	// Observer, if set, is called for each step of every run this engine
	// executes (for live progress). It is called from several goroutines
	// at once and must not block.
	Observer func(Progress)
	// LogMaxEntries caps the log entries one run stores (over all its
	// executions); the last one is [LogTruncatedMarker]. Defaults to 10000;
	// -1 disables.
	LogMaxEntries int
	// LogMaxEntryBytes cuts longer log entries. Defaults to 8192.
	LogMaxEntryBytes int
	// OutputMaxBytes fails attempts whose JSON output is larger. Defaults to 1 MiB.
	OutputMaxBytes int
	// CancelPollInterval is how often a run checks the store for a
	// cancellation request when the store is not a [CancelNotifier].
	// Defaults to 1s.
	CancelPollInterval time.Duration
	// LookupEnv resolves $env references. Defaults to os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// TaskGracePeriod is how long a task attempt whose context ended
	// (time-out, cancellation, hand-back) may take to return. Past it the
	// attempt is abandoned: it ends as if it had returned then, and what
	// its function still writes or returns is dropped. Defaults to 10s.
	TaskGracePeriod time.Duration
}

func (c *Config) withDefaults() (Config, error) {
	var cfg Config
	if c != nil {
		cfg = *c
	}
	if cfg.WorkerID == "" {
		host, _ := os.Hostname()
		cfg.WorkerID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if cfg.TracerProvider == nil {
		cfg.TracerProvider = otel.GetTracerProvider()
	}
	if cfg.MeterProvider == nil {
		cfg.MeterProvider = otel.GetMeterProvider()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	switch {
	case cfg.LogMaxEntries == 0:
		cfg.LogMaxEntries = 10000
	case cfg.LogMaxEntries < -1:
		return cfg, fmt.Errorf("engine config: LogMaxEntries %d: want -1, 0 or more", cfg.LogMaxEntries)
	}
	switch {
	case cfg.LogMaxEntryBytes == 0:
		cfg.LogMaxEntryBytes = 8192
	case cfg.LogMaxEntryBytes < 16:
		return cfg, fmt.Errorf("engine config: LogMaxEntryBytes %d: want at least 16", cfg.LogMaxEntryBytes)
	}
	switch {
	case cfg.OutputMaxBytes == 0:
		cfg.OutputMaxBytes = 1 << 20
	case cfg.OutputMaxBytes < 0:
		return cfg, fmt.Errorf("engine config: OutputMaxBytes %d: want 0 or more", cfg.OutputMaxBytes)
	}
	switch {
	case cfg.CancelPollInterval == 0:
		cfg.CancelPollInterval = time.Second
	case cfg.CancelPollInterval < 0:
		return cfg, fmt.Errorf("engine config: CancelPollInterval %s: want a positive duration", cfg.CancelPollInterval)
	}
	if cfg.LookupEnv == nil {
		cfg.LookupEnv = os.LookupEnv
	}
	switch {
	case cfg.TaskGracePeriod == 0:
		cfg.TaskGracePeriod = 10 * time.Second
	case cfg.TaskGracePeriod < 0:
		return cfg, fmt.Errorf("engine config: TaskGracePeriod %s: want a positive duration", cfg.TaskGracePeriod)
	}
	return cfg, nil
}

// Engine submits and executes runs against a [Store] with the tasks of a
// [Registry]. It is safe for concurrent use: one Engine executes many runs
// at once.
type Engine struct {
	store  Store
	reg    *Registry
	cfg    Config
	tracer trace.Tracer
	ins    *instruments
	flows  flowCache
	// logger emits task log records; nil without Config.LoggerProvider.
	logger otellog.Logger
	// commit is the group commit of executions' writes (nil unless the
	// store is a [BatchWriter]).
	commit *committer
}

// New returns an Engine. It returns an error for a nil store or registry
// or a bad Config.
func New(store Store, reg *Registry, cfg *Config) (*Engine, error) {
	if store == nil || reg == nil {
		return nil, errors.New("engine: store and registry are required")
	}
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ins, err := newInstruments(c.MeterProvider)
	if err != nil {
		return nil, fmt.Errorf("engine: create instruments: %w", err)
	}
	e := &Engine{
		store:  store,
		reg:    reg,
		cfg:    c,
		tracer: c.TracerProvider.Tracer("github.com/pyoco/pyoco/engine"),
		ins:    ins,
	}
	if bw, ok := store.(BatchWriter); ok {
		e.commit = &committer{bw: bw}
	}
	if c.LoggerProvider != nil {
		e.logger = c.LoggerProvider.Logger("github.com/pyoco/pyoco/engine")
	}
	return e, nil
}

// Registry returns the engine's task registry.
func (e *Engine) Registry() *Registry { return e.reg }

// CountersStart starts at 0 the pyoco_runs_total series of every run
// status and the pyoco_tasks_total series of every task and outcome of
// each flow, as a process does at start for the flows it knows (a server's
// flow directory, the flow of `pyoco run`). A counter series that appears
// with its first increment hides that increment from increase() and rate(),
// so without this the runs finished before the first scrape after a restart
// would not count. Runs of other flows start their series at their first
// run. Safe for concurrent use; touching a flow again changes nothing.
func (e *Engine) CountersStart(flows ...*Flow) {
	for _, f := range flows {
		if f == nil {
			continue
		}
		e.ins.touchFlow(flowLabel(f.File, f.Name))
		e.ins.touchTasks(context.Background(), newPlan(f))
	}
}

// Store returns the engine's store.
func (e *Engine) Store() Store { return e.store }

// WorkerID returns the id this engine records in the runs it executes.
func (e *Engine) WorkerID() string { return e.cfg.WorkerID }

// SubmitParams are the arguments of [Engine.Submit].
type SubmitParams struct {
	Flow *Flow
	// Params override the flow's defaults.
	Params map[string]any
	Tags   []string
	// TraceParent, a W3C traceparent, makes the run's trace a child of the
	// caller's. Malformed values are ignored.
	TraceParent string
	// RunID defaults to a new UUIDv7.
	RunID string
	// TraceID, when TraceParent is not valid, is the run's trace (32 hex
	// digits; a sub-flow's run is in its parent's trace even when tracing is off).
	TraceID string
	// ParentRunID makes the run a sub-flow's (not queued: the parent's
	// execution runs it).
	ParentRunID string
	// Tick, when set, submits the run as one tick of a flow schedule: the
	// store claims the tick and creates the run in one step (see
	// [ScheduleStore]), so the run exists only if this call claimed the
	// tick; ErrConflict otherwise. The store must be a [ScheduleStore].
	Tick *ScheduleTick
}

// Submit creates a PENDING run of p.Flow with a snapshot of its source and
// a trace id fixed now. It does not execute it (see [Engine.Execute]).
func (e *Engine) Submit(ctx context.Context, p *SubmitParams) (*Run, error) {
	if p == nil || p.Flow == nil {
		return nil, errors.New("submit: flow is required")
	}
	f := p.Flow
	run := &Run{
		ID:         p.RunID,
		FlowName:   f.Name,
		FlowSource: f.Source,
		FlowFile:   f.File,
		Status:     RunPending,
		Params:     f.Params(p.Params),
		Tags:       slices.Clone(p.Tags),
		CreatedAt:  time.Now().UTC(),
		Tasks:      make(map[string]*TaskState, len(f.Tasks)),

		ParentRunID:  p.ParentRunID,
		FlowIncludes: f.Includes(),
	}
	if run.ID == "" {
		run.ID = NewRunID()
	}
	if sc, ok := ParseTraceParent(p.TraceParent); ok {
		run.TraceID = sc.TraceID().String()
		run.ParentSpanID = sc.SpanID().String()
		run.ParentUnsampled = !sc.IsSampled()
	} else if tid, err := trace.TraceIDFromHex(p.TraceID); err == nil && tid.IsValid() {
		run.TraceID = tid.String()
	} else {
		run.TraceID = NewTraceID().String()
	}
	run.SpanID = NewSpanID().String()
	for _, name := range f.Order {
		run.Tasks[name] = &TaskState{Name: name, Use: f.Tasks[name].Use, Status: TaskPending}
	}
	if err := e.createRun(ctx, run, p.Tick); err != nil { // schedule_submit.go
		return nil, fmt.Errorf("submit %s: %w", f.Name, err)
	}
	e.ins.runStatus(ctx, flowLabel(f.File, f.Name), RunPending)
	return run, nil // the store keeps its own copy
}

// Cancel asks for run id to be cancelled: a PENDING run is CANCELLED at
// once, a RUNNING one goes CANCELLING and its executor stops its tasks.
// It returns the new status; ErrConflict if the run is finished.
func (e *Engine) Cancel(ctx context.Context, id string) (RunStatus, error) {
	st, err := e.store.RunCancel(ctx, &RunCancelParams{RunID: id, At: time.Now().UTC()})
	if err != nil {
		return st, fmt.Errorf("cancel run %s: %w", id, err)
	}
	if st == RunCancelled {
		// A PENDING run ended here; no executor will count it.
		if run, err := e.store.RunGet(ctx, id); err == nil {
			e.ins.runStatus(ctx, flowLabel(run.FlowFile, run.FlowName), RunCancelled)
		}
	}
	return st, nil
}

// flowCacheSize bounds the flow snapshots an Engine keeps loaded.
const flowCacheSize = 64

// flowCache keeps recently executed flow snapshots loaded (with their
// scheduling plan), keyed by their file name and text: a worker executing
// the same flow again does not parse it again. Flows are immutable.
type flowCache struct {
	mu      sync.Mutex
	entries map[flowKey]*cachedFlow
	order   []flowKey // oldest first
}

type flowKey struct{ file, source, includes string }

// includesKey identifies a run's FlowIncludes in the flow cache.
func includesKey(incs []FlowInclude) string {
	if len(incs) == 0 {
		return ""
	}
	h := sha256.New()
	for _, in := range incs {
		fmt.Fprintf(h, "%d:%s%d:%s%d:%s", len(in.Name), in.Name, len(in.File), in.File, len(in.Source), in.Source)
	}
	return string(h.Sum(nil))
}

// includeLookup resolves `use: flow/<name>` of a run's snapshot from the
// flows stored with it.
type includeLookup struct {
	TaskLookup
	incs    []FlowInclude
	loaded  map[string]*Flow
	loading map[string]bool
}

// LookupFlow implements [FlowLookup].
func (l *includeLookup) LookupFlow(name string) (*Flow, bool) {
	if f, ok := l.loaded[name]; ok {
		return f, true
	}
	if l.loading[name] {
		return nil, false // a cycle: the stored includes were not made by this loader
	}
	for _, in := range l.incs {
		if in.Name != name {
			continue
		}
		l.loading[name] = true
		f, err := LoadFlow(in.File, []byte(in.Source), l)
		delete(l.loading, name)
		if err != nil {
			return nil, false
		}
		l.loaded[name] = f
		return f, true
	}
	return nil, false
}

type cachedFlow struct {
	flow *Flow
	plan *plan
}

// loadSnapshot returns the loaded flow snapshot of run and its plan.
func (e *Engine) loadSnapshot(run *Run) (*Flow, *plan, error) {
	k := flowKey{run.FlowFile, run.FlowSource, includesKey(run.FlowIncludes)}
	c := &e.flows
	c.mu.Lock()
	if cf, ok := c.entries[k]; ok {
		c.mu.Unlock()
		return cf.flow, cf.plan, nil
	}
	c.mu.Unlock()
	var tasks TaskLookup = e.reg
	if len(run.FlowIncludes) > 0 {
		tasks = &includeLookup{TaskLookup: e.reg, incs: run.FlowIncludes, loaded: map[string]*Flow{}, loading: map[string]bool{}}
	}
	flow, err := LoadFlow(run.FlowFile, []byte(run.FlowSource), tasks)
	if err != nil {
		return nil, nil, err
	}
	cf := &cachedFlow{flow: flow, plan: newPlan(flow)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = make(map[flowKey]*cachedFlow)
	}
	if _, ok := c.entries[k]; !ok {
		e.ins.touchTasks(context.Background(), cf.plan)
		if len(c.order) >= flowCacheSize {
			delete(c.entries, c.order[0])
			c.order = c.order[1:]
		}
		c.entries[k] = cf
		c.order = append(c.order, k)
	}
	return cf.flow, cf.plan, nil
}
