package webhooks

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/pyoco/pyoco/api/apidoc"
	"github.com/pyoco/pyoco/engine"
)

// MaxPayloadBytes bounds a delivery's body: outputs, attempt logs, long
// errors and, if need be, params and task details are cut to stay below it
// (the payload then says "truncated": true).
const MaxPayloadBytes = 20000

// Cuts applied to a payload before anything is dropped.
const (
	payloadOutputBytes = 2048
	payloadErrorRunes  = 1000
	slackErrorRunes    = 500
)

// EventType returns the event of a run reaching status st ("" for a
// non-terminal status).
func EventType(st engine.RunStatus) string {
	switch st {
	case engine.RunCompleted:
		return EventRunCompleted
	case engine.RunFailed:
		return EventRunFailed
	case engine.RunCancelled:
		return EventRunCancelled
	}
	return ""
}

// Payload is the body of a standard-format delivery.
type Payload struct {
	Type      string           `json:"type"`
	Timestamp apidoc.Timestamp `json:"timestamp"`
	Data      RunData          `json:"data"`
}

// RunData is a payload's data: the run as GET /runs/{run_id} shows it, with
// task_summary; Truncated says parts were cut to fit [MaxPayloadBytes].
type RunData struct {
	apidoc.RunDoc
	Truncated bool `json:"truncated,omitempty"`
}

// StandardBody returns the JSON body of a standard-format delivery of event
// ev (at time at) about run, under [MaxPayloadBytes].
func StandardBody(ev string, at time.Time, run *engine.Run) ([]byte, error) {
	p := Payload{Type: ev, Timestamp: apidoc.Timestamp(at), Data: RunData{RunDoc: apidoc.NewRunDoc(run, payloadOutputBytes)}}
	return fitBody(run, &p.Data, func() any { return p })
}

// CloudEventsContentType is the Content-Type of a cloudevents delivery
// (structured content mode, JSON event format).
const CloudEventsContentType = "application/cloudevents+json; charset=utf-8"

// CloudEventTypePrefix prefixes the event type of a cloudevents delivery:
// run.failed is sent as "dev.pyoco.run.failed".
const CloudEventTypePrefix = "dev.pyoco."

// CloudEvent is the body of a cloudevents-format delivery: a CloudEvents
// 1.0 event in structured JSON mode. ID is the delivery's webhook id (the
// same on every retry, so a receiver deduplicates on source+id), Source
// "/pyoco/flows/<flow>", Subject the run id, Time the event's time, and
// TraceParent the run's span (the distributed-tracing extension). Data is
// the standard format's data.
type CloudEvent struct {
	SpecVersion     string           `json:"specversion"`
	ID              string           `json:"id"`
	Source          string           `json:"source"`
	Type            string           `json:"type"`
	Subject         string           `json:"subject"`
	Time            apidoc.Timestamp `json:"time"`
	DataContentType string           `json:"datacontenttype"`
	TraceParent     string           `json:"traceparent,omitempty"`
	Data            RunData          `json:"data"`
}

// CloudEventBody returns the JSON body of a cloudevents-format delivery
// with webhook id id of event ev (at time at) about run, under
// [MaxPayloadBytes].
func CloudEventBody(id, ev string, at time.Time, run *engine.Run) ([]byte, error) {
	ce := CloudEvent{
		SpecVersion: "1.0", ID: id, Source: "/pyoco/flows/" + run.FlowName, Type: CloudEventTypePrefix + ev,
		Subject: run.ID, Time: apidoc.Timestamp(at), DataContentType: "application/json",
		Data: RunData{RunDoc: apidoc.NewRunDoc(run, payloadOutputBytes)},
	}
	if tid, err := trace.TraceIDFromHex(run.TraceID); err == nil {
		if sid, err := trace.SpanIDFromHex(run.SpanID); err == nil {
			ce.TraceParent = engine.FormatTraceParent(trace.NewSpanContext(trace.SpanContextConfig{
				TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
		}
	}
	return fitBody(run, &ce.Data, func() any { return ce })
}

// fitBody cuts d, the data of the body that value returns, until the body
// encodes under [MaxPayloadBytes], and returns it.
func fitBody(run *engine.Run, d *RunData, value func() any) ([]byte, error) {
	if d.Error != nil {
		s := cut(*d.Error, payloadErrorRunes)
		d.Error = &s
	}
	for name, t := range d.Tasks {
		if t.Error != nil {
			s := cut(*t.Error, payloadErrorRunes)
			t.Error = &s
		}
		t.AttemptLog = slices.Clone(t.AttemptLog)
		for i := range t.AttemptLog {
			t.AttemptLog[i].Error = cut(t.AttemptLog[i].Error, payloadErrorRunes)
		}
		if t.OutputTruncated {
			d.Truncated = true
		}
		d.Tasks[name] = t
	}
	// Each step drops more, until the body fits.
	steps := []func(){
		func() {},
		func() { // outputs and attempt logs
			for name, t := range d.Tasks {
				t.AttemptLog = nil
				if string(t.Output) != "null" {
					t.Output = json.RawMessage("null")
					t.OutputTruncated = true
				}
				d.Tasks[name] = t
			}
			d.Truncated = true
		},
		func() { d.Tasks = map[string]apidoc.TaskDoc{}; d.Params = map[string]any{} },
		func() { d.TaskSummary = map[string]apidoc.TaskSummaryDoc{}; d.Tags = []string{} },
	}
	for _, step := range steps {
		step()
		b, err := json.Marshal(value())
		if err != nil {
			return nil, fmt.Errorf("encode payload of run %s: %w", run.ID, err)
		}
		if len(b) < MaxPayloadBytes {
			return b, nil
		}
	}
	return nil, fmt.Errorf("payload of run %s: over %d bytes even without its tasks", run.ID, MaxPayloadBytes)
}

// SlackBody returns the JSON body of a slack-format delivery: {"text": …}
// with flow, status, duration, the failed task and its error, and run id.
func SlackBody(ev string, run *engine.Run) ([]byte, error) {
	icon := map[string]string{EventRunCompleted: ":white_check_mark:", EventRunFailed: ":x:", EventRunCancelled: ":no_entry_sign:"}[ev]
	if icon == "" {
		icon = ":information_source:"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s *%s* %s", icon, slackEscape(run.FlowName), run.Status)
	if !run.StartedAt.IsZero() && !run.EndedAt.IsZero() {
		fmt.Fprintf(&b, " in %s", run.EndedAt.Sub(run.StartedAt).Round(time.Millisecond))
	}
	if name, t := failedTask(run); t != nil {
		fmt.Fprintf(&b, "\nFailed task: `%s`", slackEscape(name))
		if t.Error != "" {
			fmt.Fprintf(&b, ": %s", slackEscape(cut(t.Error, slackErrorRunes)))
		}
	} else if run.Error != "" {
		fmt.Fprintf(&b, "\nError: %s", slackEscape(cut(run.Error, slackErrorRunes)))
	}
	fmt.Fprintf(&b, "\nRun `%s`", slackEscape(run.ID))
	return json.Marshal(map[string]string{"text": b.String()})
}

// failedTask returns the first task (by end time, then name) that failed.
func failedTask(run *engine.Run) (string, *engine.TaskState) {
	var (
		name string
		ft   *engine.TaskState
	)
	for n, t := range run.Tasks {
		if t == nil || t.Status != engine.TaskFailed {
			continue
		}
		if ft == nil || t.EndedAt.Before(ft.EndedAt) || (t.EndedAt.Equal(ft.EndedAt) && n < name) {
			name, ft = n, t
		}
	}
	return name, ft
}

// Body returns the body of delivery id of ev about run in format.
func Body(format, id, ev string, at time.Time, run *engine.Run) ([]byte, error) {
	switch format {
	case FormatSlack:
		return SlackBody(ev, run)
	case FormatCloudEvents:
		return CloudEventBody(id, ev, at, run)
	}
	return StandardBody(ev, at, run)
}

// SampleRun returns a made-up failed run for test deliveries (`pyoco
// webhooks test`).
func SampleRun(now time.Time) *engine.Run {
	start := now.Add(-90 * time.Second)
	return &engine.Run{
		ID: "00000000-0000-7000-8000-000000000000", FlowName: "sample_flow", Status: engine.RunFailed,
		Params: map[string]any{"day": "2026-01-01"}, Tags: []string{"test"},
		CreatedAt: start.Add(-time.Second), StartedAt: start, EndedAt: now, Attempt: 1, WorkerID: "sample-worker",
		TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", Error: "task load failed",
		Tasks: map[string]*engine.TaskState{
			"extract": {Name: "extract", Use: "shell", Status: engine.TaskSucceeded, StartedAt: start,
				EndedAt: start.Add(30 * time.Second), Output: json.RawMessage(`{"rows":42}`),
				Attempts: []engine.Attempt{{Number: 1, Status: engine.TaskSucceeded, StartedAt: start, EndedAt: start.Add(30 * time.Second)}}},
			"load": {Name: "load", Use: "shell", Status: engine.TaskFailed, StartedAt: start.Add(30 * time.Second),
				EndedAt: now, Error: "exit status 1: connection refused",
				Attempts: []engine.Attempt{{Number: 1, Status: engine.TaskFailed, StartedAt: start.Add(30 * time.Second), EndedAt: now,
					Error: "exit status 1: connection refused"}}},
		},
	}
}

// cut shortens s to n runes, saying so.
func cut(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "… [truncated]"
}

// slackEscape escapes the three characters Slack's mrkdwn reserves.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
