package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"runtime/debug"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/memstore"
)

// Defaults of [Config].
const (
	DefaultMaxBodyBytes      = 1 << 20
	DefaultIdempotencyTTL    = 24 * time.Hour
	DefaultLogPollInterval   = 200 * time.Millisecond
	DefaultHeartbeatInterval = 15 * time.Second
)

// Config tunes a [Server]. The zero value serves an open API with no flows
// offered by name (flow_yaml still works), no /metrics and no plug-in report.
type Config struct {
	// Flows are the flows POST /runs accepts by flow_name and GET /flows
	// lists. nil offers none.
	Flows FlowSource
	// FlowTasks resolves the `use` names of a flow_yaml that POST /runs
	// loads. Defaults to the engine's registry, which refuses a use this
	// process does not know (422); a server whose workers have tasks it
	// lacks passes [engine.AllowUnknownUse] of it (the worker that executes
	// the run checks it then). Load the Flows with the same lookup.
	FlowTasks engine.TaskLookup
	// Token, when set, is the bearer token every endpoint but /healthz,
	// /readyz and /metrics requires (PYOCO_API_TOKEN). Compared in constant
	// time.
	Token string
	// Metrics serves GET /metrics (telemetry.Providers.Handler). nil answers
	// 404 not_found.
	Metrics http.Handler
	// Plugins is served as is, as JSON, by GET /plugins: the command line
	// passes its *plugins.Report (the same document as `pyoco plugins list
	// --json`). nil serves {"path": [], "plugins": []}.
	Plugins any
	// Workers lists the workers of this process; GET /workers and the
	// pyoco_workers gauge use it when the store is not an
	// [engine.WorkerRegistry]. nil: none.
	Workers func(ctx context.Context) ([]engine.WorkerInfo, error)
	// Idempotency keeps Idempotency-Key bindings. Defaults to the store when
	// it is an [engine.IdempotencyStore] (memstore.Store and redisstore.Store
	// are), else to a map in this process (memstore.NewIdempotency).
	Idempotency engine.IdempotencyStore
	// IdempotencyTTL is how long a key keeps its run. Defaults to 24h.
	IdempotencyTTL time.Duration
	// Logger receives request failures (5xx, recovered panics). Defaults to
	// discarding them.
	Logger *slog.Logger
	// TracerProvider and MeterProvider instrument every route with otelhttp
	// and carry the pyoco_runs_queued and pyoco_workers gauges. They default
	// to the global providers.
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	// Propagators extract the caller's trace context. Defaults to W3C trace
	// context and baggage.
	Propagators propagation.TextMapPropagator
	// MaxBodyBytes bounds request bodies (413 beyond). Defaults to 1 MiB.
	MaxBodyBytes int64
	// OutputMaxBytes caps each task output in GET /runs/{run_id} (see
	// [apidoc.NewRunDoc]). Defaults to apidoc.DefaultDocOutputBytes; -1: no cap.
	OutputMaxBytes int
	// LogPollInterval is how often a followed log stream (follow=true)
	// checks the store for new entries. Defaults to 200ms.
	LogPollInterval time.Duration
	// HeartbeatInterval is how often an idle followed log stream sends a
	// comment so proxies keep it open. Defaults to 15s.
	HeartbeatInterval time.Duration
	// NoCoalescing turns off the sharing of concurrent identical reads
	// (GET /runs with the same query, GET /runs/{run_id} of the same run):
	// each request then reads the store itself. See docs/api.md.
	NoCoalescing bool
	// Webhooks is the webhook delivery log behind GET /webhooks/deliveries
	// and POST /webhooks/deliveries/{id}/retry (see api/webhooks.go). nil:
	// an empty list, and 404 on retry.
	Webhooks WebhookLog
	// Schedules lists the flow schedules behind GET /schedules. nil: an
	// empty list.
	Schedules ScheduleSource
}

func (c *Config) withDefaults() (Config, error) {
	var cfg Config
	if c != nil {
		cfg = *c
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.TracerProvider == nil {
		cfg.TracerProvider = otel.GetTracerProvider()
	}
	if cfg.MeterProvider == nil {
		cfg.MeterProvider = otel.GetMeterProvider()
	}
	if cfg.Propagators == nil {
		cfg.Propagators = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	}
	switch {
	case cfg.MaxBodyBytes == 0:
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	case cfg.MaxBodyBytes < 0:
		return cfg, fmt.Errorf("api config: MaxBodyBytes %d: want a positive size", cfg.MaxBodyBytes)
	}
	switch {
	case cfg.IdempotencyTTL == 0:
		cfg.IdempotencyTTL = DefaultIdempotencyTTL
	case cfg.IdempotencyTTL < 0:
		return cfg, fmt.Errorf("api config: IdempotencyTTL %s: want a positive duration", cfg.IdempotencyTTL)
	}
	switch {
	case cfg.LogPollInterval == 0:
		cfg.LogPollInterval = DefaultLogPollInterval
	case cfg.LogPollInterval < 0:
		return cfg, fmt.Errorf("api config: LogPollInterval %s: want a positive duration", cfg.LogPollInterval)
	}
	switch {
	case cfg.HeartbeatInterval == 0:
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	case cfg.HeartbeatInterval < 0:
		return cfg, fmt.Errorf("api config: HeartbeatInterval %s: want a positive duration", cfg.HeartbeatInterval)
	}
	if cfg.OutputMaxBytes < -1 {
		return cfg, fmt.Errorf("api config: OutputMaxBytes %d: want -1, 0 or more", cfg.OutputMaxBytes)
	}
	return cfg, nil
}

// Server is the REST API. Create it with [New] and serve [Server.Handler];
// call [Server.Close] when done. It is safe for concurrent use and starts no
// goroutines of its own.
type Server struct {
	eng     *engine.Engine
	store   engine.Store
	cfg     Config
	log     *slog.Logger
	idem    engine.IdempotencyStore
	failed  *failedSubmits
	token   [sha256.Size]byte
	routes  []route
	mux     *http.ServeMux
	handler http.Handler
	gauges  *gauges
	reads   *coalescer // nil with Config.NoCoalescing
}

// route is one endpoint. The routes table is the only place endpoints are
// registered; the OpenAPI test walks it and the mux.
type route struct {
	pattern string // "METHOD /path"
	open    bool   // exempt from the bearer token
	handle  func(s *Server, w http.ResponseWriter, r *http.Request) error
}

var routes = []route{
	{pattern: "POST /runs", handle: (*Server).runCreate},
	{pattern: "GET /runs", handle: (*Server).runList},
	{pattern: "GET /runs/{run_id}", handle: (*Server).runGet},
	{pattern: "GET /runs/{run_id}/logs", handle: (*Server).runLogs},
	{pattern: "GET /runs/{run_id}/flow", handle: (*Server).runFlow},
	{pattern: "POST /runs/{run_id}/cancel", handle: (*Server).runCancel},
	{pattern: "GET /flows", handle: (*Server).flowList},
	{pattern: "GET /flows/{name}", handle: (*Server).flowGet},
	{pattern: "GET /tasks", handle: (*Server).taskList},
	{pattern: "GET /plugins", handle: (*Server).pluginList},
	{pattern: "GET /workers", handle: (*Server).workerList},
	{pattern: "GET /schedules", handle: (*Server).scheduleList},
	{pattern: "GET /webhooks/deliveries", handle: (*Server).webhookDeliveries},
	{pattern: "POST /webhooks/deliveries/{id}/retry", handle: (*Server).webhookDeliveryRetry},
	{pattern: "GET /healthz", open: true, handle: (*Server).healthz},
	{pattern: "GET /readyz", open: true, handle: (*Server).readyz},
	{pattern: "GET /metrics", open: true, handle: (*Server).metrics},
	{pattern: "GET /openapi.json", handle: (*Server).openAPI},
}

// New returns a Server over eng (its store and registry). It returns an
// error, naming the field, for a bad Config, or if the gauges cannot be
// registered with the MeterProvider.
func New(eng *engine.Engine, cfg *Config) (*Server, error) {
	if eng == nil {
		return nil, errors.New("api: engine is required")
	}
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{eng: eng, store: eng.Store(), cfg: c, log: c.Logger, routes: routes, mux: http.NewServeMux(),
		failed: newFailedSubmits(time.Now)}
	if !c.NoCoalescing {
		s.reads = newCoalescer()
	}
	switch {
	case c.Idempotency != nil:
		s.idem = c.Idempotency
	default:
		if is, ok := s.store.(engine.IdempotencyStore); ok {
			s.idem = is
		} else {
			s.idem = memstore.NewIdempotency()
		}
	}
	if c.Token != "" {
		s.token = sha256.Sum256([]byte(c.Token))
	}
	for _, rt := range s.routes {
		s.mux.Handle(rt.pattern, s.wrap(rt))
	}
	if s.gauges, err = newGauges(s, c.MeterProvider); err != nil {
		return nil, err
	}
	s.handler = otelhttp.NewHandler(http.HandlerFunc(s.serve), "pyoco.api",
		otelhttp.WithTracerProvider(c.TracerProvider),
		otelhttp.WithMeterProvider(c.MeterProvider),
		otelhttp.WithPropagators(c.Propagators),
		otelhttp.WithSpanNameFormatter(func(op string, r *http.Request) string {
			if r.Pattern != "" && r.Pattern != "/" {
				return r.Pattern
			}
			return r.Method + " unmatched"
		}),
	)
	return s, nil
}

// Handler returns the API's handler: every route of SPEC §4, instrumented
// with otelhttp (span and metric route names are the route patterns).
func (s *Server) Handler() http.Handler { return s.handler }

// Close unregisters the server's gauges. The handler keeps working.
func (s *Server) Close() error { return s.gauges.close() }

// serve dispatches r. Unknown paths and methods answer in JSON too (after
// the bearer check, so that a caller without the token learns nothing
// about the routes): 404 not_found, or 405 method_not_allowed with Allow.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if clean := cleanPath(r.URL.Path); clean != r.URL.Path {
		// The mux would redirect to the cleaned path with an HTML body and
		// before the bearer check (so that routes could be enumerated): a
		// path that is not canonical answers 404 in JSON, after the check.
		s.guard(false, func(w http.ResponseWriter, r *http.Request) error {
			return errNotFound("path %q is not canonical (no endpoint; the canonical path is %q)", r.URL.Path, clean)
		}).ServeHTTP(w, r)
		return
	}
	if _, pattern := s.mux.Handler(r); pattern == "" {
		// The mux answers this itself (405, or a redirect): capture the
		// status and Allow header and answer in JSON instead.
		rec := &statusRecorder{header: http.Header{}}
		h, _ := s.mux.Handler(r)
		h.ServeHTTP(rec, r)
		if rec.status == http.StatusMethodNotAllowed {
			s.guard(false, func(w http.ResponseWriter, r *http.Request) error {
				w.Header().Set("Allow", rec.header.Get("Allow"))
				return &apiError{status: http.StatusMethodNotAllowed, doc: ErrorDoc{Code: CodeMethodNotAllowed,
					Message: fmt.Sprintf("method %s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, rec.header.Get("Allow"))}}
			}).ServeHTTP(w, r)
			return
		}
		s.guard(false, func(w http.ResponseWriter, r *http.Request) error {
			return errNotFound("no endpoint %s %s (see GET /openapi.json)", r.Method, r.URL.Path)
		}).ServeHTTP(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// cleanPath is p as the mux would clean it: rooted, no "." or ".."
// elements and no doubled slashes, a trailing slash kept.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		np += "/"
	}
	return np
}

// statusRecorder records what the mux's own handlers would answer.
type statusRecorder struct {
	header http.Header
	status int
}

func (r *statusRecorder) Header() http.Header { return r.header }
func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}
func (r *statusRecorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return len(b), nil
}

func (s *Server) wrap(rt route) http.Handler {
	return s.guard(rt.open, func(w http.ResponseWriter, r *http.Request) error { return rt.handle(s, w, r) })
}

// guard runs h after the bearer check (unless open), with the body limit,
// turning its error into the JSON error answer and a panic into a 500.
func (s *Server) guard(open bool, h func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rw := &trackWriter{ResponseWriter: w}
		defer func() {
			p := recover()
			if p == nil {
				return
			}
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.log.ErrorContext(r.Context(), "api handler panicked", "method", r.Method, "route", r.Pattern,
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			if !rw.wrote {
				writeJSON(rw, http.StatusInternalServerError, ErrorBody{Error: ErrorDoc{Code: CodeInternal, Message: "internal error"}})
			}
		}()
		if !open && !s.authorized(r) {
			s.writeError(rw, r, &apiError{status: http.StatusUnauthorized, doc: ErrorDoc{Code: CodeUnauthorized,
				Message: "missing or wrong bearer token (send Authorization: Bearer <PYOCO_API_TOKEN>)"}})
			return
		}
		if r.ContentLength > s.cfg.MaxBodyBytes {
			// Refused before reading: a body known to be too large is 413
			// whatever it holds (SPEC §4), never a 400 for its content.
			s.writeError(rw, r, &http.MaxBytesError{Limit: s.cfg.MaxBodyBytes})
			return
		}
		if _, err := url.ParseQuery(r.URL.RawQuery); err != nil {
			// Handlers read r.URL.Query(), which drops what it cannot
			// decode: a malformed query string is refused here, once.
			s.writeError(rw, r, errBadParam("query", "malformed query string: %v", err))
			return
		}
		r.Body = http.MaxBytesReader(rw, r.Body, s.cfg.MaxBodyBytes)
		if err := h(rw, r); err != nil {
			if rw.wrote {
				// Too late for an error answer (a stream had begun).
				s.log.WarnContext(r.Context(), "api response cut short", "route", r.Pattern, engine.LogKeyError, err)
				return
			}
			s.writeError(rw, r, err)
		}
	})
}

// trackWriter notes whether the answer has begun. It keeps Flush and the
// rest reachable through Unwrap (http.ResponseController).
type trackWriter struct {
	http.ResponseWriter
	wrote bool
}

func (w *trackWriter) WriteHeader(code int) {
	w.wrote = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *trackWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *trackWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// authorized checks the bearer token in constant time (over SHA-256
// digests, so the token's length does not leak either).
func (s *Server) authorized(r *http.Request) bool {
	if s.cfg.Token == "" {
		return true
	}
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(got[:], s.token[:]) == 1
}
