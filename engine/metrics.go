package engine

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Instrument names. The Prometheus exporter turns them into the SPEC §5
// names (pyoco.runs → pyoco_runs_total, pyoco.run.duration (s) →
// pyoco_run_duration_seconds, …).
const (
	MetricRuns           = "pyoco.runs"
	MetricRunsInProgress = "pyoco.runs.in_progress"
	MetricRunDuration    = "pyoco.run.duration"
	MetricTaskDuration   = "pyoco.task.duration"
	MetricTasks          = "pyoco.tasks"
	MetricQueueWait      = "pyoco.queue.wait"
)

// InlineFlowFile is the [Flow.File] of a flow submitted as text (the API's
// flow_yaml) rather than one this process loaded from its flow files.
const InlineFlowFile = "flow_yaml"

// LabelInline is the flow and task label value of every run of an inline
// flow: any API caller can make up such names, and each distinct label value
// is a series on every process, so they fold into this one value (the real
// names stay on the run, its spans and the API).
const LabelInline = "_inline"

// flowLabel is the flow label value of a flow named name from file.
func flowLabel(file, name string) string {
	if file == InlineFlowFile {
		return LabelInline
	}
	return name
}

// DurationBuckets are the histogram boundaries (seconds) of the duration
// instruments: 5 ms to 1 h.
var DurationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}

type instruments struct {
	runs         metric.Int64Counter
	inProgress   metric.Int64UpDownCounter
	runDuration  metric.Float64Histogram
	taskDuration metric.Float64Histogram
	tasks        metric.Int64Counter
	queueWait    metric.Float64Histogram

	// seenFlows holds the flows whose run counters this process has
	// started at 0 (see touchFlow).
	seenFlows sync.Map
	// runOpts caches the attribute set of each (flow, status) series of
	// the run instruments (bounded like the flow label): building a set
	// sorts and hashes its attributes, for every run otherwise.
	runOpts sync.Map // flowStatus → metric.MeasurementOption
}

func newInstruments(mp metric.MeterProvider) (*instruments, error) {
	m := mp.Meter("github.com/pyoco/pyoco/engine")
	var ins instruments
	var err error
	if ins.runs, err = m.Int64Counter(MetricRuns, metric.WithDescription("Runs entering each status.")); err != nil {
		return nil, err
	}
	if ins.inProgress, err = m.Int64UpDownCounter(MetricRunsInProgress, metric.WithDescription("Runs RUNNING in this process.")); err != nil {
		return nil, err
	}
	if ins.runDuration, err = m.Float64Histogram(MetricRunDuration, metric.WithUnit("s"),
		metric.WithDescription("Start to end of finished runs."), metric.WithExplicitBucketBoundaries(DurationBuckets...)); err != nil {
		return nil, err
	}
	if ins.taskDuration, err = m.Float64Histogram(MetricTaskDuration, metric.WithUnit("s"),
		metric.WithDescription("Duration of each task attempt."), metric.WithExplicitBucketBoundaries(DurationBuckets...)); err != nil {
		return nil, err
	}
	if ins.tasks, err = m.Int64Counter(MetricTasks, metric.WithDescription("Task attempts by final state.")); err != nil {
		return nil, err
	}
	if ins.queueWait, err = m.Float64Histogram(MetricQueueWait, metric.WithUnit("s"),
		metric.WithDescription("Time runs spent PENDING before a worker started them."), metric.WithExplicitBucketBoundaries(DurationBuckets...)); err != nil {
		return nil, err
	}
	return &ins, nil
}

// runStatuses are the statuses whose pyoco_runs_total series start at 0.
var runStatuses = []RunStatus{RunPending, RunRunning, RunCancelling, RunCompleted, RunFailed, RunCancelled}

// taskOutcomes are the final states of an attempt whose pyoco_tasks_total
// series start at 0.
var taskOutcomes = []TaskStatus{TaskSucceeded, TaskFailed, TaskCancelled}

// touchFlow starts the pyoco_runs_total series of every status of flow at 0,
// the first time this process counts a run of it. A counter series that
// appears with its first increment hides that increment from rate() and
// increase() (they need two samples), so without this a dashboard would
// never show a worker's first FAILED run of a flow.
func (ins *instruments) touchFlow(flow string) {
	if _, seen := ins.seenFlows.Load(flow); seen {
		return // the common case: a read, no allocation of a stored value
	}
	if _, seen := ins.seenFlows.LoadOrStore(flow, struct{}{}); seen {
		return
	}
	// The zero adds go without ctx's span (as touchTasks's): an exemplar
	// belongs only on a series that this span's run actually incremented.
	for _, s := range runStatuses {
		ins.runs.Add(context.Background(), 0, ins.runOpt(flow, s))
	}
}

// touchTasks starts the pyoco_tasks_total series of every task of a plan
// at 0, for the same reason, when the engine first loads that flow.
func (ins *instruments) touchTasks(ctx context.Context, p *plan) {
	for i := range p.names {
		for _, s := range taskOutcomes {
			ins.tasks.Add(ctx, 0, p.attemptOpt(i, s))
		}
	}
}

type flowStatus struct {
	flow   string
	status RunStatus
}

// runOpt returns the attributes of the run series of flow and s.
func (ins *instruments) runOpt(flow string, s RunStatus) metric.MeasurementOption {
	k := flowStatus{flow, s}
	if o, ok := ins.runOpts.Load(k); ok {
		return o.(metric.MeasurementOption)
	}
	o, _ := ins.runOpts.LoadOrStore(k, metric.WithAttributeSet(attribute.NewSet(LabelFlow.String(flow), LabelStatus.String(string(s)))))
	return o.(metric.MeasurementOption)
}

func (ins *instruments) runStatus(ctx context.Context, flow string, s RunStatus) {
	ins.touchFlow(flow)
	ins.runs.Add(ctx, 1, ins.runOpt(flow, s))
}

func (ins *instruments) runEnded(ctx context.Context, flow string, s RunStatus, d time.Duration) {
	ins.runDuration.Record(ctx, d.Seconds(), ins.runOpt(flow, s))
}

func (ins *instruments) attemptEnded(ctx context.Context, flow, task string, s TaskStatus, d time.Duration) {
	attrs := metric.WithAttributeSet(attribute.NewSet(LabelFlow.String(flow), LabelTask.String(task), LabelStatus.String(string(s))))
	ins.taskDuration.Record(ctx, d.Seconds(), attrs)
	ins.tasks.Add(ctx, 1, attrs)
}
