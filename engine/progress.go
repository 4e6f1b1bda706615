package engine

import "time"

// ProgressKind says what a [Progress] report is about.
type ProgressKind int

// Progress kinds, in the order a run produces them.
const (
	ProgressRunStarted ProgressKind = iota + 1
	ProgressTaskStarted
	ProgressTaskRetrying
	ProgressTaskFinished
	ProgressRunCancelling
	ProgressRunFinished
	// ProgressTaskLog is one log entry of a task (its logger, stdout or
	// stderr) as it is stored; it may come at any point between
	// ProgressTaskStarted and ProgressTaskFinished of that task.
	ProgressTaskLog
)

// Progress reports one step of a run to [Config.Observer].
type Progress struct {
	Kind     ProgressKind
	Time     time.Time
	RunID    string
	FlowName string
	TraceID  string
	// Task and Attempt are set for task reports.
	Task    string
	Attempt int
	// Status is the task's (task reports) or the run's (run reports) status.
	Status string
	// Error is the failure of the attempt or the run.
	Error string
	// Duration of the attempt (task reports) or the run (RunFinished).
	Duration time.Duration
	// RetryIn is the back-off before the next attempt (TaskRetrying).
	RetryIn time.Duration
	// Stream ("stdout", "stderr" or "log"), Level and Text are set for
	// ProgressTaskLog.
	Stream, Level, Text string
}

func (e *Engine) report(p Progress) {
	if e.cfg.Observer != nil {
		if p.Time.IsZero() {
			p.Time = time.Now()
		}
		e.cfg.Observer(p)
	}
}
