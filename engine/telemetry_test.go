package engine_test

import (
	"context"
	"testing"

	"github.com/pyoco/pyoco/engine"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

type telemetryBundle struct {
	*testBundle
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
}

func setupTelemetry(t *testing.T) *telemetryBundle {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithIDGenerator(engine.IDGenerator{}))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() {
		require.NoError(t, tp.Shutdown(context.Background()))
		require.NoError(t, mp.Shutdown(context.Background()))
	})
	return &telemetryBundle{testBundle: setup(t, &engine.Config{TracerProvider: tp, MeterProvider: mp, WorkerID: "w1"}), spans: rec, reader: reader}
}

func attrMap(kvs []attribute.KeyValue) map[attribute.Key]any {
	m := map[attribute.Key]any{}
	for _, kv := range kvs {
		m[kv.Key] = kv.Value.AsInterface()
	}
	return m
}

const tracedFlow = `version: 1
flow: {name: traced, graph: "ok >> flaky"}
tasks:
  ok: {use: noop}
  flaky: {use: test/flaky, retries: 1, retry_delay: 1ms, inputs: {succeed_on: 2}}
`

func TestExecuteSpans(t *testing.T) {
	t.Parallel()
	b := setupTelemetry(t)
	final := b.run(t, tracedFlow)
	require.Equal(t, engine.RunCompleted, final.Status)

	spans := b.spans.Ended()
	require.Len(t, spans, 4) // run + ok + flaky×2
	var root sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == "run traced" {
			root = s
		}
	}
	require.NotNil(t, root)
	require.Equal(t, final.TraceID, root.SpanContext().TraceID().String(), "the run span uses the trace id fixed at submit")
	require.False(t, root.Parent().IsValid(), "a run submitted without traceparent is a root")
	ra := attrMap(root.Attributes())
	require.Equal(t, final.ID, ra[engine.AttrRunID])
	require.Equal(t, "traced", ra[engine.AttrFlowName])
	require.Equal(t, "COMPLETED", ra[engine.AttrRunStatus])
	require.Equal(t, int64(1), ra[engine.AttrRunAttempt])
	require.Equal(t, "w1", ra[engine.AttrWorkerID])
	require.Equal(t, "success", ra[engine.AttrCICDPipelineResult])

	var flaky []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s == root {
			continue
		}
		require.Equal(t, root.SpanContext().SpanID(), s.Parent().SpanID(), "task spans are children of the run span")
		require.Equal(t, root.SpanContext().TraceID(), s.SpanContext().TraceID())
		if s.Name() == "task flaky" {
			flaky = append(flaky, s)
		}
	}
	require.Len(t, flaky, 2)
	a1, a2 := attrMap(flaky[0].Attributes()), attrMap(flaky[1].Attributes())
	require.Equal(t, int64(1), a1[engine.AttrTaskAttempt])
	require.Equal(t, "FAILED", a1[engine.AttrTaskStatus])
	require.Equal(t, "test/flaky", a1[engine.AttrTaskUse])
	require.Equal(t, "flaky", a1[engine.AttrTaskName])
	require.Equal(t, codes.Error, flaky[0].Status().Code)
	require.Len(t, flaky[0].Events(), 1, "the error is recorded")
	require.Equal(t, int64(2), a2[engine.AttrTaskAttempt])
	require.Equal(t, "SUCCEEDED", a2[engine.AttrTaskStatus])
	require.NotEqual(t, codes.Error, flaky[1].Status().Code)
	require.Equal(t, final.Tasks["flaky"].Attempts[0].SpanID, flaky[0].SpanContext().SpanID().String())
}

func TestExecuteSpanFailedRun(t *testing.T) {
	t.Parallel()
	b := setupTelemetry(t)
	final := b.run(t, "version: 1\nflow: {name: broken}\ntasks:\n  f: {use: fail, inputs: {message: kaputt}}\n")
	require.Equal(t, engine.RunFailed, final.Status)
	for _, s := range b.spans.Ended() {
		require.Equal(t, codes.Error, s.Status().Code, s.Name())
		require.Contains(t, s.Status().Description, "kaputt")
	}
}

func TestExecuteTraceParent(t *testing.T) {
	t.Parallel()
	b := setupTelemetry(t)
	f, err := engine.LoadFlow("t.yaml", []byte(tracedFlow), b.reg)
	require.NoError(t, err)
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	run, err := b.eng.Submit(context.Background(), &engine.SubmitParams{Flow: f, TraceParent: tp})
	require.NoError(t, err)
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", run.TraceID)
	_, err = b.eng.Execute(context.Background(), &engine.ExecuteParams{RunID: run.ID})
	require.NoError(t, err)
	for _, s := range b.spans.Ended() {
		if s.Name() == "run traced" {
			require.Equal(t, "00f067aa0ba902b7", s.Parent().SpanID().String())
			require.Equal(t, run.TraceID, s.SpanContext().TraceID().String())
			return
		}
	}
	t.Fatal("no run span")
}

func TestExecuteMetrics(t *testing.T) {
	t.Parallel()
	b := setupTelemetry(t)
	require.Equal(t, engine.RunCompleted, b.run(t, tracedFlow).Status)
	require.Equal(t, engine.RunCompleted, b.run(t, tracedFlow).Status)

	var rm metricdata.ResourceMetrics
	require.NoError(t, b.reader.Collect(context.Background(), &rm))
	got := map[string]metricdata.Aggregation{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			got[m.Name] = m.Data
		}
	}
	sumBy := func(name string, want ...attribute.KeyValue) int64 {
		t.Helper()
		s, ok := got[name].(metricdata.Sum[int64])
		require.True(t, ok, name)
		var n int64
		for _, dp := range s.DataPoints {
			match := true
			for _, kv := range want {
				if v, ok := dp.Attributes.Value(kv.Key); !ok || v != kv.Value {
					match = false
				}
			}
			if match {
				n += dp.Value
			}
		}
		return n
	}
	flow := engine.LabelFlow.String("traced")
	require.Equal(t, int64(2), sumBy(engine.MetricRuns, flow, engine.LabelStatus.String("PENDING")))
	require.Equal(t, int64(2), sumBy(engine.MetricRuns, flow, engine.LabelStatus.String("RUNNING")))
	require.Equal(t, int64(2), sumBy(engine.MetricRuns, flow, engine.LabelStatus.String("COMPLETED")))
	require.Equal(t, int64(0), sumBy(engine.MetricRunsInProgress, flow))
	require.Equal(t, int64(2), sumBy(engine.MetricTasks, engine.LabelTask.String("flaky"), engine.LabelStatus.String("FAILED")))
	require.Equal(t, int64(2), sumBy(engine.MetricTasks, engine.LabelTask.String("flaky"), engine.LabelStatus.String("SUCCEEDED")))
	h, ok := got[engine.MetricRunDuration].(metricdata.Histogram[float64])
	require.True(t, ok)
	require.Len(t, h.DataPoints, 1)
	require.Equal(t, uint64(2), h.DataPoints[0].Count)
	require.Equal(t, engine.DurationBuckets, h.DataPoints[0].Bounds)
	th, ok := got[engine.MetricTaskDuration].(metricdata.Histogram[float64])
	require.True(t, ok)
	require.Len(t, th.DataPoints, 3) // ok/SUCCEEDED, flaky/FAILED, flaky/SUCCEEDED
}

// TestCountersStart: before any run, CountersStart gives every run status
// and every task outcome of a flow its series at 0; inline flows count
// under _inline.
func TestCountersStart(t *testing.T) {
	t.Parallel()
	b := setupTelemetry(t)
	f, err := engine.LoadFlow("traced.yaml", []byte(tracedFlow), b.reg)
	require.NoError(t, err)
	inline, err := engine.LoadFlow(engine.InlineFlowFile, []byte(tracedFlow), b.reg)
	require.NoError(t, err)
	b.eng.CountersStart(f, nil, inline)
	b.eng.CountersStart(f) // again: no change

	var rm metricdata.ResourceMetrics
	require.NoError(t, b.reader.Collect(context.Background(), &rm))
	series := map[string]map[string]int64{} // metric → "flow/task/status" → value
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			s, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				continue
			}
			for _, dp := range s.DataPoints {
				fl, _ := dp.Attributes.Value(engine.LabelFlow)
				tk, _ := dp.Attributes.Value(engine.LabelTask)
				st, _ := dp.Attributes.Value(engine.LabelStatus)
				if series[m.Name] == nil {
					series[m.Name] = map[string]int64{}
				}
				series[m.Name][fl.AsString()+"/"+tk.AsString()+"/"+st.AsString()] = dp.Value
			}
		}
	}
	for _, flow := range []string{"traced", engine.LabelInline} {
		for _, st := range []string{"PENDING", "RUNNING", "CANCELLING", "COMPLETED", "FAILED", "CANCELLED"} {
			v, ok := series[engine.MetricRuns][flow+"//"+st]
			require.True(t, ok, "%s %s: %v", flow, st, series[engine.MetricRuns])
			require.Zero(t, v)
		}
	}
	for _, task := range []string{"ok", "flaky"} {
		for _, st := range []string{"SUCCEEDED", "FAILED", "CANCELLED"} {
			v, ok := series[engine.MetricTasks]["traced/"+task+"/"+st]
			require.True(t, ok, "%s %s: %v", task, st, series[engine.MetricTasks])
			require.Zero(t, v)
		}
	}
	require.Len(t, series[engine.MetricTasks], 2*3+3, "traced's tasks, and _inline/_inline: %v", series[engine.MetricTasks])
}
