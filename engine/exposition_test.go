package engine_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/telemetry"
	"github.com/stretchr/testify/require"
)

// TestExecuteMetricsExposition runs flows on an engine wired to the
// telemetry package and scrapes its Prometheus handler: the SPEC §5 names,
// types and labels come out exactly.
func TestExecuteMetricsExposition(t *testing.T) {
	t.Parallel()
	tel, err := telemetry.Setup(context.Background(), telemetry.Config{Env: func(string) string { return "" }})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, tel.Shutdown(context.Background())) })
	b := setup(t, &engine.Config{TracerProvider: tel.TracerProvider, MeterProvider: tel.MeterProvider})
	require.Equal(t, engine.RunCompleted, b.run(t, tracedFlow).Status)
	require.Equal(t, engine.RunFailed, b.run(t, "version: 1\nflow: {name: broken}\ntasks:\n  f: {use: fail}\n").Status)

	rec := httptest.NewRecorder()
	tel.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(rec.Body)
	require.NoError(t, err)

	for name, typ := range map[string]dto.MetricType{
		"pyoco_runs_total":            dto.MetricType_COUNTER,
		"pyoco_runs_in_progress":      dto.MetricType_GAUGE,
		"pyoco_run_duration_seconds":  dto.MetricType_HISTOGRAM,
		"pyoco_task_duration_seconds": dto.MetricType_HISTOGRAM,
		"pyoco_tasks_total":           dto.MetricType_COUNTER,
		"pyoco_queue_wait_seconds":    dto.MetricType_HISTOGRAM,
	} {
		f, ok := fams[name]
		require.True(t, ok, "missing %s", name)
		require.Equal(t, typ, f.GetType(), name)
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				require.NotContains(t, l.GetName(), "otel_scope", name)
				require.NotEqual(t, "run_id", l.GetName(), "%s must stay low-cardinality", name)
			}
		}
	}
	value := func(name string, labels map[string]string) float64 {
		t.Helper()
		var sum float64
		for _, m := range fams[name].GetMetric() {
			match := true
			for k, v := range labels {
				found := false
				for _, l := range m.GetLabel() {
					if l.GetName() == k && l.GetValue() == v {
						found = true
					}
				}
				match = match && found
			}
			if !match {
				continue
			}
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			case m.Histogram != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
		return sum
	}
	require.Equal(t, 1.0, value("pyoco_runs_total", map[string]string{"flow": "traced", "status": "COMPLETED"}))
	require.Equal(t, 1.0, value("pyoco_runs_total", map[string]string{"flow": "traced", "status": "PENDING"}))
	require.Equal(t, 1.0, value("pyoco_runs_total", map[string]string{"flow": "broken", "status": "FAILED"}))
	require.Equal(t, 0.0, value("pyoco_runs_in_progress", nil))
	require.Equal(t, 2.0, value("pyoco_run_duration_seconds", nil))
	require.Equal(t, 1.0, value("pyoco_run_duration_seconds", map[string]string{"flow": "broken", "status": "FAILED"}))
	require.Equal(t, 1.0, value("pyoco_tasks_total", map[string]string{"flow": "traced", "task": "flaky", "status": "FAILED"}))
	require.Equal(t, 4.0, value("pyoco_task_duration_seconds", nil)) // ok, flaky×2, f

	// Series that no run has entered yet exist at 0 (so rate() and
	// increase() count a flow's first FAILED run, say): every run status of
	// a flow this process has counted, every final state of its tasks.
	series := func(name string, labels map[string]string) bool {
		for _, m := range fams[name].GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			match := true
			for k, v := range labels {
				match = match && got[k] == v
			}
			if match {
				return true
			}
		}
		return false
	}
	for _, st := range []string{"PENDING", "RUNNING", "CANCELLING", "COMPLETED", "FAILED", "CANCELLED"} {
		require.True(t, series("pyoco_runs_total", map[string]string{"flow": "traced", "status": st}), st)
	}
	require.Equal(t, 0.0, value("pyoco_runs_total", map[string]string{"flow": "traced", "status": "FAILED"}))
	require.Equal(t, 0.0, value("pyoco_runs_total", map[string]string{"flow": "broken", "status": "COMPLETED"}))
	for _, st := range []string{"SUCCEEDED", "FAILED", "CANCELLED"} {
		require.True(t, series("pyoco_tasks_total", map[string]string{"flow": "traced", "task": "ok", "status": st}), st)
	}
	require.Equal(t, 0.0, value("pyoco_tasks_total", map[string]string{"flow": "traced", "task": "ok", "status": "FAILED"}))
	require.Equal(t, 0.0, value("pyoco_tasks_total", map[string]string{"flow": "broken", "task": "f", "status": "SUCCEEDED"}))
	// Second-scale buckets.
	h := fams["pyoco_run_duration_seconds"].GetMetric()[0].GetHistogram()
	var bounds []float64
	for _, bk := range h.GetBucket() {
		bounds = append(bounds, bk.GetUpperBound())
	}
	require.Contains(t, bounds, 3600.0)
	require.Contains(t, bounds, 0.005)
}
