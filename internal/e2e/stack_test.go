//go:build linux

package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/internal/redistest"
)

// apiRun is the part of GET /runs/{id} the stack test reads.
type apiRun struct {
	RunID    string  `json:"run_id"`
	FlowName string  `json:"flow_name"`
	Status   string  `json:"status"`
	TraceID  string  `json:"trace_id"`
	WorkerID string  `json:"worker_id"`
	Attempt  int     `json:"attempt"`
	Error    *string `json:"error"`
	Tasks    map[string]struct {
		State      string `json:"state"`
		Use        string `json:"use"`
		Attempts   int    `json:"attempts"`
		AttemptLog []struct {
			Attempt  int    `json:"attempt"`
			Status   string `json:"status"`
			SpanID   string `json:"span_id"`
			WorkerID string `json:"worker_id"`
		} `json:"attempt_log"`
	} `json:"tasks"`
}

// pyocoAPI is the API of the stack's `pyoco server`.
type pyocoAPI struct {
	s      *stack
	url    string
	traces map[string]string // run id -> trace_id answered by POST /runs
}

func (a *pyocoAPI) submit(t *testing.T, flow string) string {
	t.Helper()
	var out struct {
		RunID   string `json:"run_id"`
		Status  string `json:"status"`
		TraceID string `json:"trace_id"`
	}
	require.NoError(t, a.s.do(http.MethodPost, a.url+"/runs", map[string]any{"flow_name": flow, "tags": []string{"stack"}}, http.StatusCreated, &out))
	require.Equal(t, "PENDING", out.Status)
	require.Regexp(t, `^[0-9a-f]{32}$`, out.TraceID)
	a.traces[out.RunID] = out.TraceID
	return out.RunID
}

func (a *pyocoAPI) get(id string) (*apiRun, error) {
	var r apiRun
	if err := a.s.do(http.MethodGet, a.url+"/runs/"+id, nil, http.StatusOK, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// waitStatus polls until every run of ids has one of the statuses.
func (a *pyocoAPI) waitStatus(t *testing.T, ids []string, within time.Duration, statuses ...string) map[string]*apiRun {
	t.Helper()
	out := map[string]*apiRun{}
	eventually(t, within, fmt.Sprintf("%d runs %v", len(ids), statuses), func() error {
		var waiting []string
		for _, id := range ids {
			if _, ok := out[id]; ok {
				continue
			}
			r, err := a.get(id)
			if err != nil {
				return err
			}
			if slices.Contains(statuses, r.Status) {
				out[id] = r
			} else {
				waiting = append(waiting, r.FlowName+" "+id+" "+r.Status)
			}
		}
		if len(waiting) > 0 {
			return fmt.Errorf("not yet: %v", waiting)
		}
		return nil
	})
	return out
}

// TestStack is the real-stack end-to-end test (issues 5 and 7): a real
// Redis, `pyoco server` and two `pyoco worker` processes exporting traces
// over OTLP to a real Jaeger, and a real Prometheus scraping the server and
// both workers every second. It submits a known mix of runs over the API
// (completing, failing, retried then succeeding, cancelled while running,
// queued while every worker slot is busy) and checks what Prometheus,
// promtool, Jaeger and the dashboards' queries see.
//
// Needs prometheus and promtool on PATH (Debian package prometheus) and a
// Jaeger v2 binary ($PYOCO_JAEGER_BIN or the cache .ci/run builds); without
// them it skips, or fails when CI=true.
func TestStack(t *testing.T) {
	const promHowto = "install it with `apt-get install --no-install-recommends prometheus` (Debian), or run .ci/run"
	promBin := lookTool(t, "prometheus", promHowto)
	promtool := lookTool(t, "promtool", promHowto)
	jaegerPath := jaegerBin(t)
	start := time.Now()
	flowsDir, err := filepath.Abs(filepath.Join("testdata", "stack", "flows"))
	require.NoError(t, err)

	rd := redistest.StartServer(t)
	s := newStack(t)
	j := s.startJaeger(jaegerPath)
	hooks := startWebhookReceiver(t)
	logs := startLogsReceiver(t)

	otel := []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + j.otlpHTTP,
		"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=" + j.otlpHTTP + "/v1/traces",
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/protobuf",
		"OTEL_TRACES_EXPORTER=otlp",
		"OTEL_TRACES_SAMPLER=always_on",
		"OTEL_BSP_SCHEDULE_DELAY=200",
		// Task log records go to the test's OTLP logs receiver.
		"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT=" + logs.url + "/v1/logs",
		"OTEL_BLRP_SCHEDULE_DELAY=200",
		"PYOCO_PLUGIN_PATH=" + s.dir,
		"PYOCO_API_TOKEN=", // the API is open here
	}
	redisURL := "redis://" + rd.Addr()
	const ns = "stack"
	apiRe := regexp.MustCompile(`msg="serving the API" url=(http://127\.0\.0\.1:\d+)`)
	metricsRe := regexp.MustCompile(`msg="serving metrics" addr=(http://127\.0\.0\.1:\d+)/metrics`)

	srv := s.start("server", pyocoBin, []string{"server", "--addr", "127.0.0.1:0", "--redis", redisURL,
		"--namespace", ns, "--flows", flowsDir}, slices.Concat(otel, []string{"OTEL_SERVICE_NAME=pyoco-server",
		"PYOCO_WEBHOOK_URL=" + hooks.url, "PYOCO_WEBHOOK_SECRET=" + hooks.secret,
		"PYOCO_WEBHOOK_EVENTS=run.completed,run.failed,run.cancelled"}))
	m, err := srv.waitLog(apiRe, 30*time.Second)
	require.NoError(t, err)
	api := &pyocoAPI{s: s, url: m[1], traces: map[string]string{}}

	// Two workers, two slots each: four long runs fill every slot. A
	// short lease, so that the crash at the end is taken over soon.
	const slots = 2
	var workerURLs []string
	var workers []*stackProc
	startWorker := func(name string) (*stackProc, string) {
		w := s.start(name, pyocoBin, []string{"worker", "--redis", redisURL, "--namespace", ns,
			"--concurrency", strconv.Itoa(slots), "--metrics-addr", "127.0.0.1:0", "--shutdown-timeout", "5s", "--lease", "3s"},
			slices.Concat(otel, []string{"OTEL_SERVICE_NAME=pyoco-worker"}))
		m, err := w.waitLog(metricsRe, 30*time.Second)
		require.NoError(t, err)
		return w, m[1]
	}
	for i := range 2 {
		w, u := startWorker(fmt.Sprintf("worker-%d", i+1))
		workers = append(workers, w)
		workerURLs = append(workerURLs, u)
	}
	hostPort := func(u string) string { p, _ := url.Parse(u); return p.Host }
	workerTargets := []string{hostPort(workerURLs[0]), hostPort(workerURLs[1])}
	prom := s.startPrometheus(promBin, promtool, hostPort(api.url), workerTargets)
	t.Logf("stack up in %s: api %s, workers %v, prometheus %s, jaeger %s", time.Since(start).Round(time.Millisecond),
		api.url, workerURLs, prom.url, j.query)

	// promq polls an instant query until check accepts its result.
	promq := func(what, expr string, within time.Duration, check func([]promSample) error) {
		t.Helper()
		eventually(t, within, what+" ("+expr+")", func() error {
			r, err := s.query(prom, expr)
			if err != nil {
				return err
			}
			return check(r)
		})
	}
	scalarIs := func(want float64) func([]promSample) error {
		return func(r []promSample) error {
			if len(r) != 1 {
				return fmt.Errorf("want one series, got %v", r)
			}
			if v, err := strconv.ParseFloat(r[0].value(), 64); err != nil || v != want {
				return fmt.Errorf("got %s, want %v", r[0].value(), want)
			}
			return nil
		}
	}
	promq("every target scraped", `count(up == 1)`, 30*time.Second, scalarIs(3))
	promq("both workers alive", `max(pyoco_workers)`, 30*time.Second, scalarIs(2))
	// Before any run: no dashboard query says "No data" (webhook
	// deliveries, failures, durations show 0).
	checkDashboards(t, s, prom, nil, dashboardFiles(t), true)

	// 1. Four long runs take every slot: in progress 4.
	var long []string
	for range 2 * slots {
		long = append(long, api.submit(t, "e2e_long"))
	}
	api.waitStatus(t, long, 30*time.Second, "RUNNING")
	promq("runs in progress while the long runs go", `sum(pyoco_runs_in_progress)`, 30*time.Second, scalarIs(4))

	// 2. Three more wait in the queue while no slot is free.
	var queued []string
	for range 3 {
		queued = append(queued, api.submit(t, "e2e_ok"))
	}
	promq("queued runs while every slot is busy", `sum by (flow) (pyoco_runs_queued)`, 30*time.Second, func(r []promSample) error {
		got := map[string]string{}
		for _, x := range r {
			if x.value() != "0" {
				got[x.Metric["flow"]] = x.value()
			}
		}
		if !maps.Equal(got, map[string]string{"e2e_ok": "3"}) {
			return fmt.Errorf("non-zero queued by flow: %v", got)
		}
		return nil
	})
	for _, id := range queued {
		r, err := api.get(id)
		require.NoError(t, err)
		require.Equal(t, "PENDING", r.Status, "a queued run started while every slot was busy")
	}

	// 3. Cancel the long runs while they run; the queued ones then run,
	// and so does the rest of the mix.
	for _, id := range long {
		var out struct{ Status string }
		require.NoError(t, s.do(http.MethodPost, api.url+"/runs/"+id+"/cancel", nil, http.StatusAccepted, &out))
		require.Equal(t, "CANCELLING", out.Status)
	}
	mix := map[string]int{"e2e_ok": 2, "e2e_fail": 2, "e2e_retry": 2}
	all := slices.Concat(long, queued)
	for _, flow := range slices.Sorted(maps.Keys(mix)) {
		for range mix[flow] {
			all = append(all, api.submit(t, flow))
		}
	}
	runs := api.waitStatus(t, all, 90*time.Second, "COMPLETED", "FAILED", "CANCELLED")
	wantStatus := map[string]string{"e2e_long": "CANCELLED", "e2e_ok": "COMPLETED", "e2e_fail": "FAILED", "e2e_retry": "COMPLETED"}
	for id, r := range runs {
		require.Equal(t, wantStatus[r.FlowName], r.Status, "run %s of %s", id, r.FlowName)
	}
	for id, r := range runs {
		if r.FlowName == "e2e_retry" {
			require.Equal(t, 2, r.Tasks["flaky"].Attempts, "run %s: the retried task took two attempts", id)
		}
	}
	t.Logf("%d runs finished %s after the start", len(all), time.Since(start).Round(time.Millisecond))

	// a) Prometheus sees exactly the known counts.
	perFlow := map[string]int{"e2e_long": 4, "e2e_ok": 5, "e2e_fail": 2, "e2e_retry": 2}
	wantRuns := map[string]string{}
	wantDur := map[string]string{}
	for flow, n := range perFlow {
		// Every status of a flow has a series from the process's first run
		// of it on, at 0 until a run enters it (so rate() sees the first).
		for _, st := range []string{"PENDING", "RUNNING", "CANCELLING", "COMPLETED", "FAILED", "CANCELLED"} {
			wantRuns[flow+" "+st] = "0"
		}
		for _, st := range []string{"PENDING", "RUNNING", wantStatus[flow]} {
			wantRuns[flow+" "+st] = strconv.Itoa(n)
		}
		wantDur[flow+" "+wantStatus[flow]] = strconv.Itoa(n)
	}
	wantRuns["e2e_long CANCELLING"] = "4"
	// e2e_crash runs later (the takeover below); the server knows it from
	// its --flows, so its series exist at 0 from the start.
	for _, st := range []string{"PENDING", "RUNNING", "CANCELLING", "COMPLETED", "FAILED", "CANCELLED"} {
		wantRuns["e2e_crash "+st] = "0"
	}
	byFlowStatus := func(want map[string]string) func([]promSample) error {
		return func(r []promSample) error {
			got := map[string]string{}
			for _, x := range r {
				got[x.Metric["flow"]+" "+x.Metric["status"]] = x.value()
			}
			if !maps.Equal(got, want) {
				return fmt.Errorf("got %v, want %v", sortedMap(got), sortedMap(want))
			}
			return nil
		}
	}
	promq("runs by flow and status", `sum by (flow, status) (pyoco_runs_total)`, 30*time.Second, byFlowStatus(wantRuns))
	promq("finished runs' durations", `sum by (flow, status) (pyoco_run_duration_seconds_count)`, 30*time.Second, byFlowStatus(wantDur))
	promq("no run in progress at the end", `sum(pyoco_runs_in_progress)`, 30*time.Second, scalarIs(0))
	promq("no run queued at the end", `sum(pyoco_runs_queued)`, 30*time.Second, scalarIs(0))
	promq("the retried task's attempts", `sum by (status) (pyoco_tasks_total{flow="e2e_retry", task="flaky"})`, 30*time.Second,
		func(r []promSample) error {
			got := map[string]string{}
			for _, x := range r {
				got[x.Metric["status"]] = x.value()
			}
			if want := map[string]string{"FAILED": "2", "SUCCEEDED": "2", "CANCELLED": "0"}; !maps.Equal(got, want) {
				return fmt.Errorf("got %v, want %v", got, want)
			}
			return nil
		})
	promq("queue waits of every started run", `sum(pyoco_queue_wait_seconds_count)`, 30*time.Second, scalarIs(13))

	// promtool lints every exposition (text format); the OpenMetrics one
	// (with exemplars) is served when asked for.
	for _, u := range append([]string{api.url}, workerURLs...) {
		checkExposition(t, s, promtool, u+"/metrics")
	}

	// The duration histograms carry trace exemplars of our runs.
	traceIDs := map[string]bool{}
	for _, r := range runs {
		traceIDs[r.TraceID] = true
	}
	eventually(t, 30*time.Second, "a run-duration exemplar with a run's trace id", func() error {
		return checkExemplars(s, prom, `pyoco_run_duration_seconds_bucket`, start, traceIDs)
	})

	// b) Jaeger has each run's trace: one run span, one task span per
	// attempt, with the SPEC §6 attributes.
	for _, id := range all {
		require.Equal(t, api.traces[id], runs[id].TraceID, "run %s: GET /runs/{id} reports the trace id POST /runs answered", id)
		checkTrace(t, s, j, runs[id])
	}
	t.Logf("traces of %d runs checked in Jaeger", len(all))

	// d) Webhooks: a signed delivery per finished run to the loopback
	// receiver, which answers the very first request 503 with Retry-After,
	// so that one is retried.
	eventually(t, 60*time.Second, "a webhook per finished run", func() error {
		if req, ids, _, _ := hooks.deliveries(); req < len(all)+1 || ids != len(all) {
			return fmt.Errorf("%d requests for %d webhook ids, want %d+ for %d", req, ids, len(all)+1, len(all))
		}
		return nil
	})
	requests, _, events, bad := hooks.deliveries()
	require.Empty(t, bad, "webhook requests")
	require.Equal(t, map[string]int{"run.completed": 7, "run.failed": 2, "run.cancelled": 4}, events)
	promq("webhook deliveries by outcome", `sum by (outcome) (pyoco_webhook_deliveries_total)`, 30*time.Second, func(r []promSample) error {
		got := map[string]string{}
		for _, x := range r {
			if x.value() != "0" {
				got[x.Metric["outcome"]] = x.value()
			}
		}
		// Every request but the first was answered 200 (at least once:
		// a duplicate delivery would be a success too).
		if want := map[string]string{"success": strconv.Itoa(requests - 1), "retry": "1"}; !maps.Equal(got, want) {
			return fmt.Errorf("got %v, want %v", got, want)
		}
		return nil
	})

	// c) Every query of every dashboard returns data.
	checkDashboards(t, s, prom, api, dashboardFiles(t), false)

	// e) Task log records reach an OTLP receiver with their attempt's span.
	for _, id := range all {
		r := runs[id]
		if r.FlowName != "e2e_ok" {
			continue
		}
		spanOf := map[string]string{}
		for name, ts := range r.Tasks {
			for _, a := range ts.AttemptLog {
				spanOf[a.SpanID] = name
			}
		}
		eventually(t, 30*time.Second, "task log records of run "+id, func() error {
			recs, bad := logs.received(id)
			if len(bad) > 0 {
				return fmt.Errorf("bad OTLP log requests: %v", bad)
			}
			for _, rec := range recs {
				if strings.HasPrefix(rec.body, "hello from a") {
					if rec.traceID != r.TraceID || spanOf[rec.spanID] != "a" || rec.attrs["pyoco.task.name"] != "a" ||
						rec.severity != "INFO" || rec.service != "pyoco-worker" || rec.attrs["pyoco.log.stream"] != "stdout" {
						return fmt.Errorf("record %+v: want trace %s, a span of task a (%v), INFO, service pyoco-worker", rec, r.TraceID, spanOf)
					}
					return nil
				}
			}
			return fmt.Errorf("%d records of the run, none with task a's output", len(recs))
		})
	}

	// f) A worker SIGKILLed mid-task: the other takes the run over after
	// the lease, and Jaeger shows ONE trace with one run span, the
	// interrupted attempt (emitted by the survivor) and the resumed one
	// linked to it.
	crash := api.submit(t, "e2e_crash")
	var victim, survivor *stackProc
	eventually(t, 30*time.Second, "the crash run's first attempt running", func() error {
		r, err := api.get(crash)
		if err != nil {
			return err
		}
		if h := r.Tasks["hold"]; r.Status != "RUNNING" || h.State != "RUNNING" || len(h.AttemptLog) != 1 {
			return fmt.Errorf("run %s, hold %s, %d attempts", r.Status, h.State, len(h.AttemptLog))
		}
		for i, w := range workers {
			if strings.HasSuffix(r.WorkerID, "-"+strconv.Itoa(w.cmd.Process.Pid)) {
				victim, survivor = w, workers[1-i]
			}
		}
		if victim == nil {
			return fmt.Errorf("worker %s is none of the stack's", r.WorkerID)
		}
		return nil
	})
	require.NoError(t, victim.cmd.Process.Kill())
	<-victim.done
	crashed := api.waitStatus(t, []string{crash}, 60*time.Second, "COMPLETED", "FAILED")[crash]
	require.Equal(t, "COMPLETED", crashed.Status, "the taken-over run completes")
	require.Equal(t, 2, crashed.Attempt, "one takeover")
	hold := crashed.Tasks["hold"]
	require.Len(t, hold.AttemptLog, 2)
	require.Equal(t, "FAILED", hold.AttemptLog[0].Status, "the interrupted attempt")
	checkTrace(t, s, j, crashed)
	spans, err := s.trace(j, crashed.TraceID)
	require.NoError(t, err)
	var interrupted, resumed *jaegerSpan
	for i := range spans {
		switch spans[i].SpanID {
		case hold.AttemptLog[0].SpanID:
			interrupted = &spans[i]
		case hold.AttemptLog[1].SpanID:
			resumed = &spans[i]
		}
	}
	require.NotNil(t, interrupted, "the interrupted attempt's span, emitted by the worker that took over")
	require.NotNil(t, resumed)
	require.Equal(t, "true", interrupted.tag("pyoco.task.interrupted"))
	require.Equal(t, hold.AttemptLog[0].WorkerID, interrupted.tag("pyoco.worker.id"), "the lost worker's attempt")
	require.Equal(t, "ERROR", interrupted.tag("otel.status_code"))
	linked := false
	for _, ref := range resumed.References {
		linked = linked || (ref.RefType == "FOLLOWS_FROM" && ref.SpanID == interrupted.SpanID)
	}
	require.True(t, linked, "the resumed attempt links to the interrupted one: %+v", resumed.References)
	t.Logf("crash run %s: one trace, interrupted attempt %s linked from %s", crash, interrupted.SpanID, resumed.SpanID)

	// g) Backlog: with no worker left, the oldest PENDING run's age rises;
	// a new worker drains the queue and the age falls to 0.
	survivor.stop(15 * time.Second)
	backlog := []string{api.submit(t, "e2e_ok"), api.submit(t, "e2e_ok")}
	const ageQ = `max(pyoco_queue_oldest_age_seconds{flow="e2e_ok"})`
	var age0 float64
	promq("backlog age while no worker runs", ageQ, 30*time.Second, func(r []promSample) error {
		if len(r) != 1 {
			return fmt.Errorf("want one series, got %v", r)
		}
		v, err := strconv.ParseFloat(r[0].value(), 64)
		if err != nil || v <= 0 {
			return fmt.Errorf("age %s, want > 0", r[0].value())
		}
		age0 = v
		return nil
	})
	promq("backlog age rising", ageQ, 30*time.Second, func(r []promSample) error {
		if v, err := strconv.ParseFloat(r[0].value(), 64); err != nil || v <= age0 {
			return fmt.Errorf("age %s, want > %v", r[0].value(), age0)
		}
		return nil
	})
	promq("queue lag while no worker runs", `max(pyoco_queue_lag)`, 30*time.Second, scalarIs(2))
	startWorker("worker-3")
	api.waitStatus(t, backlog, 60*time.Second, "COMPLETED")
	promq("backlog age back to 0", ageQ, 30*time.Second, scalarIs(0))
	promq("queue lag back to 0", `max(pyoco_queue_lag)`, 30*time.Second, scalarIs(0))

	t.Logf("stack test done in %s", time.Since(start).Round(time.Millisecond))
}

// sortedMap renders a map with sorted keys (for failure messages).
func sortedMap(m map[string]string) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// checkExposition runs `promtool check metrics` on u's exposition, in the
// text format and in OpenMetrics (with exemplars).
func checkExposition(t *testing.T, s *stack, promtool, u string) {
	t.Helper()
	for _, accept := range []string{"text/plain; version=0.0.4", "application/openmetrics-text; version=1.0.0"} {
		req, err := http.NewRequest(http.MethodGet, u, nil)
		require.NoError(t, err)
		req.Header.Set("Accept", accept)
		resp, err := s.http.Do(req)
		require.NoError(t, err)
		body := readAll(t, resp)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", u, body)
		require.Contains(t, body, "pyoco_")
		if strings.HasPrefix(accept, "text/plain") {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
			cmd.Stdin = strings.NewReader(body)
			out, err := cmd.CombinedOutput()
			cancel()
			require.NoError(t, err, "promtool check metrics on %s:\n%s", u, out)
		} else {
			require.Contains(t, resp.Header.Get("Content-Type"), "application/openmetrics-text", u)
			require.True(t, strings.HasSuffix(body, "# EOF\n"), "%s: OpenMetrics ends with # EOF", u)
		}
	}
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// checkExemplars requires an exemplar of metric whose trace_id is one of ids.
func checkExemplars(s *stack, p *prometheus, metric string, since time.Time, ids map[string]bool) error {
	q := url.Values{
		"query": {metric},
		"start": {strconv.FormatInt(since.Add(-time.Minute).Unix(), 10)},
		"end":   {strconv.FormatInt(time.Now().Add(time.Minute).Unix(), 10)},
	}
	body, err := s.getJSON(p.url + "/api/v1/query_exemplars?" + q.Encode())
	if err != nil {
		return err
	}
	var out struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   []struct {
			Exemplars []struct {
				Labels map[string]string `json:"labels"`
			} `json:"exemplars"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return err
	}
	if out.Status != "success" {
		return fmt.Errorf("query_exemplars: %s", out.Error)
	}
	n := 0
	for _, d := range out.Data {
		for _, e := range d.Exemplars {
			n++
			if ids[e.Labels["trace_id"]] {
				return nil
			}
		}
	}
	return fmt.Errorf("%d exemplars, none with a trace id of this test's runs", n)
}

// checkTrace checks one run's trace in Jaeger against GET /runs/{id}.
func checkTrace(t *testing.T, s *stack, j *jaeger, r *apiRun) {
	t.Helper()
	// Every attempt of every task must have a span: wait for all of them.
	wantTask := map[string]int{} // span id -> attempt number
	attemptOf := map[string]string{}
	for name, ts := range r.Tasks {
		require.Len(t, ts.AttemptLog, ts.Attempts, "run %s task %s: attempt_log lists every attempt", r.RunID, name)
		for _, a := range ts.AttemptLog {
			require.Regexp(t, `^[0-9a-f]{16}$`, a.SpanID, "run %s task %s attempt %d", r.RunID, name, a.Attempt)
			wantTask[a.SpanID] = a.Attempt
			attemptOf[a.SpanID] = name + "\x00" + a.Status
		}
	}
	var spans []jaegerSpan
	eventually(t, 30*time.Second, fmt.Sprintf("trace %s of run %s (%s) in Jaeger", r.TraceID, r.RunID, r.FlowName), func() error {
		var err error
		spans, err = s.trace(j, r.TraceID)
		if err != nil {
			return err
		}
		runSpans, taskSpans := 0, map[string]bool{}
		for _, sp := range spans {
			if sp.OperationName == "run "+r.FlowName {
				runSpans++
			}
			if strings.HasPrefix(sp.OperationName, "task ") {
				taskSpans[sp.SpanID] = true
			}
		}
		if runSpans < 1 || len(taskSpans) < len(wantTask) {
			return fmt.Errorf("%d spans so far: %d run spans, %d of %d task spans", len(spans), runSpans, len(taskSpans), len(wantTask))
		}
		return nil
	})
	var run *jaegerSpan
	tasks := map[string]*jaegerSpan{}
	for i := range spans {
		sp := &spans[i]
		require.Equal(t, r.TraceID, sp.TraceID)
		switch {
		case strings.HasPrefix(sp.OperationName, "run "):
			require.Nil(t, run, "run %s: more than one run span", r.RunID)
			run = sp
		case strings.HasPrefix(sp.OperationName, "task "):
			tasks[sp.SpanID] = sp
		}
	}
	require.NotNil(t, run)
	ctx := fmt.Sprintf("run %s (%s)", r.RunID, r.FlowName)
	require.Equal(t, "run "+r.FlowName, run.OperationName, ctx)
	require.Empty(t, run.parent(), "%s: the run span is the root (no traceparent was given)", ctx)
	for k, want := range map[string]string{
		"pyoco.run.id":         r.RunID,
		"pyoco.flow.name":      r.FlowName,
		"pyoco.run.status":     r.Status,
		"pyoco.run.attempt":    strconv.Itoa(r.Attempt),
		"pyoco.worker.id":      r.WorkerID,
		"cicd.pipeline.name":   r.FlowName,
		"cicd.pipeline.run.id": r.RunID,
	} {
		require.Equal(t, want, run.tag(k), "%s: run span attribute %s", ctx, k)
	}
	if r.Status == "FAILED" {
		require.Equal(t, "ERROR", run.tag("otel.status_code"), "%s: a failed run's span has status Error", ctx)
		require.Equal(t, "failure", run.tag("cicd.pipeline.result"), ctx)
	} else {
		require.NotEqual(t, "ERROR", run.tag("otel.status_code"), ctx)
	}

	require.Len(t, tasks, len(wantTask), "%s: one task span per attempt", ctx)
	for id, sp := range tasks {
		attempt, ok := wantTask[id]
		require.True(t, ok, "%s: task span %s (%s) is no attempt of /runs/{id}", ctx, id, sp.OperationName)
		name, status, _ := strings.Cut(attemptOf[id], "\x00")
		tctx := fmt.Sprintf("%s task %s attempt %d", ctx, name, attempt)
		require.Equal(t, "task "+name, sp.OperationName, tctx)
		require.Equal(t, run.SpanID, sp.parent(), "%s: child of the run span", tctx)
		for k, want := range map[string]string{
			"pyoco.run.id":            r.RunID,
			"pyoco.flow.name":         r.FlowName,
			"pyoco.task.name":         name,
			"pyoco.task.use":          r.Tasks[name].Use,
			"pyoco.task.attempt":      strconv.Itoa(attempt),
			"pyoco.task.status":       status,
			"cicd.pipeline.task.name": name,
		} {
			require.Equal(t, want, sp.tag(k), "%s: attribute %s", tctx, k)
		}
		require.NotEmpty(t, sp.tag("pyoco.worker.id"), tctx)
		if status == "FAILED" {
			require.Equal(t, "ERROR", sp.tag("otel.status_code"), "%s: a failed attempt's span has status Error", tctx)
			require.Equal(t, "failure", sp.tag("cicd.pipeline.task.run.result"), tctx)
		} else {
			require.NotEqual(t, "ERROR", sp.tag("otel.status_code"), tctx)
		}
	}
	if r.FlowName == "e2e_retry" {
		n := 0
		for _, sp := range tasks {
			if sp.OperationName == "task flaky" {
				n++
			}
		}
		require.GreaterOrEqual(t, n, 2, "%s: the retried task has a span per attempt", ctx)
	}
}
