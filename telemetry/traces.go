package telemetry

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/pyoco/pyoco/engine"
)

const (
	envTracesExporter     = "OTEL_TRACES_EXPORTER"
	envOTLPEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envOTLPTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	envOTLPProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	envOTLPTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	envOTLPHeaders        = "OTEL_EXPORTER_OTLP_HEADERS"
	envOTLPTracesHeaders  = "OTEL_EXPORTER_OTLP_TRACES_HEADERS"
	envTracesSampler      = "OTEL_TRACES_SAMPLER"
	envTracesSamplerArg   = "OTEL_TRACES_SAMPLER_ARG"
	protocolGRPC          = "grpc"
	protocolHTTPProtobuf  = "http/protobuf"
	exporterOTLP          = "otlp"
	exporterConsole       = "console"
	exporterNone          = "none"
	defaultTracesSampler  = "parentbased_always_on"
	otlpHTTPTracesPath    = "/v1/traces"
)

// traceConfig is what the OTEL_* trace variables ask for.
type traceConfig struct {
	console bool
	otlp    *otlpConfig // nil: no OTLP exporter
	sampler sdktrace.Sampler
}

// otlpConfig is a resolved OTLP exporter target.
type otlpConfig struct {
	protocol string            // protocolGRPC or protocolHTTPProtobuf
	endpoint string            // full URL; for HTTP it includes the signal path
	headers  map[string]string // nil if none
}

// readTraceConfig resolves the trace variables through env.
func readTraceConfig(env func(string) string) (traceConfig, error) {
	var tc traceConfig
	sampler, err := parseSampler(env(envTracesSampler), env(envTracesSamplerArg))
	if err != nil {
		return tc, err
	}
	tc.sampler = sampler

	exporters := strings.TrimSpace(env(envTracesExporter))
	if exporters == "" {
		exporters = exporterOTLP
	}
	for name := range strings.SplitSeq(exporters, ",") {
		name = strings.ToLower(strings.TrimSpace(name))
		switch name {
		case exporterOTLP:
			if tc.otlp, err = readOTLPConfig(env); err != nil {
				return tc, err
			}
		case exporterConsole:
			tc.console = true
		case exporterNone:
		default:
			return tc, fmt.Errorf("telemetry: %s: unknown exporter %q, want otlp, console or none", envTracesExporter, name)
		}
	}
	return tc, nil
}

// otlpSignal names the per-signal OTLP variables of one signal and its
// OTLP/HTTP path.
type otlpSignal struct {
	endpoint, protocol, headers, path string
}

var tracesSignal = otlpSignal{envOTLPTracesEndpoint, envOTLPTracesProtocol, envOTLPTracesHeaders, otlpHTTPTracesPath}

// readOTLPConfig resolves the OTLP variables of traces.
func readOTLPConfig(env func(string) string) (*otlpConfig, error) {
	return readOTLPSignal(env, tracesSignal)
}

// readOTLPSignal resolves the OTLP variables of signal sig. It returns nil,
// nil when no endpoint is set: then nothing is exported. The per-signal
// variables win over the general ones, as the OpenTelemetry specification
// says.
func readOTLPSignal(env func(string) string, sig otlpSignal) (*otlpConfig, error) {
	oc := otlpConfig{protocol: protocolHTTPProtobuf}
	if p := firstSet(env, sig.protocol, envOTLPProtocol); p != "" {
		switch p {
		case protocolGRPC, protocolHTTPProtobuf:
			oc.protocol = p
		default:
			return nil, fmt.Errorf("telemetry: OTLP protocol %q: want %s or %s", p, protocolHTTPProtobuf, protocolGRPC)
		}
	}

	if raw := strings.TrimSpace(env(sig.endpoint)); raw != "" {
		// Per-signal endpoints are used as they are.
		u, err := parseEndpoint(sig.endpoint, raw)
		if err != nil {
			return nil, err
		}
		oc.endpoint = u.String()
	} else if raw := strings.TrimSpace(env(envOTLPEndpoint)); raw != "" {
		u, err := parseEndpoint(envOTLPEndpoint, raw)
		if err != nil {
			return nil, err
		}
		if oc.protocol == protocolHTTPProtobuf {
			// The general endpoint is a base URL: OTLP/HTTP appends the
			// signal's path to it.
			u.Path = strings.TrimSuffix(u.Path, "/") + sig.path
		}
		oc.endpoint = u.String()
	} else {
		return nil, nil
	}

	for _, name := range []string{envOTLPHeaders, sig.headers} {
		kvs, err := parseKeyValues(env(name))
		if err != nil {
			return nil, fmt.Errorf("telemetry: %s: %w", name, err)
		}
		for _, kv := range kvs {
			if oc.headers == nil {
				oc.headers = make(map[string]string)
			}
			oc.headers[kv[0]] = kv[1]
		}
	}
	return &oc, nil
}

func firstSet(env func(string) string, names ...string) string {
	for _, n := range names {
		if v := strings.TrimSpace(env(n)); v != "" {
			return v
		}
	}
	return ""
}

func parseEndpoint(name, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("telemetry: %s: %w", name, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("telemetry: %s: want an http:// or https:// URL, got %q", name, raw)
	}
	return u, nil
}

// parseSampler maps OTEL_TRACES_SAMPLER and its argument to a sampler, as
// the OpenTelemetry SDK would, except that a bad value is an error rather
// than a logged fallback.
func parseSampler(name, arg string) (sdktrace.Sampler, error) {
	name = strings.ToLower(strings.TrimSpace(name))
	if name == "" {
		name = defaultTracesSampler
	}
	ratio := func() (float64, error) {
		arg := strings.TrimSpace(arg)
		if arg == "" {
			return 1, nil
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return 0, fmt.Errorf("telemetry: %s: want a ratio in [0, 1], got %q", envTracesSamplerArg, arg)
		}
		return r, nil
	}
	switch name {
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		return sdktrace.TraceIDRatioBased(r), nil
	case "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "parentbased_traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)), nil
	default:
		return nil, fmt.Errorf("telemetry: %s: unknown sampler %q", envTracesSampler, name)
	}
}

// newTracerProvider makes the tracer provider tc asks for. Without an
// exporter it has no span processor: spans are sampled and get ids but go
// nowhere.
func newTracerProvider(ctx context.Context, cfg Config, tc traceConfig, res *resource.Resource) (*sdktrace.TracerProvider, error) {
	var exporters []sdktrace.SpanExporter
	fail := func(err error) (*sdktrace.TracerProvider, error) {
		for _, e := range exporters {
			err = errors.Join(err, e.Shutdown(ctx))
		}
		return nil, err
	}
	if tc.otlp != nil {
		e, err := newOTLPExporter(ctx, *tc.otlp)
		if err != nil {
			return fail(err)
		}
		exporters = append(exporters, e)
	}
	if tc.console {
		e, err := stdouttrace.New(stdouttrace.WithWriter(cfg.ConsoleWriter))
		if err != nil {
			return fail(fmt.Errorf("telemetry: console exporter: %w", err))
		}
		exporters = append(exporters, e)
	}

	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(tc.sampler),
		sdktrace.WithIDGenerator(engine.IDGenerator{}),
	}
	for _, e := range exporters {
		opts = append(opts, sdktrace.WithBatcher(e))
	}
	return sdktrace.NewTracerProvider(opts...), nil
}

// newOTLPExporter makes the exporter for oc. The settings resolved through
// Config.Env are passed as options, which win over what the exporter reads
// from the process environment itself.
func newOTLPExporter(ctx context.Context, oc otlpConfig) (sdktrace.SpanExporter, error) {
	var (
		e   sdktrace.SpanExporter
		err error
	)
	switch oc.protocol {
	case protocolGRPC:
		opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpointURL(oc.endpoint)}
		if oc.headers != nil {
			opts = append(opts, otlptracegrpc.WithHeaders(maps.Clone(oc.headers)))
		}
		e, err = otlptracegrpc.New(ctx, opts...)
	default:
		opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(oc.endpoint)}
		if oc.headers != nil {
			opts = append(opts, otlptracehttp.WithHeaders(maps.Clone(oc.headers)))
		}
		e, err = otlptracehttp.New(ctx, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTLP %s exporter: %w", oc.protocol, err)
	}
	return e, nil
}
