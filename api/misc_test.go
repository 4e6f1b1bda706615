package api_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/api"
	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/memstore"
	"github.com/pyoco/pyoco/telemetry"
)

// downStore is a store whose Redis is gone.
type downStore struct{ engine.Store }

func (downStore) Ping(context.Context) error { return fmt.Errorf("ping: %w", engine.ErrUnavailable) }
func (downStore) RunGet(context.Context, string) (*engine.Run, error) {
	return nil, fmt.Errorf("get: %w", engine.ErrUnavailable)
}
func (downStore) RunList(context.Context, *engine.RunListParams) (*engine.RunPage, error) {
	return nil, fmt.Errorf("list: %w", engine.ErrUnavailable)
}
func (downStore) RunCreate(context.Context, *engine.Run) error {
	return fmt.Errorf("create: %w", engine.ErrUnavailable)
}

func TestStoreUnavailable(t *testing.T) {
	t.Parallel()
	b := setup(t, func(*testing.T) engine.Store { return downStore{memstore.New()} })
	for _, c := range []struct{ method, path string }{
		{"GET", "/runs"}, {"GET", "/runs/x"}, {"GET", "/runs/x/logs"}, {"POST", "/runs/x/cancel"}, {"GET", "/readyz"},
	} {
		requireError(t, b.do(c.method, c.path, nil), http.StatusServiceUnavailable, api.CodeUnavailable)
	}
	requireError(t, b.do("POST", "/runs", map[string]any{"flow_name": "other"}), http.StatusServiceUnavailable, api.CodeUnavailable)
	require.Equal(t, http.StatusOK, b.do("GET", "/healthz", nil).status)
}

// panicFlows panics when listed.
type panicFlows struct{ *api.Flows }

func (panicFlows) FlowList() ([]*engine.Flow, []api.FlowProblem) { panic("boom") }

func TestPanicIsJSON500(t *testing.T) {
	t.Parallel()
	b := setup(t, memStore, func(c *api.Config) { c.Flows = panicFlows{} })
	requireError(t, b.do("GET", "/flows", nil), http.StatusInternalServerError, api.CodeInternal)
	require.Equal(t, http.StatusOK, b.do("GET", "/healthz", nil).status)
}

// TestMetrics serves telemetry's Prometheus handler and checks the gauges
// read from the store, and the otelhttp route names.
func TestMetrics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tel, err := telemetry.Setup(ctx, telemetry.Config{Env: func(string) string { return "" }})
	require.NoError(t, err)
	t.Cleanup(func() { _ = tel.Shutdown(ctx) })
	store := memstore.New()
	eng, err := engine.New(store, engine.NewRegistry(), &engine.Config{MeterProvider: tel.MeterProvider, TracerProvider: tel.TracerProvider})
	require.NoError(t, err)
	flow, err := engine.LoadFlow("", []byte("version: 1\nflow: {name: queued_flow}\ntasks:\n  a: {use: noop}\n"), nil)
	require.NoError(t, err)
	flows, err := api.NewFlows(flow)
	require.NoError(t, err)
	srv, err := api.New(eng, &api.Config{Flows: flows, Metrics: tel.Handler(), MeterProvider: tel.MeterProvider, TracerProvider: tel.TracerProvider})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)

	scrape := func() string {
		resp, err := ts.Client().Get(ts.URL + "/metrics")
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return string(b)
	}
	out := scrape()
	require.Contains(t, out, `pyoco_runs_queued{flow="queued_flow"} 0`)
	require.Contains(t, out, "\npyoco_workers 0\n")

	for range 3 {
		resp, err := ts.Client().Post(ts.URL+"/runs", "application/json", strings.NewReader(`{"flow_name": "queued_flow"}`))
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusCreated, resp.StatusCode)
	}
	out = scrape()
	require.Contains(t, out, "# TYPE pyoco_runs_queued gauge")
	require.Contains(t, out, `pyoco_runs_queued{flow="queued_flow"} 3`)
	require.Contains(t, out, "# TYPE pyoco_workers gauge")
	require.Contains(t, out, `pyoco_runs_total{flow="queued_flow",status="PENDING"} 3`)
	// otelhttp's server metrics carry the route pattern, never a run id.
	require.True(t, strings.Contains(out, `http_route="/runs"`), "no http_route label")
}

// countingStore counts RunList calls; the first blocks until release.
type countingStore struct {
	engine.Store
	lists   atomic.Int32
	release chan struct{}
}

func (s *countingStore) RunList(ctx context.Context, p *engine.RunListParams) (*engine.RunPage, error) {
	if s.lists.Add(1) == 1 {
		<-s.release
	}
	return s.Store.RunList(ctx, p)
}

// TestListCoalescing: concurrent identical GET /runs share the store read
// that starts after them; with NoCoalescing each reads the store.
func TestListCoalescing(t *testing.T) {
	t.Parallel()
	for _, off := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoCoalescing=%v", off), func(t *testing.T) {
			t.Parallel()
			cs := &countingStore{Store: memstore.New(), release: make(chan struct{})}
			b := setup(t, func(*testing.T) engine.Store { return cs }, func(c *api.Config) { c.NoCoalescing = off })
			b.submit(map[string]any{"flow_name": "other"}) // stays PENDING: no worker on this store
			first := make(chan answer)
			go func() { first <- b.do("GET", "/runs?flow=other", nil) }()
			require.Eventually(t, func() bool { return cs.lists.Load() == 1 }, 5*time.Second, time.Millisecond)
			// A run submitted after the first read began: every later
			// request must see it.
			id2 := b.submit(map[string]any{"flow_name": "other"})
			const n = 10
			answers := make(chan answer, n)
			for range n {
				go func() { answers <- b.do("GET", "/runs?flow=other", nil) }()
			}
			if off {
				require.Eventually(t, func() bool { return cs.lists.Load() == 1+n }, 5*time.Second, time.Millisecond)
			} else {
				// The others queue behind the first read.
				require.Eventually(t, func() bool { return api.WaitingReads(b.srv) == n }, 5*time.Second, time.Millisecond)
				require.Equal(t, int32(1), cs.lists.Load())
			}
			close(cs.release)
			a := <-first
			require.Equal(t, http.StatusOK, a.status)
			for range n {
				a := <-answers
				require.Equal(t, http.StatusOK, a.status, "%s", a.body)
				require.Contains(t, string(a.body), id2, "a request must see the runs submitted before it")
			}
			if !off {
				require.Equal(t, int32(2), cs.lists.Load(), "the 10 requests share one read")
			}
		})
	}
}
