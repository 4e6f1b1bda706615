package engine

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Stores and the scheduler wrap them; check with [errors.Is].
var (
	// ErrNotFound: the run (or flow, task, …) does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the change is not allowed in the current state (e.g. cancelling a finished run).
	ErrConflict = errors.New("conflict")
	// ErrCycle: the flow's graph has a cycle.
	ErrCycle = errors.New("cycle")
	// ErrRunCancelled is the cancellation cause of a run that was cancelled on request.
	ErrRunCancelled = errors.New("run cancelled")
	// ErrRunTimeout is the cancellation cause of a run that exceeded its flow timeout.
	ErrRunTimeout = errors.New("run timed out")
	// ErrTaskTimeout is the cancellation cause of a task attempt that exceeded its timeout.
	ErrTaskTimeout = errors.New("task timed out")
	// ErrBadCursor: a RunList cursor that this store did not make.
	ErrBadCursor = errors.New("bad cursor")
	// ErrUnavailable: the store cannot be reached right now; the caller may retry.
	ErrUnavailable = errors.New("store unavailable")
	// ErrFlowTooLarge: a flow file is larger than [MaxFlowFileBytes].
	ErrFlowTooLarge = errors.New("flow file too large")
)

// Position is a place in a flow file. Line and Col are 1-based; zero means unknown.
type Position struct {
	File string `json:"file,omitempty"`
	Line int    `json:"line,omitempty"`
	Col  int    `json:"column,omitempty"`
}

// String formats p as file:line:col, leaving out the unknown parts.
func (p Position) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		if b.Len() > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%d", p.Line)
		if p.Col > 0 {
			fmt.Fprintf(&b, ":%d", p.Col)
		}
	}
	return b.String()
}

// LoadError is one problem found while loading a flow file, at a position.
type LoadError struct {
	Pos Position
	Msg string
	// Err is an optional sentinel such as [ErrCycle].
	Err error
}

func (e *LoadError) Error() string {
	if p := e.Pos.String(); p != "" {
		return p + ": " + e.Msg
	}
	return e.Msg
}

func (e *LoadError) Unwrap() error { return e.Err }

// LoadErrors is every problem found in one flow file, in file order.
// It unwraps to its members, so errors.As(err, **LoadError) finds the first.
type LoadErrors []*LoadError

func (es LoadErrors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap returns the members.
func (es LoadErrors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// InputError reports a task input that does not fit the task's declared type.
type InputError struct {
	Task  string // task use name
	Input string // input name; empty for the whole inputs object
	Msg   string
}

func (e *InputError) Error() string {
	if e.Input == "" {
		return fmt.Sprintf("inputs of %s: %s", e.Task, e.Msg)
	}
	return fmt.Sprintf("input %q of %s: %s", e.Input, e.Task, e.Msg)
}

// TaskError is the error of a failed task attempt.
type TaskError struct {
	Task    string
	Attempt int
	Err     error
}

func (e *TaskError) Error() string {
	return fmt.Sprintf("task %s (attempt %d): %v", e.Task, e.Attempt, e.Err)
}

func (e *TaskError) Unwrap() error { return e.Err }
