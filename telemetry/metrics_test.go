package telemetry_test

import (
	"context"
	"io"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/telemetry"
)

// instruments are made as the engine makes its own.
type instruments struct {
	runs        metric.Int64Counter
	inProgress  metric.Int64UpDownCounter
	runDuration metric.Float64Histogram
}

func newInstruments(t *testing.T, b *testBundle) instruments {
	t.Helper()
	m := b.providers.MeterProvider.Meter("github.com/pyoco/pyoco/engine")
	var ins instruments
	var err error
	ins.runs, err = m.Int64Counter("pyoco.runs", metric.WithUnit("{run}"), metric.WithDescription("Runs entering each status."))
	require.NoError(t, err)
	ins.inProgress, err = m.Int64UpDownCounter("pyoco.runs.in_progress", metric.WithUnit("{run}"))
	require.NoError(t, err)
	ins.runDuration, err = m.Float64Histogram("pyoco.run.duration", metric.WithUnit("s"))
	require.NoError(t, err)
	return ins
}

func labels(flow, status string) metric.MeasurementOption {
	return metric.WithAttributes(attribute.String("flow", flow), attribute.String("status", status))
}

// scrape GETs the metrics handler with the given Accept header.
func scrape(t *testing.T, b *testBundle, accept string) (contentType, body string) {
	t.Helper()
	req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/metrics", nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	rec := httptest.NewRecorder()
	b.providers.Handler().ServeHTTP(rec, req)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	out, err := io.ReadAll(rec.Body)
	require.NoError(t, err)
	return rec.Header().Get("Content-Type"), string(out)
}

func scrapeFamilies(t *testing.T, b *testBundle) map[string]*dto.MetricFamily {
	t.Helper()
	_, body := scrape(t, b, "")
	parser := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := parser.TextToMetricFamilies(strings.NewReader(body))
	require.NoError(t, err, body)
	return mfs
}

func labelMap(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}

func upperBounds(h *dto.Histogram) []float64 {
	var out []float64
	for _, bk := range h.GetBucket() {
		out = append(out, bk.GetUpperBound())
	}
	return out
}

func TestPrometheusExposition(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name        string
		boundaries  []float64
		targetInfo  bool
		wantBuckets []float64
	}{
		{name: "defaults", wantBuckets: engine.DurationBuckets},
		{name: "custom boundaries and target_info", boundaries: []float64{0.5, 1, 2}, targetInfo: true, wantBuckets: []float64{0.5, 1, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, map[string]string{"OTEL_SERVICE_NAME": "pyoco-test"}, func(c *telemetry.Config) {
				c.HistogramBoundaries, c.TargetInfo = tt.boundaries, tt.targetInfo
			})
			ins := newInstruments(t, b)
			ctx := t.Context()
			ins.runs.Add(ctx, 1, labels("demo", "PENDING"))
			ins.runs.Add(ctx, 1, labels("demo", "RUNNING"))
			ins.runs.Add(ctx, 1, labels("demo", "SUCCEEDED"))
			ins.inProgress.Add(ctx, 2, metric.WithAttributes(attribute.String("flow", "demo")))
			ins.inProgress.Add(ctx, -1, metric.WithAttributes(attribute.String("flow", "demo")))
			ins.runDuration.Record(ctx, 0.75, labels("demo", "SUCCEEDED"))
			ins.runDuration.Record(ctx, 4000, labels("demo", "SUCCEEDED"))

			mfs := scrapeFamilies(t, b)

			runs := mfs["pyoco_runs_total"]
			require.NotNil(t, runs, "families: %v", familyNames(mfs))
			require.Equal(t, dto.MetricType_COUNTER, runs.GetType())
			require.Len(t, runs.GetMetric(), 3)
			for _, m := range runs.GetMetric() {
				require.Equal(t, 1.0, m.GetCounter().GetValue())
				require.Equal(t, []string{"flow", "status"}, sortedKeys(labelMap(m)))
			}

			inProgress := mfs["pyoco_runs_in_progress"]
			require.NotNil(t, inProgress, "families: %v", familyNames(mfs))
			require.Equal(t, dto.MetricType_GAUGE, inProgress.GetType())
			require.Len(t, inProgress.GetMetric(), 1)
			require.Equal(t, 1.0, inProgress.GetMetric()[0].GetGauge().GetValue())
			require.Equal(t, map[string]string{"flow": "demo"}, labelMap(inProgress.GetMetric()[0]))

			dur := mfs["pyoco_run_duration_seconds"]
			require.NotNil(t, dur, "families: %v", familyNames(mfs))
			require.Equal(t, dto.MetricType_HISTOGRAM, dur.GetType())
			require.Len(t, dur.GetMetric(), 1)
			h := dur.GetMetric()[0].GetHistogram()
			require.Equal(t, append(slices.Clone(tt.wantBuckets), math.Inf(1)), upperBounds(h))
			require.Equal(t, uint64(2), h.GetSampleCount())
			require.InDelta(t, 4000.75, h.GetSampleSum(), 1e-9)
			require.Equal(t, map[string]string{"flow": "demo", "status": "SUCCEEDED"}, labelMap(dur.GetMetric()[0]))

			for name, mf := range mfs {
				for _, m := range mf.GetMetric() {
					for k := range labelMap(m) {
						require.False(t, strings.HasPrefix(k, "otel_scope_"), "%s has label %s", name, k)
					}
				}
			}
			_, hasTargetInfo := mfs["target_info"]
			require.Equal(t, tt.targetInfo, hasTargetInfo)
			if tt.targetInfo {
				require.Equal(t, "pyoco-test", labelMap(mfs["target_info"].GetMetric()[0])["service_name"])
			}
			require.Contains(t, mfs, "go_goroutines", "Go runtime collector")
		})
	}
}

func TestExemplars(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name         string
		sampler      string
		inSpan       bool
		wantExemplar bool
	}{
		{name: "sampled span", inSpan: true, wantExemplar: true},
		{name: "no span", inSpan: false, wantExemplar: false},
		{name: "unsampled span", sampler: "always_off", inSpan: true, wantExemplar: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, map[string]string{"OTEL_TRACES_SAMPLER": tt.sampler})
			ins := newInstruments(t, b)

			ctx := context.Context(t.Context())
			if tt.inSpan {
				c, s := startSpan(ctx, b, "run demo")
				defer s.End()
				ctx = c
			}
			ins.runDuration.Record(ctx, 0.3, labels("demo", "SUCCEEDED"))
			spanCtx := trace.SpanContextFromContext(ctx)

			ct, body := scrape(t, b, "application/openmetrics-text; version=1.0.0; charset=utf-8")
			require.True(t, strings.HasPrefix(ct, "application/openmetrics-text"), ct)
			require.Contains(t, body, "# TYPE pyoco_run_duration_seconds histogram")

			// An exemplar follows the sample on the bucket line the value fell in.
			exemplarRe := regexp.MustCompile(`(?m)^pyoco_run_duration_seconds_bucket\{[^}]*le="0\.5"[^}]*\} 1 # \{([^}]*)\} 0\.3`)
			m := exemplarRe.FindStringSubmatch(body)
			if !tt.wantExemplar {
				require.Nil(t, m, body)
				require.NotContains(t, body, "trace_id=")
				return
			}
			require.NotNil(t, m, body)
			require.Contains(t, m[1], `trace_id="`+spanCtx.TraceID().String()+`"`)
			require.Contains(t, m[1], `span_id="`+spanCtx.SpanID().String()+`"`)

			// The plain text format has no exemplars.
			_, text := scrape(t, b, "text/plain; version=0.0.4")
			require.NotContains(t, text, "trace_id=")
		})
	}
}

func familyNames(mfs map[string]*dto.MetricFamily) []string { return sortedKeys(mfs) }

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
