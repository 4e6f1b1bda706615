package telemetry_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http/httptest"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/pyoco/pyoco/telemetry"
)

// Instruments named the OpenTelemetry way come out under the Prometheus
// names of SPEC §5.
func ExampleSetup() {
	ctx := context.Background()
	env := map[string]string{"OTEL_TRACES_EXPORTER": "none"}
	p, err := telemetry.Setup(ctx, telemetry.Config{Env: func(k string) string { return env[k] }})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = p.Shutdown(ctx) }()

	meter := p.MeterProvider.Meter("example")
	runs, _ := meter.Int64Counter("pyoco.runs")
	duration, _ := meter.Float64Histogram("pyoco.run.duration", metric.WithUnit("s"))
	attrs := metric.WithAttributes(attribute.String("flow", "demo"), attribute.String("status", "SUCCEEDED"))
	runs.Add(ctx, 1, attrs)
	duration.Record(ctx, 42, attrs)

	rec := httptest.NewRecorder()
	p.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "# TYPE pyoco_") {
			fmt.Println(line)
		}
	}
	// Output:
	// # TYPE pyoco_run_duration_seconds histogram
	// # TYPE pyoco_runs_total counter
}
