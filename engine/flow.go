package engine

import (
	"slices"
	"strconv"
	"strings"
	"time"
)

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
	// Upstream is the union of graph edges and depends_on (and, for a
	// task on a switch's branch, the switch), sorted.
	Upstream []string

	// When, if set, is evaluated when the task could start: false makes it
	// SKIPPED (docs/flows.md, "when").
	When *Expr
	// Switch, if set, makes the task a switch: it runs no implementation but
	// picks the branches to run (Use is "switch").
	Switch *Switch
	// Branch is the switch whose branches list this task ("" if none): it
	// runs only if that switch took a case that lists it.
	Branch string
	// Foreach, if set, runs the task once per item of the list it gives,
	// at most ForeachParallel at once (0: the flow's max_parallel).
	Foreach         *Expr
	ForeachParallel int
	// Until, if set, re-runs the task (each round an attempt) until it holds
	// over the round's output, at most Repeat.Max rounds.
	Until  *Expr
	Repeat Repeat
	// SubFlow, if set, is the flow the task runs as a child run (`use:
	// flow/<name>`, SubFlowName set, or an inline `flow_yaml`); the task's
	// inputs are its params, its output the child's task outputs.
	SubFlow     *Flow
	SubFlowName string
	// Pos is where the task is declared.
	Pos Position
}

// Includes returns the flows f uses through `use: flow/<name>`, at any
// depth (also inside inline sub-flows), once each by name: what a run's
// snapshot stores so that any worker can load it.
func (f *Flow) Includes() []FlowInclude {
	var out []FlowInclude
	seen := map[string]bool{}
	var walk func(*Flow)
	walk = func(f *Flow) {
		for _, name := range f.Order {
			spec := f.Tasks[name]
			if spec.SubFlow == nil {
				continue
			}
			if spec.SubFlowName != "" && !seen[spec.SubFlowName] {
				seen[spec.SubFlowName] = true
				out = append(out, FlowInclude{Name: spec.SubFlowName, File: spec.SubFlow.File, Source: spec.SubFlow.Source})
			}
			walk(spec.SubFlow)
		}
	}
	walk(f)
	return out
}

// Switch is a switch task: Expr's value, as a case key (see
// docs/flows.md), picks the case whose tasks run; the others are SKIPPED.
type Switch struct {
	Expr *Expr
	// Cases by key, in file order in CaseKeys.
	Cases    map[string][]string
	CaseKeys []string
	// Default runs when no case matches (may be empty).
	Default []string
}

// Taken returns the tasks of case key ("" for the default).
func (s *Switch) Taken(key string) []string {
	if tasks, ok := s.Cases[key]; ok {
		return tasks
	}
	return s.Default
}

// Repeat bounds an until loop.
type Repeat struct {
	// Max is the number of rounds at most (at least 1).
	Max int
	// Interval is the wait between rounds.
	Interval time.Duration
}

// Limits of control flow.
const (
	// MaxForeachItems bounds the list a foreach runs over.
	MaxForeachItems = 10000
	// MaxRepeat bounds repeat.max.
	MaxRepeat = 10000
	// UseSwitch is the Use of a switch task.
	UseSwitch = "switch"
)

// IterationName is the task row of iteration index of foreach task name:
// "name[index]".
func IterationName(name string, index int) string {
	return name + "[" + strconv.Itoa(index) + "]"
}

// IterationOf reports the foreach task and index of an iteration row
// ("name[3]" gives "name", 3); ok is false for any other task name. Task
// names cannot hold '[', so this is unambiguous.
func IterationOf(row string) (name string, index int, ok bool) {
	if !strings.HasSuffix(row, "]") {
		return "", 0, false
	}
	open := strings.LastIndexByte(row, '[')
	if open <= 0 {
		return "", 0, false
	}
	n, err := strconv.Atoi(row[open+1 : len(row)-1])
	if err != nil || n < 0 || strconv.Itoa(n) != row[open+1:len(row)-1] {
		return "", 0, false
	}
	return row[:open], n, true
}

// TaskRows lists the task rows of a run in order: each task of order,
// followed by its foreach iterations by index.
func TaskRows(tasks map[string]*TaskState, order []string) []string {
	iters := map[string][]int{}
	for row := range tasks {
		if name, i, ok := IterationOf(row); ok {
			iters[name] = append(iters[name], i)
		}
	}
	out := make([]string, 0, len(tasks))
	for _, name := range order {
		out = append(out, name)
		idx := iters[name]
		slices.Sort(idx)
		for _, i := range idx {
			out = append(out, IterationName(name, i))
		}
	}
	return out
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
