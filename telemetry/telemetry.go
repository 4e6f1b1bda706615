package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	otellog "go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/propagation"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/pyoco/pyoco/engine"
)

// Config tunes [Setup]. The zero value is ready to use.
type Config struct {
	// ServiceName is the service.name resource attribute when neither
	// OTEL_SERVICE_NAME nor service.name in OTEL_RESOURCE_ATTRIBUTES is set.
	// Defaults to "pyoco".
	ServiceName string

	// ServiceVersion is the service.version resource attribute, unless
	// OTEL_RESOURCE_ATTRIBUTES sets one. Empty leaves it out.
	ServiceVersion string

	// Env looks up the OTEL_* variables Setup resolves itself (see the
	// package documentation). Defaults to os.Getenv.
	Env func(string) string

	// ConsoleWriter receives one JSON object per span when
	// OTEL_TRACES_EXPORTER includes "console". Defaults to os.Stderr. Setup
	// writes to it from the span processor's goroutine, never concurrently.
	ConsoleWriter io.Writer

	// HistogramBoundaries are the bucket boundaries, in seconds, of every
	// histogram whose unit is "s". They must be strictly increasing.
	// Defaults to engine.DurationBuckets (0.005 … 3600).
	HistogramBoundaries []float64

	// TargetInfo adds the target_info metric, carrying the resource
	// attributes, to the Prometheus output. Off by default: Prometheus'
	// own job and instance labels already name the target, and the
	// resource is on every exported span.
	TargetInfo bool

	// SetGlobal makes Setup install its providers as the global ones
	// (otel.SetTracerProvider, otel.SetMeterProvider), for libraries such
	// as otelhttp that fall back to the globals. Off by default, so tests
	// can run many Setups side by side.
	SetGlobal bool
}

// Providers holds the SDK providers made by [Setup]. Its methods are safe for
// concurrent use.
type Providers struct {
	// TracerProvider makes the tracers for run and task spans.
	TracerProvider *sdktrace.TracerProvider
	// MeterProvider makes the meters whose instruments [Providers.Handler]
	// serves.
	MeterProvider *sdkmetric.MeterProvider
	// LoggerProvider exports task log records over OTLP; nil when no logs
	// endpoint is configured (OTEL_EXPORTER_OTLP_[LOGS_]ENDPOINT) or
	// OTEL_LOGS_EXPORTER is none: then no record is made at all.
	LoggerProvider *sdklog.LoggerProvider

	registry *prometheus.Registry
	handler  http.Handler

	shutdownOnce sync.Once
	shutdownErr  error
}

// Setup builds the tracer and meter providers described by cfg and the
// OTEL_* variables read through cfg.Env. It always installs
// [TextMapPropagator] as the global propagator; it installs the providers
// as the global ones only if cfg.SetGlobal is set.
//
// Setup returns an error, naming the variable or field, for an unknown
// exporter, protocol or sampler, a malformed endpoint, header list, sampler
// argument or resource attribute list, or unsorted histogram boundaries.
// The caller must call [Providers.Shutdown] on the result.
func Setup(ctx context.Context, cfg Config) (*Providers, error) {
	if cfg.Env == nil {
		cfg.Env = os.Getenv
	}
	if cfg.ConsoleWriter == nil {
		cfg.ConsoleWriter = os.Stderr
	}
	if cfg.HistogramBoundaries == nil {
		cfg.HistogramBoundaries = engine.DurationBuckets
	}
	cfg.HistogramBoundaries = slices.Clone(cfg.HistogramBoundaries)
	for i := 1; i < len(cfg.HistogramBoundaries); i++ {
		if cfg.HistogramBoundaries[i] <= cfg.HistogramBoundaries[i-1] {
			return nil, fmt.Errorf("telemetry: HistogramBoundaries must be strictly increasing, got %v", cfg.HistogramBoundaries)
		}
	}

	res, err := newResource(ctx, cfg)
	if err != nil {
		return nil, err
	}

	// Resolve every trace setting before making anything that needs stopping.
	tcfg, err := readTraceConfig(cfg.Env)
	if err != nil {
		return nil, err
	}
	lcfg, err := readLogsConfig(cfg.Env)
	if err != nil {
		return nil, err
	}

	mp, reg, err := newMeterProvider(cfg, res)
	if err != nil {
		return nil, err
	}

	tp, err := newTracerProvider(ctx, cfg, tcfg, res)
	if err != nil {
		return nil, errors.Join(err, mp.Shutdown(ctx))
	}

	var lp *sdklog.LoggerProvider
	if lcfg != nil {
		if lp, err = newLoggerProvider(ctx, *lcfg, res); err != nil {
			return nil, errors.Join(err, tp.Shutdown(ctx), mp.Shutdown(ctx))
		}
	}

	otel.SetTextMapPropagator(TextMapPropagator())
	if cfg.SetGlobal {
		otel.SetTracerProvider(tp)
		otel.SetMeterProvider(mp)
	}

	return &Providers{
		TracerProvider: tp,
		MeterProvider:  mp,
		LoggerProvider: lp,
		registry:       reg,
		handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{
			EnableOpenMetrics: true,
			Registry:          reg, // counts promhttp's own errors there
		}),
	}, nil
}

// Logs returns LoggerProvider as the engine takes it (engine.Config
// LoggerProvider): nil, not a typed nil, when log records are off.
func (p *Providers) Logs() otellog.LoggerProvider {
	if p.LoggerProvider == nil {
		return nil
	}
	return p.LoggerProvider
}

// Handler serves this process's metrics in the Prometheus text format, or
// in OpenMetrics, with exemplars, when the scraper asks for it
// (Accept: application/openmetrics-text). Mount it at GET /metrics.
func (p *Providers) Handler() http.Handler { return p.handler }

// Registry returns the private Prometheus registry behind
// [Providers.Handler], to which callers may add their own collectors. It
// already holds the OpenTelemetry instruments and the Go runtime and process
// collectors.
func (p *Providers) Registry() *prometheus.Registry { return p.registry }

// Shutdown flushes pending spans and log records and stops the providers,
// returning their errors joined. It is idempotent: later calls return the first
// call's result. ctx bounds the flush.
func (p *Providers) Shutdown(ctx context.Context) error {
	p.shutdownOnce.Do(func() {
		var lerr error
		if p.LoggerProvider != nil {
			lerr = p.LoggerProvider.Shutdown(ctx)
		}
		p.shutdownErr = errors.Join(p.TracerProvider.Shutdown(ctx), p.MeterProvider.Shutdown(ctx), lerr)
	})
	return p.shutdownErr
}

// TextMapPropagator returns the propagator pyoco uses on every hop: W3C
// Trace Context and W3C Baggage.
func TextMapPropagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}
