package redisstore

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pyoco/pyoco/engine"
)

// Fields of the run hash ("{ns}:run:<id>"). The Lua scripts use the ones
// marked (lua) by name.
const (
	fieldID        = "id"     // (lua) run ID
	fieldFlow      = "flow"   // (lua) flow name
	fieldSource    = "source" // flow file text (snapshot)
	fieldFile      = "file"   // flow file path
	fieldStatus    = "status" // (lua) run status
	fieldParams    = "params" // JSON object
	fieldTags      = "tags"   // JSON array, as given (duplicates kept)
	fieldCreated   = "created"
	fieldStarted   = "started" // (lua) Unix ms; absent until RUNNING
	fieldEnded     = "ended"   // (lua) Unix ms; absent until terminal
	fieldAttempt   = "attempt" // (lua) incremented by start.lua
	fieldWorker    = "worker"  // (lua)
	fieldTraceID   = "trace"
	fieldParent    = "parent"     // parent span ID
	fieldSpanID    = "span"       // the run span's ID (Run.SpanID)
	fieldParentRun = "parent_run" // a sub-flow run's parent run ID
	fieldIncludes  = "includes"   // JSON: the flows the snapshot includes
	fieldUnsampled = "unsampled"  // "1" when Run.ParentUnsampled; absent otherwise
	fieldError     = "error"      // (lua)
	fieldMember    = "member"     // (lua) index member, see indexMember
	fieldGC        = "gc"         // (lua) expiry-set record, see keys.gcRecord
	fieldLogSeq    = "logseq"     // (lua) last log seq, HINCRBY by log_append.lua
	fieldQueueID   = "qid"        // (lua) ID of the run's current queue entry
	fieldLayout    = "layout"     // (lua) "2": the tasks' fields are in the run hash; absent: in the tasks hash
)

// listFields are the run-hash fields list.lua returns: the ones [parseRun]
// reads (TestTasksInRunHash compares a listed run with the same run read
// whole). A run hash of layout 2 also holds its tasks' fields
// ("<kind>:<task>"; a run's own fields have no ':'), which a list does not
// return.
var listFields = []string{
	fieldID, fieldFlow, fieldSource, fieldFile, fieldStatus, fieldParams, fieldTags,
	fieldCreated, fieldStarted, fieldEnded, fieldAttempt, fieldWorker, fieldTraceID,
	fieldParent, fieldSpanID, fieldParentRun, fieldIncludes, fieldUnsampled, fieldError, fieldMember,
}

// taskFieldSep separates a task-hash field's kind from the task name.
const taskFieldSep = ":"

// Kinds of a task's fields, in its run's hash (layout 2) or, for a run stored
// before it, in the run's tasks hash ("{ns}:tasks:<id>"): "<kind>:<task>", and
// "attempt:<number>:<task>" with one JSON [engine.Attempt] each. A task
// exists when its "status:<task>" field does.
const (
	taskUse     = "use"
	taskStatus  = "status"
	taskStarted = "started" // Unix ms
	taskEnded   = "ended"   // Unix ms; "" when reset (ResetEnd)
	taskError   = "error"
	taskOutput  = "output" // raw JSON
	taskTrunc   = "trunc"  // "1" when Output was truncated
	taskAttempt = "attempt"
)

// Fields of a log stream entry ("{ns}:logs:<id>"); its stream ID is
// "0-<seq>".
const (
	logTask   = "task"
	logStream = "stream"
	logLevel  = "level"
	logText   = "text"
	logTime   = "ts" // Unix ms
	logTrace  = "trace"
	logSpan   = "span"
)

// Fields of an events stream entry ("{ns}:events"), written by the scripts.
const (
	eventRunID  = "run_id"
	eventFlow   = "flow"
	eventStatus = "status"
	eventTime   = "time" // Unix ms
)

// taskField is the task-hash field of one attribute of a task.
func taskField(kind, task string) string { return kind + taskFieldSep + task }

// attemptField is the task-hash field of attempt n of a task.
func attemptField(n int, task string) string {
	return taskAttempt + taskFieldSep + strconv.Itoa(n) + taskFieldSep + task
}

// ms formats t as Unix milliseconds.
func ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// msCeil is [ms] rounded up: for a not-before time.
func msCeil(t time.Time) string {
	n := t.UnixMilli()
	if t.Sub(time.UnixMilli(n)) > 0 {
		n++
	}
	return strconv.FormatInt(n, 10)
}

// parseMS reverses [ms]; "" is the zero time.
func parseMS(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("time %q: %w", s, err)
	}
	return time.UnixMilli(n).UTC(), nil
}

// runFields returns the run-hash fields and values of a new run.
func runFields(r *engine.Run, member, gc string) ([]any, error) {
	params, err := json.Marshal(r.Params)
	if err != nil {
		return nil, fmt.Errorf("params: %w", err)
	}
	tags, err := json.Marshal(r.Tags)
	if err != nil {
		return nil, fmt.Errorf("tags: %w", err)
	}
	f := []any{
		fieldID, r.ID,
		fieldFlow, r.FlowName,
		fieldSource, r.FlowSource,
		fieldFile, r.FlowFile,
		fieldStatus, string(r.Status),
		fieldParams, params,
		fieldTags, tags,
		fieldCreated, ms(r.CreatedAt),
		fieldAttempt, r.Attempt,
		fieldWorker, r.WorkerID,
		fieldTraceID, r.TraceID,
		fieldParent, r.ParentSpanID,
		fieldSpanID, r.SpanID,
		fieldError, r.Error,
		fieldMember, member,
		fieldGC, gc,
	}
	if r.ParentUnsampled {
		f = append(f, fieldUnsampled, "1")
	}
	if r.ParentRunID != "" {
		f = append(f, fieldParentRun, r.ParentRunID)
	}
	if len(r.FlowIncludes) > 0 {
		inc, err := json.Marshal(r.FlowIncludes)
		if err != nil {
			return nil, fmt.Errorf("includes: %w", err)
		}
		f = append(f, fieldIncludes, inc)
	}
	if !r.StartedAt.IsZero() {
		f = append(f, fieldStarted, ms(r.StartedAt))
	}
	if !r.EndedAt.IsZero() {
		f = append(f, fieldEnded, ms(r.EndedAt))
	}
	return f, nil
}

// taskFields returns the task-hash fields and values of a new task.
func taskFields(name string, t *engine.TaskState) ([]any, error) {
	f := []any{
		taskField(taskUse, name), t.Use,
		taskField(taskStatus, name), string(t.Status),
		taskField(taskError, name), t.Error,
	}
	if !t.StartedAt.IsZero() {
		f = append(f, taskField(taskStarted, name), ms(t.StartedAt))
	}
	if !t.EndedAt.IsZero() {
		f = append(f, taskField(taskEnded, name), ms(t.EndedAt))
	}
	if len(t.Output) > 0 {
		f = append(f, taskField(taskOutput, name), []byte(t.Output), taskField(taskTrunc, name), boolString(t.OutputTruncated))
	}
	for i := range t.Attempts {
		b, err := json.Marshal(&t.Attempts[i])
		if err != nil {
			return nil, fmt.Errorf("task %s attempt %d: %w", name, t.Attempts[i].Number, err)
		}
		f = append(f, attemptField(t.Attempts[i].Number, name), b)
	}
	return f, nil
}

func boolString(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// hashMap turns a field/value list (an HGETALL inside a script reply) into a
// map.
func hashMap(v any) (map[string]string, error) {
	list, ok := v.([]any)
	if !ok || len(list)%2 != 0 {
		return nil, fmt.Errorf("unexpected hash reply %T", v)
	}
	m := make(map[string]string, len(list)/2)
	for i := 0; i < len(list); i += 2 {
		k, ok1 := list[i].(string)
		val, ok2 := list[i+1].(string)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("unexpected hash entry %T/%T", list[i], list[i+1])
		}
		m[k] = val
	}
	return m, nil
}

// parseRun decodes a run hash (without tasks).
func parseRun(h map[string]string) (*engine.Run, error) {
	r := &engine.Run{
		ID:           h[fieldID],
		FlowName:     h[fieldFlow],
		FlowSource:   h[fieldSource],
		FlowFile:     h[fieldFile],
		Status:       engine.RunStatus(h[fieldStatus]),
		WorkerID:     h[fieldWorker],
		TraceID:      h[fieldTraceID],
		ParentSpanID: h[fieldParent],
		SpanID:       h[fieldSpanID],
		Error:        h[fieldError],
		ParentRunID:  h[fieldParentRun],

		ParentUnsampled: h[fieldUnsampled] == "1",
	}
	var err error
	if p := h[fieldParams]; p != "" {
		if err := json.Unmarshal([]byte(p), &r.Params); err != nil {
			return nil, fmt.Errorf("run %s params: %w", r.ID, err)
		}
	}
	if inc := h[fieldIncludes]; inc != "" {
		if err := json.Unmarshal([]byte(inc), &r.FlowIncludes); err != nil {
			return nil, fmt.Errorf("run %s includes: %w", r.ID, err)
		}
	}
	if t := h[fieldTags]; t != "" {
		if err := json.Unmarshal([]byte(t), &r.Tags); err != nil {
			return nil, fmt.Errorf("run %s tags: %w", r.ID, err)
		}
	}
	if r.CreatedAt, err = parseMS(h[fieldCreated]); err != nil {
		return nil, fmt.Errorf("run %s: %w", r.ID, err)
	}
	if r.StartedAt, err = parseMS(h[fieldStarted]); err != nil {
		return nil, fmt.Errorf("run %s: %w", r.ID, err)
	}
	if r.EndedAt, err = parseMS(h[fieldEnded]); err != nil {
		return nil, fmt.Errorf("run %s: %w", r.ID, err)
	}
	if a := h[fieldAttempt]; a != "" {
		if r.Attempt, err = strconv.Atoi(a); err != nil {
			return nil, fmt.Errorf("run %s attempt: %w", r.ID, err)
		}
	}
	return r, nil
}

// parseTasks decodes a tasks hash.
func parseTasks(h map[string]string) (map[string]*engine.TaskState, error) {
	tasks := make(map[string]*engine.TaskState)
	task := func(name string) *engine.TaskState {
		t := tasks[name]
		if t == nil {
			t = &engine.TaskState{Name: name}
			tasks[name] = t
		}
		return t
	}
	for field, v := range h {
		kind, name, ok := strings.Cut(field, taskFieldSep)
		if !ok {
			continue
		}
		var err error
		switch kind {
		case taskUse:
			task(name).Use = v
		case taskStatus:
			task(name).Status = engine.TaskStatus(v)
		case taskStarted:
			task(name).StartedAt, err = parseMS(v)
		case taskEnded:
			task(name).EndedAt, err = parseMS(v)
		case taskError:
			task(name).Error = v
		case taskOutput:
			task(name).Output = json.RawMessage(v)
		case taskTrunc:
			task(name).OutputTruncated = v == "1"
		case taskAttempt:
			_, name, _ = strings.Cut(name, taskFieldSep) // "<number>:<task>"
			var a engine.Attempt
			if err = json.Unmarshal([]byte(v), &a); err == nil {
				t := task(name)
				t.Attempts = append(t.Attempts, a)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("task field %s: %w", field, err)
		}
	}
	for _, t := range tasks {
		slices.SortFunc(t.Attempts, func(a, b engine.Attempt) int { return a.Number - b.Number })
	}
	return tasks, nil
}

// parseRunWithTasks decodes a {run hash, tasks hash} script reply; the
// tasks hash is empty for a run of layout 2, whose tasks are in its run hash.
func parseRunWithTasks(v any) (*engine.Run, error) {
	pair, ok := v.([]any)
	if !ok || len(pair) != 2 {
		return nil, fmt.Errorf("unexpected run reply %T", v)
	}
	rh, err := hashMap(pair[0])
	if err != nil {
		return nil, err
	}
	th, err := hashMap(pair[1])
	if err != nil {
		return nil, err
	}
	r, err := parseRun(rh)
	if err != nil {
		return nil, err
	}
	if rh[fieldLayout] == "2" {
		th = rh // the tasks' fields are in the run hash
	}
	if r.Tasks, err = parseTasks(th); err != nil {
		return nil, fmt.Errorf("run %s: %w", r.ID, err)
	}
	return r, nil
}

// logFields returns the stream fields of a log entry (Seq is the stream ID).
func logFields(e *engine.LogEntry) []any {
	return []any{
		logTask, e.Task,
		logStream, e.Stream,
		logLevel, e.Level,
		logText, e.Text,
		logTime, ms(e.Timestamp),
		logTrace, e.TraceID,
		logSpan, e.SpanID,
	}
}

// logFieldPairs is the number of field/value pairs of [logFields].
const logFieldPairs = 7

// logStreamID is the stream ID of log entry seq.
func logStreamID(seq int64) string { return "0-" + strconv.FormatInt(seq, 10) }

// parseLogEntry decodes one log stream entry.
func parseLogEntry(m redis.XMessage) (engine.LogEntry, error) {
	_, s, ok := strings.Cut(m.ID, "-")
	seq, err := strconv.ParseInt(s, 10, 64)
	if !ok || err != nil {
		return engine.LogEntry{}, fmt.Errorf("log entry ID %q", m.ID)
	}
	str := func(k string) string { v, _ := m.Values[k].(string); return v }
	ts, err := parseMS(str(logTime))
	if err != nil {
		return engine.LogEntry{}, fmt.Errorf("log entry %s: %w", m.ID, err)
	}
	return engine.LogEntry{
		Seq:       seq,
		Task:      str(logTask),
		Stream:    str(logStream),
		Level:     str(logLevel),
		Text:      str(logText),
		Timestamp: ts,
		TraceID:   str(logTrace),
		SpanID:    str(logSpan),
	}, nil
}

// parseEvent decodes one events stream entry.
func parseEvent(m redis.XMessage) (engine.Event, error) {
	str := func(k string) string { v, _ := m.Values[k].(string); return v }
	at, err := parseMS(str(eventTime))
	if err != nil {
		return engine.Event{}, fmt.Errorf("event %s: %w", m.ID, err)
	}
	return engine.Event{
		ID:       m.ID,
		RunID:    str(eventRunID),
		FlowName: str(eventFlow),
		Status:   engine.RunStatus(str(eventStatus)),
		Time:     at,
	}, nil
}

// validStreamID reports whether s looks like a stream entry ID ("<ms>-<seq>").
func validStreamID(s string) bool {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return false
	}
	_, err1 := strconv.ParseUint(a, 10, 64)
	_, err2 := strconv.ParseUint(b, 10, 64)
	return err1 == nil && err2 == nil
}

// encodeCursor makes a RunList cursor from the index member of the last run
// of a page: base64url of (CreatedAt ms, ID).
func encodeCursor(member string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(member))
}

// decodeCursor reverses [encodeCursor]; anything it did not make gives an
// error wrapping [engine.ErrBadCursor].
func decodeCursor(c string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return "", fmt.Errorf("cursor %q: %w", c, engine.ErrBadCursor)
	}
	m := string(b)
	created, id, ok := parseIndexMember(m)
	if !ok || indexMember(created, id) != m {
		return "", fmt.Errorf("cursor %q: %w", c, engine.ErrBadCursor)
	}
	return m, nil
}
