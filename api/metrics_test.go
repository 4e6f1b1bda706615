package api_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/api"
	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/builtin"
	"github.com/pyoco/pyoco/telemetry"
	"github.com/pyoco/pyoco/worker"
)

// TestMetricsExposition checks /metrics end to end on both stores: the
// gauges read from the store at scrape time (pyoco_runs_queued,
// pyoco_workers), pyoco_queue_wait_seconds, the OpenMetrics exposition with
// trace exemplars whose trace ids are those of the runs, and `promtool check
// metrics` on the Prometheus text exposition.
func TestMetricsExposition(t *testing.T) {
	t.Parallel()
	for name, newStore := range map[string]storeFactory{"memstore": memStore, "redisstore": redisStore} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testMetricsExposition(t, newStore)
		})
	}
}

const (
	metricsFlowOK = `version: 1
flow: {name: m_ok}
tasks:
  a: {use: log, inputs: {message: hi}}
  b: {use: noop, depends_on: [a]}
`
	metricsFlowFail = `version: 1
flow: {name: m_fail}
tasks:
  boom: {use: fail, inputs: {message: nope}}
`
)

func testMetricsExposition(t *testing.T, newStore storeFactory) {
	ctx := context.Background()
	tel, err := telemetry.Setup(ctx, telemetry.Config{Env: func(string) string { return "" }})
	require.NoError(t, err)
	t.Cleanup(func() { _ = tel.Shutdown(ctx) })
	store := newStore(t)
	reg := engine.NewRegistry()
	require.NoError(t, builtin.Register(reg))
	eng, err := engine.New(store, reg, &engine.Config{WorkerID: "metrics-worker",
		MeterProvider: tel.MeterProvider, TracerProvider: tel.TracerProvider})
	require.NoError(t, err)
	var flows []*engine.Flow
	for _, src := range []string{metricsFlowOK, metricsFlowFail} {
		f, err := engine.LoadFlow("", []byte(src), reg)
		require.NoError(t, err)
		flows = append(flows, f)
	}
	fs, err := api.NewFlows(flows...)
	require.NoError(t, err)
	srv, err := api.New(eng, &api.Config{Flows: fs, Metrics: tel.Handler(),
		MeterProvider: tel.MeterProvider, TracerProvider: tel.TracerProvider})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	b := &bundle{t: t, url: ts.URL, client: ts.Client()}
	t.Cleanup(b.client.CloseIdleConnections)

	scrape := func(accept string) (string, string) {
		t.Helper()
		req, err := http.NewRequest("GET", ts.URL+"/metrics", nil)
		require.NoError(t, err)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := b.client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return string(body), resp.Header.Get("Content-Type")
	}

	// Before any worker: the submitted runs wait in the queue.
	traceIDs := map[string]bool{}
	var ids []string
	for i := range 5 {
		flow := "m_ok"
		if i >= 3 {
			flow = "m_fail"
		}
		a := b.do("POST", "/runs", map[string]any{"flow_name": flow})
		require.Equal(t, http.StatusCreated, a.status, "%s", a.body)
		doc := a.json(t)
		ids = append(ids, doc["run_id"].(string))
		traceIDs[doc["trace_id"].(string)] = true
	}
	out, _ := scrape("")
	requireSample(t, out, `pyoco_runs_queued{flow="m_ok"}`, 3)
	requireSample(t, out, `pyoco_runs_queued{flow="m_fail"}`, 2)
	requireSample(t, out, `pyoco_workers`, 0)
	// The backlog signals: five entries no worker took, and an oldest
	// PENDING run whose age grows while nobody works.
	requireSample(t, out, `pyoco_queue_lag`, 5)
	require.Contains(t, out, "# TYPE pyoco_queue_oldest_age_seconds gauge")
	age0 := sampleValue(out, `pyoco_queue_oldest_age_seconds{flow="m_ok"}`)
	require.GreaterOrEqual(t, age0, 0.0)
	require.Eventually(t, func() bool {
		out, _ := scrape("")
		return sampleValue(out, `pyoco_queue_oldest_age_seconds{flow="m_ok"}`) > age0 &&
			sampleValue(out, `pyoco_queue_oldest_age_seconds{flow="m_fail"}`) > 0
	}, 5*time.Second, 10*time.Millisecond, "the oldest PENDING run ages")

	w, err := worker.New(eng, store.(engine.Queue), &worker.Config{ID: eng.WorkerID(), Concurrency: 4, Lease: 5 * time.Second})
	require.NoError(t, err)
	require.NoError(t, w.Start(ctx))
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_ = w.Stop(sctx)
	})
	for i, id := range ids {
		want := "COMPLETED"
		if i >= 3 {
			want = "FAILED"
		}
		require.Equal(t, want, b.wait(id)["status"])
	}
	require.Eventually(t, func() bool { // the worker announces itself asynchronously
		out, _ := scrape("")
		return sampleValue(out, "pyoco_workers") == 1
	}, 5*time.Second, 10*time.Millisecond)

	out, ctype := scrape("")
	require.True(t, strings.HasPrefix(ctype, "text/plain"), ctype)
	requireSample(t, out, `pyoco_runs_queued{flow="m_ok"}`, 0)
	requireSample(t, out, `pyoco_runs_queued{flow="m_fail"}`, 0)
	requireSample(t, out, `pyoco_workers`, 1)
	requireSample(t, out, `pyoco_queue_lag`, 0)
	requireSample(t, out, `pyoco_queue_oldest_age_seconds{flow="m_ok"}`, 0)
	requireSample(t, out, `pyoco_queue_oldest_age_seconds{flow="m_fail"}`, 0)
	require.Contains(t, out, "# TYPE pyoco_queue_wait_seconds histogram")
	requireSample(t, out, `pyoco_queue_wait_seconds_count{flow="m_ok"}`, 3)
	requireSample(t, out, `pyoco_queue_wait_seconds_count{flow="m_fail"}`, 2)
	requireSample(t, out, `pyoco_run_duration_seconds_count{flow="m_ok",status="COMPLETED"}`, 3)
	requireSample(t, out, `pyoco_run_duration_seconds_count{flow="m_fail",status="FAILED"}`, 2)
	requireSample(t, out, `pyoco_runs_total{flow="m_ok",status="COMPLETED"}`, 3)
	requireSample(t, out, `pyoco_runs_total{flow="m_fail",status="FAILED"}`, 2)
	requireSample(t, out, `pyoco_task_duration_seconds_count{flow="m_ok",status="SUCCEEDED",task="a"}`, 3)
	requireSample(t, out, `pyoco_tasks_total{flow="m_fail",status="FAILED",task="boom"}`, 2)
	require.NotContains(t, out, "# {", "exemplars only in OpenMetrics")

	// OpenMetrics: the duration histograms carry exemplars of the runs'
	// traces (counters may carry exemplars too, e.g. the PENDING count of
	// the submitting request's trace; parseExemplars checks their form).
	om, ctype := scrape("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
	require.True(t, strings.HasPrefix(ctype, "application/openmetrics-text"), ctype)
	require.True(t, strings.HasSuffix(om, "# EOF\n"), "OpenMetrics ends with # EOF")
	exemplars := parseExemplars(t, om)
	// A counter series started at 0 (never incremented) carries no
	// exemplar: adding 0 must not attach the current span's trace.
	for _, line := range strings.Split(om, "\n") {
		sample, _, ok := strings.Cut(line, " # {")
		if !ok || strings.HasPrefix(line, "#") || !strings.Contains(sample, "_total{") {
			continue
		}
		f := strings.Fields(sample)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		require.NoError(t, err, line)
		require.Greater(t, v, 0.0, "exemplar on a counter that was never incremented: %s", line)
	}
	for _, h := range []string{"pyoco_run_duration_seconds", "pyoco_task_duration_seconds", "pyoco_queue_wait_seconds"} {
		require.NotEmpty(t, exemplars[h], "no exemplar on %s", h)
		for _, ex := range exemplars[h] {
			require.True(t, traceIDs[ex.traceID], "%s exemplar trace_id %s is not a run's trace id (%v)", h, ex.traceID, traceIDs)
			require.Regexp(t, `^[0-9a-f]{16}$`, ex.spanID)
			require.GreaterOrEqual(t, ex.value, 0.0)
		}
	}
	// The failed runs' duration series carry the failed runs' traces.
	failedTraces := map[string]bool{}
	for _, id := range ids[3:] {
		failedTraces[b.wait(id)["trace_id"].(string)] = true
	}
	var sawFailed bool
	for _, ex := range exemplars["pyoco_run_duration_seconds"] {
		if strings.Contains(ex.labels, `status="FAILED"`) {
			require.True(t, failedTraces[ex.traceID], "FAILED series exemplar %s", ex.traceID)
			sawFailed = true
		}
	}
	require.True(t, sawFailed, "no exemplar on the FAILED run duration series")

	promtoolCheck(t, out) // last: it may skip
}

// sampleValue returns the value of the sample series (name{labels} exactly
// as exposed), or -1 if absent.
func sampleValue(exposition, series string) float64 {
	for _, line := range strings.Split(exposition, "\n") {
		rest, ok := strings.CutPrefix(line, series+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
		if err != nil {
			return -1
		}
		return v
	}
	return -1
}

func requireSample(t *testing.T, exposition, series string, want float64) {
	t.Helper()
	require.Equal(t, want, sampleValue(exposition, series), "sample %s", series)
}

type exemplar struct {
	labels          string // the bucket sample's labels
	traceID, spanID string
	value           float64
}

// exemplarRE matches the exemplar of an OpenMetrics bucket sample, after
// "name_bucket{labels} count # {": "exemplar labels} value [timestamp]".
var exemplarRE = regexp.MustCompile(`^(.*)\} (\S+)(?: \S+)?$`)

// parseExemplars returns the exemplars of an OpenMetrics exposition by
// metric: histogram name, or counter name with its _total.
func parseExemplars(t *testing.T, om string) map[string][]exemplar {
	t.Helper()
	out := map[string][]exemplar{}
	for _, line := range strings.Split(om, "\n") {
		sample, exPart, ok := strings.Cut(line, " # {")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		name, labels, ok := strings.Cut(sample, "{")
		require.True(t, ok, "exemplar on a sample without labels: %s", line)
		require.True(t, strings.HasSuffix(name, "_bucket") || strings.HasSuffix(name, "_total"),
			"exemplar on a sample that is neither a bucket nor a counter: %s", line)
		name = strings.TrimSuffix(name, "_bucket")
		m := exemplarRE.FindStringSubmatch(exPart)
		require.NotNil(t, m, "exemplar line: %s", line)
		ex := exemplar{labels: labels}
		for _, kv := range strings.Split(m[1], ",") {
			k, v, ok := strings.Cut(kv, "=")
			require.True(t, ok, "exemplar label %q in %s", kv, line)
			v, err := strconv.Unquote(v)
			require.NoError(t, err, line)
			switch k {
			case "trace_id":
				ex.traceID = v
			case "span_id":
				ex.spanID = v
			}
		}
		v, err := strconv.ParseFloat(m[2], 64)
		require.NoError(t, err, line)
		ex.value = v
		require.Regexp(t, `^[0-9a-f]{32}$`, ex.traceID, line)
		out[name] = append(out[name], ex)
	}
	return out
}

// promtoolCheck runs `promtool check metrics` on a Prometheus text
// exposition. Without promtool it skips the test, unless CI=true (then it
// fails).
func promtoolCheck(t *testing.T, exposition string) {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("promtool not found (CI=true): %v", err)
		}
		t.Skip("promtool not found: skipping promtool check metrics")
	}
	cmd := exec.Command(bin, "check", "metrics")
	cmd.Stdin = strings.NewReader(exposition)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "promtool check metrics:\n%s%s", stdout.String(), stderr.String())
}
