package telemetry

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/otlptranslator"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
)

// secondsUnit is the UCUM unit of every duration instrument.
const secondsUnit = "s"

// newMeterProvider makes a meter provider read by an OpenTelemetry
// Prometheus exporter registered on a new private registry.
func newMeterProvider(cfg Config, res *resource.Resource) (*sdkmetric.MeterProvider, *prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	// The Go runtime series come from runtime/metrics (go_gc_*, go_memory_*,
	// go_sched_*, plus go_goroutines, go_threads, go_info and
	// go_gc_duration_seconds), not from the MemStats set: that set has
	// go_memstats_alloc_bytes (a gauge) beside go_memstats_alloc_bytes_total
	// (a counter), two families of one name in OpenMetrics, which strict
	// parsers refuse (dashboards/exporter_test.go, TestOpenMetricsStrict).
	goCollector := collectors.NewGoCollector(
		collectors.WithGoCollectorMemStatsMetricsDisabled(),
		collectors.WithGoCollectorRuntimeMetrics(collectors.MetricsGC, collectors.MetricsMemory, collectors.MetricsScheduler),
	)
	if err := reg.Register(goCollector); err != nil {
		return nil, nil, fmt.Errorf("telemetry: register Go collector: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, nil, fmt.Errorf("telemetry: register process collector: %w", err)
	}

	opts := []otelprom.Option{
		otelprom.WithRegisterer(reg),
		// Pinned rather than left to the exporter's default, which is
		// announced to change: this strategy turns pyoco.runs into
		// pyoco_runs_total and pyoco.run.duration (s) into
		// pyoco_run_duration_seconds, the names SPEC §5 promises.
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes),
		// Every series would otherwise carry otel_scope_name and friends,
		// which dashboards do not want.
		otelprom.WithoutScopeInfo(),
	}
	if !cfg.TargetInfo {
		opts = append(opts, otelprom.WithoutTargetInfo())
	}
	exp, err := otelprom.New(opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}

	// The exemplar filter is left at the SDK default (trace_based, or
	// OTEL_METRICS_EXEMPLAR_FILTER): measurements made inside a sampled
	// span keep its trace and span ids as exemplars.
	mp := sdkmetric.NewMeterProvider(
		sdkmetric.WithResource(res),
		sdkmetric.WithReader(exp),
		sdkmetric.WithView(sdkmetric.NewView(
			sdkmetric.Instrument{Kind: sdkmetric.InstrumentKindHistogram, Unit: secondsUnit},
			sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{
				Boundaries: cfg.HistogramBoundaries,
			}},
		)),
	)
	return mp, reg, nil
}
