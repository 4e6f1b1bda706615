package engine

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"time"
)

// Run is one execution of a flow, as stored. Stores return copies: changing
// a Run returned by a store does not change the store.
type Run struct {
	ID       string
	FlowName string
	// FlowSource is the flow file's text at submit time (the snapshot workers
	// execute); FlowFile is where it came from, for messages only.
	FlowSource string
	FlowFile   string
	Status     RunStatus
	Params     map[string]any
	Tags       []string
	CreatedAt  time.Time
	StartedAt  time.Time // zero until RUNNING
	EndedAt    time.Time // zero until terminal
	// Attempt counts how many times a worker took the run (1 on the first).
	Attempt  int
	WorkerID string
	// TraceID is fixed at creation (32 hex digits); ParentSpanID (16 hex
	// digits) is the submitter's span when the submit carried a traceparent.
	TraceID      string
	ParentSpanID string
	// SpanID (16 hex digits) is the id of the run's "run <flow>" span, fixed
	// at creation like TraceID: the task spans of every attempt, on any
	// worker, are its children, and the execution that finishes the run
	// emits it once. Empty for runs stored before it existed: each
	// execution then makes its own run span.
	SpanID string
	// ParentUnsampled is true when the submitter's traceparent had its
	// sampled flag clear (the zero value keeps it set, as stores that do
	// not know the field restore it).
	ParentUnsampled bool
	// Error is the run's failure reason ("" unless FAILED or CANCELLED).
	Error string
	// ParentRunID is set on a sub-flow's run (docs/flows.md, "Sub-flows"):
	// the run whose task runs it. Such a run is not queued: its parent's
	// execution runs it.
	ParentRunID string
	// FlowIncludes are the flows the snapshot uses through `use: flow/<name>`
	// (transitively), stored with it so that any worker can load it.
	FlowIncludes []FlowInclude
	// Tasks by name. Lists (RunList) leave it nil.
	Tasks map[string]*TaskState
}

// FlowInclude is a flow a snapshot uses through `use: flow/<name>`.
type FlowInclude struct {
	Name   string `json:"name"`
	File   string `json:"file"`
	Source string `json:"source"`
}

// Clone returns a deep copy of r (Params values are shared: treat them as
// immutable).
func (r *Run) Clone() *Run {
	if r == nil {
		return nil
	}
	c := *r
	c.Tags = append([]string(nil), r.Tags...)
	c.FlowIncludes = append([]FlowInclude(nil), r.FlowIncludes...)
	if r.Params != nil {
		c.Params = make(map[string]any, len(r.Params))
		for k, v := range r.Params {
			c.Params[k] = v
		}
	}
	if r.Tasks != nil {
		// One allocation each for the states, the attempts and the outputs
		// of all tasks (a run may have thousands); the slices are capped so
		// that appending to one task's never reaches another's.
		c.Tasks = make(map[string]*TaskState, len(r.Tasks))
		states := make([]TaskState, 0, len(r.Tasks))
		nAtt, nOut := 0, 0
		for _, t := range r.Tasks {
			if t != nil {
				nAtt += len(t.Attempts)
				nOut += len(t.Output)
			}
		}
		attempts := make([]Attempt, 0, nAtt)
		outputs := make([]byte, 0, nOut)
		for k, t := range r.Tasks {
			if t == nil {
				c.Tasks[k] = nil
				continue
			}
			states = append(states, *t)
			ct := &states[len(states)-1]
			ct.Attempts, ct.Output = nil, nil
			if len(t.Attempts) > 0 {
				n := len(attempts)
				attempts = append(attempts, t.Attempts...)
				ct.Attempts = attempts[n:len(attempts):len(attempts)]
			}
			if len(t.Output) > 0 {
				n := len(outputs)
				outputs = append(outputs, t.Output...)
				ct.Output = json.RawMessage(outputs[n:len(outputs):len(outputs)])
			}
			c.Tasks[k] = ct
		}
	}
	return &c
}

// TaskState is the state of one task of a run.
type TaskState struct {
	Name   string
	Use    string
	Status TaskStatus
	// StartedAt is the start of the first attempt; EndedAt the end of the last.
	StartedAt time.Time
	EndedAt   time.Time
	Attempts  []Attempt
	Error     string
	// Output is the JSON output of the successful attempt (capped; see
	// OutputTruncated).
	Output          json.RawMessage
	OutputTruncated bool
}

// Clone returns a deep copy of t.
func (t *TaskState) Clone() *TaskState {
	if t == nil {
		return nil
	}
	c := *t
	c.Attempts = append([]Attempt(nil), t.Attempts...)
	c.Output = append(json.RawMessage(nil), t.Output...)
	if t.Output == nil {
		c.Output = nil
	}
	return &c
}

// Duration is EndedAt-StartedAt, or zero when either is unset.
func (t *TaskState) Duration() time.Duration {
	if t.StartedAt.IsZero() || t.EndedAt.IsZero() {
		return 0
	}
	return t.EndedAt.Sub(t.StartedAt)
}

// Attempt records one attempt of a task.
type Attempt struct {
	Number    int        `json:"attempt"`
	Status    TaskStatus `json:"status"`
	StartedAt time.Time  `json:"started_at"`
	EndedAt   time.Time  `json:"ended_at,omitzero"`
	Error     string     `json:"error,omitempty"`
	WorkerID  string     `json:"worker_id,omitempty"`
	SpanID    string     `json:"span_id,omitempty"`
	// ChildRunID is the run of a sub-flow task's attempt.
	ChildRunID string `json:"child_run_id,omitempty"`
}

// LogEntry is one line of a run's logs (SPEC §4).
type LogEntry struct {
	Seq       int64     `json:"seq"`
	Task      string    `json:"task"`
	Stream    string    `json:"stream"` // stdout, stderr or log
	Level     string    `json:"level"`
	Text      string    `json:"text"`
	Timestamp time.Time `json:"timestamp"`
	TraceID   string    `json:"trace_id"`
	SpanID    string    `json:"span_id"`
}

// Log streams.
const (
	StreamStdout = "stdout"
	StreamStderr = "stderr"
	StreamLog    = "log"
)

// Event is a change of a run's status, recorded by the store in the same
// atomic step as the change. Webhooks and followers read them.
type Event struct {
	// ID is assigned by the store and increases in append order.
	ID       string    `json:"id"`
	RunID    string    `json:"run_id"`
	FlowName string    `json:"flow_name"`
	Status   RunStatus `json:"status"`
	Time     time.Time `json:"time"`
}

// NewRunID returns a new UUIDv7 (RFC 9562): sortable by creation time.
func NewRunID() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	ms := uint64(time.Now().UnixMilli())
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], ms)
	copy(u[0:6], ts[2:8])
	u[6] = (u[6] & 0x0f) | 0x70 // version 7
	u[8] = (u[8] & 0x3f) | 0x80 // variant 10
	return formatUUID(u)
}

// formatUUID writes u in the 8-4-4-4-12 hex form.
func formatUUID(u [16]byte) string {
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return string(b[:])
}
