package dashboards_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/api"
	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/builtin"
	"github.com/pyoco/pyoco/engine/memstore"
	"github.com/pyoco/pyoco/telemetry"
	"github.com/pyoco/pyoco/worker"
)

// scrapeExporter serves pyoco's real API and an in-process worker, wired
// to the telemetry package exactly as `pyoco server` wires them, runs the
// compose demo flows (deploy/flows: completing, retried, failing) through
// the HTTP API, and returns the name of every series its /metrics serves:
// a histogram family contributes NAME_bucket (with label le), NAME_sum and
// NAME_count; and the label names of each.
func scrapeExporter(t *testing.T) (map[string]dto.MetricType, map[string]map[string]bool) {
	t.Helper()
	ctx := context.Background()
	tel, err := telemetry.Setup(ctx, telemetry.Config{Env: func(string) string { return "" }})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, tel.Shutdown(context.Background())) })

	store := memstore.New()
	reg := engine.NewRegistry()
	require.NoError(t, builtin.Register(reg))
	eng, err := engine.New(store, reg, &engine.Config{WorkerID: "dashboards-test",
		TracerProvider: tel.TracerProvider, MeterProvider: tel.MeterProvider, CancelPollInterval: 50 * time.Millisecond})
	require.NoError(t, err)
	flows, err := api.LoadFlowDir(filepath.Join("..", "deploy", "flows"), reg)
	require.NoError(t, err)
	list, problems := flows.FlowList()
	require.Empty(t, problems, "deploy/flows must all load")
	srv, err := api.New(eng, &api.Config{Flows: flows, Metrics: tel.Handler(),
		TracerProvider: tel.TracerProvider, MeterProvider: tel.MeterProvider})
	require.NoError(t, err)
	webhookDelivered := startWebhooks(t, tel, store)
	w, err := worker.New(eng, store, &worker.Config{ID: eng.WorkerID(), Concurrency: 4, Lease: 5 * time.Second})
	require.NoError(t, err)
	require.NoError(t, w.Start(ctx))
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ts.Close()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, w.Stop(sctx))
		require.NoError(t, srv.Close())
	})
	client := ts.Client()

	var ids []string
	for _, f := range list {
		body := `{"flow_name": "` + f.Name + `"`
		if f.Name == "slow" {
			body += `, "params": {"seconds": "10ms"}`
		}
		body += `}`
		resp, err := client.Post(ts.URL+"/runs", "application/json", strings.NewReader(body))
		require.NoError(t, err)
		var created struct {
			RunID string `json:"run_id"`
		}
		require.Equal(t, http.StatusCreated, resp.StatusCode)
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&created))
		resp.Body.Close()
		ids = append(ids, created.RunID)
	}
	seen := map[engine.RunStatus]bool{}
	for _, id := range ids {
		seen[waitTerminal(t, client, ts.URL, id)] = true
	}
	require.True(t, seen[engine.RunCompleted] && seen[engine.RunFailed], "want completed and failed runs, got %v", seen)

	webhookDelivered()

	resp, err := client.Get(ts.URL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	exportedText = body

	omReq, err := http.NewRequest(http.MethodGet, ts.URL+"/metrics", nil)
	require.NoError(t, err)
	omReq.Header.Set("Accept", "application/openmetrics-text; version=1.0.0; charset=utf-8")
	omResp, err := client.Do(omReq)
	require.NoError(t, err)
	defer omResp.Body.Close()
	require.Equal(t, http.StatusOK, omResp.StatusCode)
	require.Contains(t, omResp.Header.Get("Content-Type"), "application/openmetrics-text")
	exportedOpenMetrics, err = io.ReadAll(omResp.Body)
	require.NoError(t, err)

	tp := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := tp.TextToMetricFamilies(strings.NewReader(string(body)))
	require.NoError(t, err)

	names := map[string]dto.MetricType{}
	lbls := map[string]map[string]bool{}
	add := func(name string, typ dto.MetricType, f *dto.MetricFamily, extra ...string) {
		names[name] = typ
		set := map[string]bool{}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				set[l.GetName()] = true
			}
		}
		for _, l := range extra {
			set[l] = true
		}
		lbls[name] = set
	}
	for name, f := range fams {
		switch typ := f.GetType(); typ {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			add(name+"_bucket", typ, f, "le")
			add(name+"_sum", typ, f)
			add(name+"_count", typ, f)
		case dto.MetricType_SUMMARY:
			add(name, typ, f, "quantile")
			add(name+"_sum", typ, f)
			add(name+"_count", typ, f)
		default:
			add(name, typ, f)
		}
	}
	return names, lbls
}

// waitTerminal polls GET /runs/{id} until the run has finished.
func waitTerminal(t *testing.T, client *http.Client, base, id string) engine.RunStatus {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(base + "/runs/" + id)
		require.NoError(t, err)
		var run struct {
			Status engine.RunStatus `json:"status"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&run))
		resp.Body.Close()
		if run.Status.Terminal() {
			return run.Status
		}
		require.True(t, time.Now().Before(deadline), "run %s still %s", id, run.Status)
		time.Sleep(20 * time.Millisecond)
	}
}

func TestExportedSeries(t *testing.T) {
	t.Parallel()
	names, lbls := exportedSeries(t)
	require.Equal(t, map[string]bool{"flow": true, "status": true}, lbls["pyoco_runs_total"])
	require.Equal(t, map[string]bool{"event": true, "outcome": true}, lbls["pyoco_webhook_deliveries_total"])
	// The SPEC §5 names and otelhttp's request duration are all there.
	for _, n := range []string{
		"pyoco_runs_total", "pyoco_runs_in_progress", "pyoco_run_duration_seconds_bucket",
		"pyoco_task_duration_seconds_bucket", "pyoco_tasks_total", "pyoco_runs_queued",
		"pyoco_queue_wait_seconds_bucket", "pyoco_workers", "pyoco_webhook_deliveries_total",
		"http_server_request_duration_seconds_bucket",
	} {
		require.Contains(t, names, n)
	}
}
