package engine

import "time"

// Flow is a loaded, validated flow file (flow.yaml version 1). Build one with
// [LoadFlow]; a Flow is immutable once loaded and safe to share between runs.
type Flow struct {
	Name        string
	Description string
	// Defaults are the default params; run params override them key by key.
	Defaults map[string]any
	// MaxParallel bounds the tasks running at once. Defaults to 8.
	MaxParallel int
	// Timeout bounds the whole run; zero means none.
	Timeout time.Duration
	// Graph is the graph DSL text, as written.
	Graph string
	// Tasks by name; Order lists the names in file order.
	Tasks map[string]*TaskSpec
	Order []string
	// Source is the flow file's text: the snapshot stored with every run.
	Source string
	// File is the path the flow was loaded from ("" for inline text).
	File string
	// Schedules are the entries of flow.schedule, in file order: when a
	// server starts runs of the flow on its own (see [Schedule]).
	Schedules []*Schedule
	// Warnings are non-fatal findings of the loader (unused params, …).
	Warnings []*LoadError
}

// FailPolicy says what a task's failure does to the rest of the run.
type FailPolicy string

// Fail policies.
const (
	FailStop    FailPolicy = "stop"
	FailIsolate FailPolicy = "isolate"
)

// Trigger says which upstream results let a task start.
type Trigger string

// Triggers.
const (
	TriggerAll Trigger = "all"
	TriggerAny Trigger = "any"
)

// Default values of task and flow settings.
const (
	DefaultMaxParallel   = 8
	DefaultRetryMaxDelay = time.Minute
)

// TaskSpec is one entry of a flow's tasks: what to run and how.
type TaskSpec struct {
	Name string
	// Use names the task implementation in the [Registry].
	Use    string
	Inputs map[string]any
	// Retries is the number of extra attempts after the first.
	Retries int
	// RetryDelay is the first back-off; it doubles each attempt up to RetryMaxDelay.
	RetryDelay    time.Duration
	RetryMaxDelay time.Duration
	// Timeout bounds each attempt; zero means none.
	Timeout    time.Duration
	FailPolicy FailPolicy
	Trigger    Trigger
	// Upstream is the union of graph edges and depends_on, sorted.
	Upstream []string
	// Pos is where the task is declared.
	Pos Position
}

// Downstream returns, for each task, the tasks that depend on it, in file order.
func (f *Flow) Downstream() map[string][]string {
	down := make(map[string][]string, len(f.Tasks))
	for _, name := range f.Order {
		for _, up := range f.Tasks[name].Upstream {
			down[up] = append(down[up], name)
		}
	}
	return down
}

// Params merges run params over the flow defaults (a shallow merge by key).
func (f *Flow) Params(params map[string]any) map[string]any {
	out := make(map[string]any, len(f.Defaults)+len(params))
	for k, v := range f.Defaults {
		out[k] = v
	}
	for k, v := range params {
		out[k] = v
	}
	return out
}
