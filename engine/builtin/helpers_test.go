package builtin_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/builtin"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitTimeout bounds every wait for something a task should do promptly.
const waitTimeout = 10 * time.Second

// lineCollector is an io.Writer that splits what it is given into lines, as
// the engine's stdout/stderr writers do. Safe for concurrent use.
type lineCollector struct {
	mu      sync.Mutex
	partial []byte
	lines   []string
	changed chan struct{} // closed and replaced whenever a line is added
}

func newLineCollector() *lineCollector {
	return &lineCollector{changed: make(chan struct{})}
}

func (c *lineCollector) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.partial = append(c.partial, p...)
	added := false
	for {
		i := bytes.IndexByte(c.partial, '\n')
		if i < 0 {
			break
		}
		c.lines = append(c.lines, string(c.partial[:i]))
		c.partial = c.partial[i+1:]
		added = true
	}
	if added {
		close(c.changed)
		c.changed = make(chan struct{})
	}
	return len(p), nil
}

// Lines returns the complete lines written so far.
func (c *lineCollector) Lines() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.lines)
}

// waitFor blocks until a line equal to want has been written.
func (c *lineCollector) waitFor(t *testing.T, want string) {
	t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for {
		c.mu.Lock()
		found, ch := slices.Contains(c.lines, want), c.changed
		c.mu.Unlock()
		if found {
			return
		}
		select {
		case <-ch:
		case <-timer.C:
			t.Fatalf("line %q not written within %s; got %q", want, waitTimeout, c.Lines())
		}
	}
}

type ctxKey struct{}

// logRecord is what recordHandler keeps of a slog record.
type logRecord struct {
	Level   slog.Level
	Message string
	CtxVal  any // the ctxKey value of the context the record was logged with
}

// recordHandler is a slog.Handler that keeps every record. Safe for
// concurrent use.
type recordHandler struct {
	mu      sync.Mutex
	records []logRecord
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *recordHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, logRecord{Level: r.Level, Message: r.Message, CtxVal: ctx.Value(ctxKey{})})
	return nil
}

func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

func (h *recordHandler) Records() []logRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.records)
}

type testBundle struct {
	reg    *engine.Registry
	tc     *engine.TaskContext
	stdout *lineCollector
	stderr *lineCollector
	logs   *recordHandler
}

// setup returns a registry with the built-ins and a TaskContext whose
// outputs and logger can be inspected.
func setup(t *testing.T) *testBundle {
	t.Helper()
	reg := engine.NewRegistry()
	require.NoError(t, builtin.Register(reg))
	b := &testBundle{reg: reg, stdout: newLineCollector(), stderr: newLineCollector(), logs: &recordHandler{}}
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    engine.NewTraceID(),
		SpanID:     engine.IDGenerator{}.NewSpanID(context.Background(), trace.TraceID{}),
		TraceFlags: trace.FlagsSampled,
	})
	b.tc = &engine.TaskContext{
		RunID: "run-1", FlowName: "test_flow", Task: "t", Attempt: 1,
		Logger:      slog.New(b.logs),
		Stdout:      b.stdout,
		Stderr:      b.stderr,
		TraceParent: engine.FormatTraceParent(sc),
	}
	require.NotEmpty(t, b.tc.TraceParent)
	return b
}

// run runs the registered task use with inputs.
func (b *testBundle) run(t *testing.T, ctx context.Context, use string, inputs map[string]any) (any, error) {
	t.Helper()
	def, ok := b.reg.Lookup(use)
	require.True(t, ok, "task %s not registered", use)
	b.tc.Use = use
	return def.Run(ctx, b.tc, inputs)
}

// requireInputError checks that err is an *engine.InputError for input of task.
func requireInputError(t *testing.T, err error, task, input string) {
	t.Helper()
	var ie *engine.InputError
	require.ErrorAs(t, err, &ie)
	require.Equal(t, task, ie.Task)
	require.Equal(t, input, ie.Input, "error: %v", err)
}

// result is a task's return values, for passing across goroutines.
type result struct {
	out any
	err error
}

// start runs the task in a goroutine; the channel yields its result.
func (b *testBundle) start(t *testing.T, ctx context.Context, use string, inputs map[string]any) <-chan result {
	t.Helper()
	def, ok := b.reg.Lookup(use)
	require.True(t, ok)
	ch := make(chan result, 1)
	go func() {
		out, err := def.Run(ctx, b.tc, inputs)
		ch <- result{out, err}
	}()
	return ch
}

// await waits for a result from start.
func await(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(waitTimeout):
		t.Fatalf("task did not return within %s", waitTimeout)
		return result{}
	}
}

var errTestCancel = errors.New("test cancelled the task")
