// Package apidoc holds the JSON shapes of runs and tasks that the API
// serves (SPEC §4), shared by the api server, webhook payloads and the CLI
// client. It imports only engine and the standard library.
package apidoc

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/pyoco/pyoco/engine"
)

// Timestamp marshals a time as RFC 3339 UTC with milliseconds
// ("2026-01-02T15:04:05.123Z"), and a zero time as null.
type Timestamp time.Time

// TimestampLayout is the layout of [Timestamp].
const TimestampLayout = "2006-01-02T15:04:05.000Z07:00"

// MarshalJSON implements json.Marshaler.
func (t Timestamp) MarshalJSON() ([]byte, error) {
	tt := time.Time(t)
	if tt.IsZero() {
		return []byte("null"), nil
	}
	return json.Marshal(tt.UTC().Format(TimestampLayout))
}

// UnmarshalJSON implements json.Unmarshaler.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*t = Timestamp{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	tt, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return err
	}
	*t = Timestamp(tt)
	return nil
}

// RunSummaryDoc is the JSON shape of a run in lists (SPEC §4 RunSummary).
type RunSummaryDoc struct {
	RunID         string           `json:"run_id"`
	FlowName      string           `json:"flow_name"`
	Status        engine.RunStatus `json:"status"`
	Tags          []string         `json:"tags"`
	CreatedAt     Timestamp        `json:"created_at"`
	StartTime     Timestamp        `json:"start_time"`
	EndTime       Timestamp        `json:"end_time"`
	RunDurationMS *int64           `json:"run_duration_ms"`
	QueueWaitMS   *int64           `json:"queue_wait_ms"`
	Attempt       int              `json:"attempt"`
	WorkerID      string           `json:"worker_id"`
	TraceID       string           `json:"trace_id"`
	Error         *string          `json:"error"`
}

// RunDoc is the JSON shape of one run (SPEC §4 Run): the summary, params,
// task_summary and tasks.
type RunDoc struct {
	RunSummaryDoc
	Params      map[string]any            `json:"params"`
	TaskSummary map[string]TaskSummaryDoc `json:"task_summary"`
	Tasks       map[string]TaskDoc        `json:"tasks"`
	// ParentRunID is set on a sub-flow's run; Children are the sub-flow
	// runs of this run's tasks (every attempt's), in task order.
	ParentRunID *string  `json:"parent_run_id"`
	Children    []string `json:"children"`
}

// TaskSummaryDoc is one entry of a run's task_summary.
type TaskSummaryDoc struct {
	State      engine.TaskStatus `json:"state"`
	DurationMS *int64            `json:"duration_ms"`
	Attempts   int               `json:"attempts"`
	EndedAt    Timestamp         `json:"ended_at"`
}

// TaskDoc is one entry of a run's tasks.
type TaskDoc struct {
	State           engine.TaskStatus `json:"state"`
	Use             string            `json:"use"`
	StartedAt       Timestamp         `json:"started_at"`
	EndedAt         Timestamp         `json:"ended_at"`
	DurationMS      *int64            `json:"duration_ms"`
	Attempts        int               `json:"attempts"`
	Error           *string           `json:"error"`
	Output          json.RawMessage   `json:"output"`
	OutputTruncated bool              `json:"output_truncated,omitempty"`
	AttemptLog      []engine.Attempt  `json:"attempt_log,omitempty"`
}

// DefaultDocOutputBytes is the output cap of [NewRunDoc] when given 0.
const DefaultDocOutputBytes = 64 << 10

func msBetween(a, b time.Time) *int64 {
	if a.IsZero() || b.IsZero() {
		return nil
	}
	ms := b.Sub(a).Milliseconds()
	return &ms
}

func strPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// NewRunSummaryDoc builds the RunSummary of r.
func NewRunSummaryDoc(r *engine.Run) RunSummaryDoc {
	tags := r.Tags
	if tags == nil {
		tags = []string{}
	}
	return RunSummaryDoc{
		RunID: r.ID, FlowName: r.FlowName, Status: r.Status, Tags: slices.Clone(tags),
		CreatedAt: Timestamp(r.CreatedAt), StartTime: Timestamp(r.StartedAt), EndTime: Timestamp(r.EndedAt),
		RunDurationMS: msBetween(r.StartedAt, r.EndedAt), QueueWaitMS: msBetween(r.CreatedAt, r.StartedAt),
		Attempt: r.Attempt, WorkerID: r.WorkerID, TraceID: r.TraceID, Error: strPtr(r.Error),
	}
}

// children lists the sub-flow runs of r's tasks, in task row order.
func children(r *engine.Run) []string {
	out := []string{}
	rows := make([]string, 0, len(r.Tasks))
	for name := range r.Tasks {
		rows = append(rows, name)
	}
	slices.Sort(rows)
	for _, name := range rows {
		for _, a := range r.Tasks[name].Attempts {
			if a.ChildRunID != "" && !slices.Contains(out, a.ChildRunID) {
				out = append(out, a.ChildRunID)
			}
		}
	}
	return out
}

// NewRunDoc builds the Run document of r. Outputs longer than outputCap
// bytes (0: [DefaultDocOutputBytes]; -1: no cap) are replaced by a JSON
// string holding their beginning, with output_truncated set.
func NewRunDoc(r *engine.Run, outputCap int) RunDoc {
	if outputCap == 0 {
		outputCap = DefaultDocOutputBytes
	}
	d := RunDoc{
		RunSummaryDoc: NewRunSummaryDoc(r),
		Params:        r.Params,
		TaskSummary:   make(map[string]TaskSummaryDoc, len(r.Tasks)),
		Tasks:         make(map[string]TaskDoc, len(r.Tasks)),
		ParentRunID:   strPtr(r.ParentRunID),
		Children:      children(r),
	}
	if d.Params == nil {
		d.Params = map[string]any{}
	}
	for name, t := range r.Tasks {
		dur := msBetween(t.StartedAt, t.EndedAt)
		d.TaskSummary[name] = TaskSummaryDoc{State: t.Status, DurationMS: dur, Attempts: len(t.Attempts), EndedAt: Timestamp(t.EndedAt)}
		td := TaskDoc{
			State: t.Status, Use: t.Use, StartedAt: Timestamp(t.StartedAt), EndedAt: Timestamp(t.EndedAt),
			DurationMS: dur, Attempts: len(t.Attempts), Error: strPtr(t.Error),
			Output: t.Output, OutputTruncated: t.OutputTruncated, AttemptLog: t.Attempts,
		}
		if len(td.Output) == 0 {
			td.Output = json.RawMessage("null")
		} else if outputCap > 0 && len(td.Output) > outputCap {
			cut, _ := json.Marshal(string(td.Output[:outputCap]))
			td.Output, td.OutputTruncated = cut, true
		}
		d.Tasks[name] = td
	}
	return d
}
