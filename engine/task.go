package engine

import (
	"context"
	"io"
	"log/slog"
)

// TaskFunc runs one attempt of a task. inputs are the task's inputs with every
// reference resolved. The returned output must be JSON-serialisable. The
// function must return promptly once ctx is done (cancellation, timeout).
type TaskFunc func(ctx context.Context, tc *TaskContext, inputs map[string]any) (any, error)

// Param describes one input or output of a task.
type Param struct {
	Name string `json:"name"`
	// Type is a JSON type name: string, number, integer, boolean, object,
	// array, duration (a string such as "1s"), or any.
	Type string `json:"type"`
	// Items is the type of every member of an object or array input (the
	// values of shell's env are strings), in the names of Type; "" leaves
	// them unchecked.
	Items       string `json:"items,omitempty"`
	Required    bool   `json:"required,omitempty"`
	Description string `json:"description,omitempty"`
}

// TaskDef is a task implementation and its metadata, as registered in a
// [Registry].
type TaskDef struct {
	// Name is the full name used in `use:` (plug-in tasks: "<plugin>/<task>").
	Name string
	// Plugin is the plug-in that provides the task ("builtin" for built-ins).
	Plugin   string
	Summary  string
	Tags     []string
	Category string
	Inputs   []Param
	Outputs  []Param
	// StrictInputs says that the task refuses, at run time, an input it
	// does not declare in Inputs (as a task run through [Typed] does): the
	// flow loader then reports such an input as an error, not a warning.
	StrictInputs bool
	Run          TaskFunc
}

// TaskContext is what a running task attempt knows about itself. It is
// created by the scheduler for each attempt; tasks must not keep it after
// returning.
type TaskContext struct {
	RunID    string
	FlowName string
	Task     string // the task's name in the flow
	Use      string
	Attempt  int // 1-based
	Params   map[string]any
	// Logger writes structured records into the run's logs (stream "log").
	Logger *slog.Logger
	// Stdout and Stderr take raw output; each line becomes a log entry of
	// stream "stdout" or "stderr". Partial lines are flushed when the attempt ends.
	Stdout, Stderr io.Writer
	// TraceParent is the W3C traceparent of the attempt's span, to pass on to
	// child processes and outgoing requests ("" when tracing is off).
	TraceParent string
}
