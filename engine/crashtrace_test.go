package engine_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/pyoco/pyoco/engine"
)

func spansNamed(spans []sdktrace.ReadOnlySpan, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// TestExecuteTakeoverTrace: a worker that is lost mid-task never ends its
// spans; the worker that takes the run over emits the run span under the id
// fixed at submit, with the run's true start, the interrupted attempt's
// span under its stored id, and links the resumed attempt to it. Only the
// second worker's exporter is looked at: the first one's spans died with it.
func TestExecuteTakeoverTrace(t *testing.T) {
	t.Parallel()
	b := setupTelemetry(t)
	started, release := make(chan struct{}), make(chan struct{})
	require.NoError(t, b.reg.Add(engine.TaskDef{Name: "test/hang", Plugin: "test", Run: func(ctx context.Context, tc *engine.TaskContext, _ map[string]any) (any, error) {
		if tc.Attempt == 1 {
			close(started)
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return nil, nil
	}}))
	rec2 := tracetest.NewSpanRecorder()
	tp2 := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec2), sdktrace.WithIDGenerator(engine.IDGenerator{}))
	t.Cleanup(func() { require.NoError(t, tp2.Shutdown(context.Background())) })
	eng2, err := engine.New(b.store, b.reg, &engine.Config{TracerProvider: tp2, WorkerID: "w2"})
	require.NoError(t, err)

	run := b.submit(t, "version: 1\nflow: {name: crash, graph: \"hang >> after\"}\ntasks:\n  hang: {use: test/hang}\n  after: {use: noop}\n", nil)
	require.NotEmpty(t, run.SpanID, "the run span id is fixed at submit")
	ctx := context.Background()
	first := make(chan error, 1)
	go func() {
		_, err := b.eng.Execute(ctx, &engine.ExecuteParams{RunID: run.ID})
		first <- err
	}()
	<-started
	final, err := eng2.Execute(ctx, &engine.ExecuteParams{RunID: run.ID})
	require.NoError(t, err)
	require.Equal(t, engine.RunCompleted, final.Status, final.Error)
	close(release)
	require.ErrorIs(t, <-first, engine.ErrConflict, "the first worker lost the run")
	require.Empty(t, spansNamed(b.spans.Ended(), "run crash"), "the lost execution never ends the run span")

	spans := rec2.Ended()
	runs := spansNamed(spans, "run crash")
	require.Len(t, runs, 1)
	rs := runs[0]
	require.Equal(t, run.SpanID, rs.SpanContext().SpanID().String())
	require.Equal(t, run.TraceID, rs.SpanContext().TraceID().String())
	require.True(t, rs.StartTime().Equal(final.StartedAt), "the run span starts at the run's first start: %v, %v", rs.StartTime(), final.StartedAt)
	ra := attrMap(rs.Attributes())
	require.Equal(t, int64(2), ra[engine.AttrRunAttempt])
	require.Equal(t, "COMPLETED", ra[engine.AttrRunStatus])
	require.Len(t, rs.Events(), 1)
	require.Equal(t, "run resumed", rs.Events()[0].Name)

	att := final.Tasks["hang"].Attempts
	require.Len(t, att, 2)
	hang := spansNamed(spans, "task hang")
	require.Len(t, hang, 2)
	interrupted, resumed := hang[0], hang[1]
	require.Equal(t, att[0].SpanID, interrupted.SpanContext().SpanID().String(), "the interrupted attempt keeps its span id")
	require.True(t, interrupted.StartTime().Equal(att[0].StartedAt))
	require.Equal(t, codes.Error, interrupted.Status().Code)
	require.Equal(t, "interrupted: worker lost", interrupted.Status().Description)
	require.Equal(t, "w1", attrMap(interrupted.Attributes())[engine.AttrWorkerID], "the lost worker's attempt")
	require.Equal(t, att[1].SpanID, resumed.SpanContext().SpanID().String())
	require.Len(t, resumed.Links(), 1)
	l := resumed.Links()[0]
	require.Equal(t, att[0].SpanID, l.SpanContext.SpanID().String())
	require.Equal(t, run.TraceID, l.SpanContext.TraceID().String())
	require.Equal(t, engine.LinkTakeover, attrMap(l.Attributes)[engine.AttrLinkKind])
	for _, s := range spans {
		require.Equal(t, run.TraceID, s.SpanContext().TraceID().String(), s.Name())
		if s != rs {
			require.Equal(t, rs.SpanContext().SpanID(), s.Parent().SpanID(), "%s is a child of the one run span", s.Name())
		}
	}
}

// TestExecuteRetryLink: a retry's span links to the previous attempt's.
func TestExecuteRetryLink(t *testing.T) {
	t.Parallel()
	b := setupTelemetry(t)
	final := b.run(t, tracedFlow)
	flaky := spansNamed(b.spans.Ended(), "task flaky")
	require.Len(t, flaky, 2)
	require.Empty(t, flaky[0].Links())
	require.Len(t, flaky[1].Links(), 1)
	l := flaky[1].Links()[0]
	require.Equal(t, final.Tasks["flaky"].Attempts[0].SpanID, l.SpanContext.SpanID().String())
	require.Equal(t, engine.LinkRetry, attrMap(l.Attributes)[engine.AttrLinkKind])
	runs := spansNamed(b.spans.Ended(), "run traced")
	require.Len(t, runs, 1)
	require.Equal(t, final.SpanID, runs[0].SpanContext().SpanID().String())
}

// TestFailEmitsRunSpan: a run failed after too many takeovers gets its run
// span, and the span of the attempt its last worker left running.
func TestFailEmitsRunSpan(t *testing.T) {
	t.Parallel()
	b := setupTelemetry(t)
	run := b.submit(t, "version: 1\nflow: {name: gaveup}\ntasks:\n  a: {use: noop}\n", nil)
	ctx := context.Background()
	lostWorker(t, b.store, run.ID)
	now := time.Now().UTC()
	const sid = "00f067aa0ba902b7"
	require.NoError(t, b.store.TaskUpdate(ctx, &engine.TaskUpdateParams{RunID: run.ID, Task: "a", Status: engine.TaskRunning, StartedAt: now,
		Attempt: &engine.Attempt{Number: 1, Status: engine.TaskRunning, StartedAt: now, WorkerID: "lost", SpanID: sid}}))
	_, err := b.eng.Fail(ctx, run.ID, "too many takeovers")
	require.NoError(t, err)
	spans := b.spans.Ended()
	require.Len(t, spans, 2)
	rs := spansNamed(spans, "run gaveup")
	require.Len(t, rs, 1)
	require.Equal(t, run.SpanID, rs[0].SpanContext().SpanID().String())
	require.Equal(t, codes.Error, rs[0].Status().Code)
	ts := spansNamed(spans, "task a")
	require.Len(t, ts, 1)
	require.Equal(t, sid, ts[0].SpanContext().SpanID().String())
	require.Equal(t, rs[0].SpanContext().SpanID(), ts[0].Parent().SpanID())
	_, err = b.eng.Fail(ctx, run.ID, "again")
	require.True(t, errors.Is(err, engine.ErrConflict))
	require.Len(t, b.spans.Ended(), 2, "a refused Fail emits nothing")
}

// TestIDGeneratorFixedSpanID: only the span started directly in the
// context takes the fixed id, not its children.
func TestIDGeneratorFixedSpanID(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithIDGenerator(engine.IDGenerator{}))
	t.Cleanup(func() { require.NoError(t, tp.Shutdown(context.Background())) })
	tr := tp.Tracer("t")
	sid := engine.NewSpanID()
	ctx, parent := tr.Start(engine.ContextWithSpanID(context.Background(), sid), "parent")
	_, child := tr.Start(ctx, "child")
	require.Equal(t, sid, parent.SpanContext().SpanID())
	require.NotEqual(t, sid, child.SpanContext().SpanID())
	child.End()
	parent.End()
}
