package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/telemetry"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// syncBuffer is a bytes.Buffer safe to write from the span processor while
// a test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type testBundle struct {
	providers *telemetry.Providers
	console   *syncBuffer
}

// setup runs telemetry.Setup with env as the only environment (the process
// environment is never consulted for the variables Setup resolves) and
// shuts the providers down when the test ends.
func setup(t *testing.T, env map[string]string, modify ...func(*telemetry.Config)) *testBundle {
	t.Helper()
	console := &syncBuffer{}
	cfg := telemetry.Config{
		Env:           func(k string) string { return env[k] },
		ConsoleWriter: console,
	}
	for _, m := range modify {
		m(&cfg)
	}
	p, err := telemetry.Setup(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, p.Shutdown(ctx))
	})
	return &testBundle{providers: p, console: console}
}

// shutdown flushes and stops the providers now, within a few seconds: an
// exporter that cannot reach its collector would make it fail.
func (b *testBundle) shutdown(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	require.NoError(t, b.providers.Shutdown(ctx))
}

func startSpan(ctx context.Context, b *testBundle, name string) (context.Context, trace.Span) {
	return b.providers.TracerProvider.Tracer("github.com/pyoco/pyoco/telemetry_test").Start(ctx, name)
}

func TestSetupTraceExporters(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name        string
		env         map[string]string
		wantConsole bool
	}{
		{name: "no variables", env: nil},
		{name: "otlp without endpoint", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}},
		{name: "otlp grpc without endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}},
		{name: "none", env: map[string]string{"OTEL_TRACES_EXPORTER": "none"}},
		{name: "console", env: map[string]string{"OTEL_TRACES_EXPORTER": "console"}, wantConsole: true},
		{name: "console and otlp without endpoint", env: map[string]string{"OTEL_TRACES_EXPORTER": " otlp , Console "}, wantConsole: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, tt.env)

			_, span := startSpan(t.Context(), b, "run demo")
			sc := span.SpanContext()
			span.End()

			// Spans are recorded, sampled and get valid ids whether or not
			// anything exports them.
			require.True(t, sc.IsValid())
			require.True(t, sc.IsSampled())

			b.shutdown(t)
			out := b.console.String()
			if !tt.wantConsole {
				require.Empty(t, out)
				return
			}
			var got struct {
				Name        string
				SpanContext struct{ TraceID, SpanID string }
				Resource    []struct {
					Key   string
					Value struct{ Value any }
				}
			}
			require.NoError(t, json.NewDecoder(strings.NewReader(out)).Decode(&got), out)
			require.Equal(t, "run demo", got.Name)
			require.Equal(t, sc.TraceID().String(), got.SpanContext.TraceID)
			require.Equal(t, sc.SpanID().String(), got.SpanContext.SpanID)
			res := map[string]any{}
			for _, kv := range got.Resource {
				res[kv.Key] = kv.Value.Value
			}
			require.Equal(t, "pyoco", res["service.name"])
		})
	}
}

func TestSetupErrors(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		env     map[string]string
		cfg     telemetry.Config
		wantErr []string // substrings of the error
	}{
		{
			name:    "unknown exporter",
			env:     map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"},
			wantErr: []string{"OTEL_TRACES_EXPORTER", `"zipkin"`},
		},
		{
			name:    "unknown exporter in a list",
			env:     map[string]string{"OTEL_TRACES_EXPORTER": "console,jaeger"},
			wantErr: []string{"OTEL_TRACES_EXPORTER", `"jaeger"`},
		},
		{
			name:    "unknown protocol",
			env:     map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/thrift", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"},
			wantErr: []string{`"http/thrift"`},
		},
		{
			name:    "endpoint without scheme",
			env:     map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4318"},
			wantErr: []string{"OTEL_EXPORTER_OTLP_ENDPOINT", `"localhost:4318"`},
		},
		{
			name:    "traces endpoint with other scheme",
			env:     map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "ftp://collector"},
			wantErr: []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"},
		},
		{
			name:    "malformed headers",
			env:     map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_EXPORTER_OTLP_HEADERS": "authorization"},
			wantErr: []string{"OTEL_EXPORTER_OTLP_HEADERS"},
		},
		{
			name:    "unknown sampler",
			env:     map[string]string{"OTEL_TRACES_SAMPLER": "jaeger_remote"},
			wantErr: []string{"OTEL_TRACES_SAMPLER", `"jaeger_remote"`},
		},
		{
			name:    "sampler ratio out of range",
			env:     map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"},
			wantErr: []string{"OTEL_TRACES_SAMPLER_ARG", `"1.5"`},
		},
		{
			name:    "malformed resource attributes",
			env:     map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment"},
			wantErr: []string{"OTEL_RESOURCE_ATTRIBUTES"},
		},
		{
			name:    "unsorted histogram boundaries",
			cfg:     telemetry.Config{HistogramBoundaries: []float64{1, 0.5}},
			wantErr: []string{"HistogramBoundaries"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := tt.cfg
			cfg.Env = func(k string) string { return tt.env[k] }
			p, err := telemetry.Setup(t.Context(), cfg)
			require.Error(t, err)
			require.Nil(t, p)
			for _, s := range tt.wantErr {
				require.Contains(t, err.Error(), s)
			}
		})
	}
}

func TestServiceResource(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name        string
		env         map[string]string
		cfg         telemetry.Config
		wantName    string
		wantVersion string
		wantAttrs   map[string]string
	}{
		{name: "default", wantName: "pyoco"},
		{name: "config", cfg: telemetry.Config{ServiceName: "pyoco-worker", ServiceVersion: "1.2.3"}, wantName: "pyoco-worker", wantVersion: "1.2.3"},
		{
			name:        "resource attributes over config",
			env:         map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs, service.version=9, deployment.environment=prod%20eu"},
			cfg:         telemetry.Config{ServiceName: "pyoco-worker", ServiceVersion: "1.2.3"},
			wantName:    "from-attrs",
			wantVersion: "9",
			wantAttrs:   map[string]string{"deployment.environment": "prod eu"},
		},
		{
			name:     "service name variable over everything",
			env:      map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs", "OTEL_SERVICE_NAME": "from-var"},
			cfg:      telemetry.Config{ServiceName: "pyoco-worker"},
			wantName: "from-var",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, tt.env, func(c *telemetry.Config) {
				c.ServiceName, c.ServiceVersion = tt.cfg.ServiceName, tt.cfg.ServiceVersion
			})
			_, span := startSpan(t.Context(), b, "run demo")
			span.End()
			res := span.(sdktrace.ReadOnlySpan).Resource()
			got := map[string]string{}
			for _, kv := range res.Attributes() {
				got[string(kv.Key)] = kv.Value.Emit()
			}
			require.Equal(t, tt.wantName, got["service.name"])
			require.Equal(t, tt.wantVersion, got["service.version"])
			require.Equal(t, "go", got["telemetry.sdk.language"])
			for k, v := range tt.wantAttrs {
				require.Equal(t, v, got[k], k)
			}
		})
	}
}

func TestIDGeneratorHonoured(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)

	want := engine.NewTraceID()
	ctx, root := startSpan(engine.ContextWithTraceID(t.Context(), want), b, "run demo")
	_, child := startSpan(ctx, b, "task build")
	child.End()
	root.End()
	require.Equal(t, want, root.SpanContext().TraceID())
	require.Equal(t, want, child.SpanContext().TraceID())
	require.NotEqual(t, root.SpanContext().SpanID(), child.SpanContext().SpanID())

	_, other := startSpan(t.Context(), b, "run other")
	other.End()
	require.True(t, other.SpanContext().TraceID().IsValid())
	require.NotEqual(t, want, other.SpanContext().TraceID())
}

func TestSamplerFromEnv(t *testing.T) {
	t.Parallel()

	sampledParent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: engine.NewTraceID(), SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled, Remote: true,
	})
	unsampledParent := sampledParent.WithTraceFlags(0)

	tests := []struct {
		sampler, arg                         string
		wantRoot, wantSampled, wantUnsampled bool
	}{
		{sampler: "", wantRoot: true, wantSampled: true, wantUnsampled: false},
		{sampler: "always_on", wantRoot: true, wantSampled: true, wantUnsampled: true},
		{sampler: "always_off", wantRoot: false, wantSampled: false, wantUnsampled: false},
		{sampler: "traceidratio", wantRoot: true, wantSampled: true, wantUnsampled: true},
		{sampler: "traceidratio", arg: "0", wantRoot: false, wantSampled: false, wantUnsampled: false},
		{sampler: "parentbased_always_on", wantRoot: true, wantSampled: true, wantUnsampled: false},
		{sampler: "parentbased_always_off", wantRoot: false, wantSampled: true, wantUnsampled: false},
		{sampler: "parentbased_traceidratio", arg: "0", wantRoot: false, wantSampled: true, wantUnsampled: false},
		{sampler: "ParentBased_TraceIDRatio", arg: " 1 ", wantRoot: true, wantSampled: true, wantUnsampled: false},
	}
	for _, tt := range tests {
		t.Run(tt.sampler+"/"+tt.arg, func(t *testing.T) {
			t.Parallel()
			b := setup(t, map[string]string{"OTEL_TRACES_SAMPLER": tt.sampler, "OTEL_TRACES_SAMPLER_ARG": tt.arg})
			sampled := func(ctx context.Context) bool {
				_, span := startSpan(ctx, b, "run demo")
				span.End()
				return span.SpanContext().IsSampled()
			}
			require.Equal(t, tt.wantRoot, sampled(t.Context()), "root")
			require.Equal(t, tt.wantSampled, sampled(trace.ContextWithRemoteSpanContext(t.Context(), sampledParent)), "sampled parent")
			require.Equal(t, tt.wantUnsampled, sampled(trace.ContextWithRemoteSpanContext(t.Context(), unsampledParent)), "unsampled parent")
		})
	}
}

// otlpRequest is one export received by a test collector.
type otlpRequest struct {
	path    string
	auth    string
	request *coltracepb.ExportTraceServiceRequest
}

// collector gathers what a test collector receives.
type collector struct {
	mu       sync.Mutex
	requests []otlpRequest
}

func (c *collector) add(r otlpRequest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.requests = append(c.requests, r)
}

func (c *collector) received() []otlpRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]otlpRequest(nil), c.requests...)
}

// newHTTPCollector starts an OTLP/HTTP receiver on loopback.
func newHTTPCollector(t *testing.T) (*httptest.Server, *collector) {
	t.Helper()
	c := &collector{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-protobuf" || err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		req := &coltracepb.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(body, req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.add(otlpRequest{path: r.URL.Path, auth: r.Header.Get("Authorization"), request: req})
		resp, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(resp)
	}))
	t.Cleanup(srv.Close)
	return srv, c
}

type grpcCollector struct {
	coltracepb.UnimplementedTraceServiceServer
	c *collector
}

func (g *grpcCollector) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	g.c.add(otlpRequest{path: "grpc", auth: strings.Join(md.Get("authorization"), ","), request: req})
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// newGRPCCollector starts an OTLP/gRPC receiver on loopback and returns
// its http:// URL.
func newGRPCCollector(t *testing.T) (string, *collector) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	c := &collector{}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, &grpcCollector{c: c})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		require.NoError(t, <-done)
	})
	return "http://" + lis.Addr().String(), c
}

// receivedSpans flattens what a collector received into its spans and the
// service.name of each resource.
func receivedSpans(reqs []otlpRequest) (spans []*tracepb.Span, services []string) {
	for _, r := range reqs {
		for _, rs := range r.request.GetResourceSpans() {
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.GetKey() == "service.name" {
					services = append(services, kv.GetValue().GetStringValue())
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				spans = append(spans, ss.GetSpans()...)
			}
		}
	}
	return spans, services
}

func TestOTLPExport(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name     string
		grpc     bool
		env      func(url string) map[string]string
		wantPath string
	}{
		{
			name:     "http base endpoint",
			env:      func(u string) map[string]string { return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": u} },
			wantPath: "/v1/traces",
		},
		{
			name: "http base endpoint with path",
			env: func(u string) map[string]string {
				return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": u + "/otlp/"}
			},
			wantPath: "/otlp/v1/traces",
		},
		{
			name: "http traces endpoint used as is",
			env: func(u string) map[string]string {
				return map[string]string{
					"OTEL_EXPORTER_OTLP_ENDPOINT":        "http://127.0.0.1:1",
					"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": u + "/custom/traces",
				}
			},
			wantPath: "/custom/traces",
		},
		{
			name: "explicit http/protobuf",
			env: func(u string) map[string]string {
				return map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT": u}
			},
			wantPath: "/v1/traces",
		},
		{
			name: "grpc",
			grpc: true,
			env: func(u string) map[string]string {
				return map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": u}
			},
			wantPath: "grpc",
		},
		{
			name: "grpc traces endpoint",
			grpc: true,
			env: func(u string) map[string]string {
				return map[string]string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": u}
			},
			wantPath: "grpc",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var (
				url string
				col *collector
			)
			if tt.grpc {
				url, col = newGRPCCollector(t)
			} else {
				var srv *httptest.Server
				srv, col = newHTTPCollector(t)
				url = srv.URL
			}
			env := tt.env(url)
			env["OTEL_SERVICE_NAME"] = "pyoco-test"
			env["OTEL_EXPORTER_OTLP_HEADERS"] = "authorization=Bearer%20general,x-other=1"
			env["OTEL_EXPORTER_OTLP_TRACES_HEADERS"] = "authorization=Bearer%20traces"
			b := setup(t, env)

			tid := engine.NewTraceID()
			_, span := startSpan(engine.ContextWithTraceID(t.Context(), tid), b, "run demo")
			span.End()
			require.Empty(t, col.received(), "batched until flushed")

			b.shutdown(t)
			reqs := col.received()
			require.NotEmpty(t, reqs)
			for _, r := range reqs {
				require.Equal(t, tt.wantPath, r.path)
				require.Equal(t, "Bearer traces", r.auth)
			}
			spans, services := receivedSpans(reqs)
			require.Len(t, spans, 1)
			require.Equal(t, "run demo", spans[0].GetName())
			require.Equal(t, tid[:], spans[0].GetTraceId())
			require.Equal(t, []string{"pyoco-test"}, services)
		})
	}
}

func TestShutdownIdempotent(t *testing.T) {
	t.Parallel()
	b := setup(t, map[string]string{"OTEL_TRACES_EXPORTER": "console"})
	_, span := startSpan(t.Context(), b, "run demo")
	span.End()
	b.shutdown(t)
	b.shutdown(t)
	require.Equal(t, 1, strings.Count(b.console.String(), `"Name":"run demo"`))
}

func TestTextMapPropagator(t *testing.T) {
	t.Parallel()
	require.ElementsMatch(t, []string{"traceparent", "tracestate", "baggage"}, telemetry.TextMapPropagator().Fields())

	sc, ok := engine.ParseTraceParent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	require.True(t, ok)
	carrier := propagation.MapCarrier{}
	telemetry.TextMapPropagator().Inject(trace.ContextWithRemoteSpanContext(t.Context(), sc), carrier)
	require.Equal(t, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", carrier.Get("traceparent"))
}

// TestSetGlobal changes process globals, so it does not run in parallel.
// The globals cannot be put back (the otel package refuses its own
// delegate), and no other test reads them.
func TestSetGlobal(t *testing.T) {
	b := setup(t, nil, func(c *telemetry.Config) { c.SetGlobal = true })
	require.Same(t, b.providers.TracerProvider, otel.GetTracerProvider())
	require.Same(t, b.providers.MeterProvider, otel.GetMeterProvider())
	require.ElementsMatch(t, []string{"traceparent", "tracestate", "baggage"}, otel.GetTextMapPropagator().Fields())
}
