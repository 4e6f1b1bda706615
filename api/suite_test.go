package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/api"
	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/memstore"
)

func memStore(t *testing.T) engine.Store { return memstore.New() }

// TestMemstore runs the API suite on the in-memory store.
func TestMemstore(t *testing.T) {
	t.Parallel()
	runSuite(t, inProcess(memStore))
}

// runSuite runs every store-backed API test on the servers of mk.
func runSuite(t *testing.T, mk serverFactory) {
	tests := map[string]func(t *testing.T, mk serverFactory){
		"RunLifecycle":  testRunLifecycle,
		"RunList":       testRunList,
		"Logs":          testLogs,
		"LogsFollow":    testLogsFollow,
		"Cancel":        testCancel,
		"Flows":         testFlows,
		"Meta":          testMeta,
		"Idempotency":   testIdempotency,
		"TraceParent":   testTraceParent,
		"BadInput":      testBadInput,
		"Auth":          testAuth,
		"FlowYAMLError": testFlowYAMLError,
		"RunFlow":       testRunFlow,
	}
	names := make([]string, 0, len(tests))
	for n := range tests {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		t.Run(n, func(t *testing.T) {
			t.Parallel()
			tests[n](t, mk)
		})
	}
}

var tsRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

func requireKeys(t *testing.T, m map[string]any, keys ...string) {
	t.Helper()
	for _, k := range keys {
		require.Contains(t, m, k)
	}
}

var summaryKeys = []string{"run_id", "flow_name", "status", "tags", "created_at", "start_time", "end_time",
	"run_duration_ms", "queue_wait_ms", "attempt", "worker_id", "trace_id", "error"}

func testRunLifecycle(t *testing.T, mk serverFactory) {
	b := mk(t)
	a := b.do("POST", "/runs", map[string]any{"flow_name": "hello", "params": map[string]any{"who": "api"}, "tags": []string{"t1", "t2"}})
	require.Equal(t, http.StatusCreated, a.status, "%s", a.body)
	require.Equal(t, "application/json", a.header.Get("Content-Type"))
	created := a.json(t)
	require.Len(t, created, 3)
	require.Equal(t, "PENDING", created["status"])
	require.Regexp(t, `^[0-9a-f]{32}$`, created["trace_id"])
	id := created["run_id"].(string)
	require.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, id)

	run := b.wait(id)
	requireKeys(t, run, append(summaryKeys, "params", "task_summary", "tasks")...)
	require.Equal(t, "COMPLETED", run["status"])
	require.Equal(t, "hello", run["flow_name"])
	require.Equal(t, []any{"t1", "t2"}, run["tags"])
	require.Equal(t, map[string]any{"who": "api"}, run["params"])
	require.Equal(t, created["trace_id"], run["trace_id"])
	require.Equal(t, float64(1), run["attempt"])
	require.Equal(t, b.workerID, run["worker_id"])
	require.Nil(t, run["error"])
	for _, k := range []string{"created_at", "start_time", "end_time"} {
		require.Regexp(t, tsRE, run[k], k)
	}
	require.GreaterOrEqual(t, run["run_duration_ms"], float64(0))
	require.GreaterOrEqual(t, run["queue_wait_ms"], float64(0))

	ts := run["task_summary"].(map[string]any)
	require.Len(t, ts, 2)
	greet := ts["greet"].(map[string]any)
	requireKeys(t, greet, "state", "duration_ms", "attempts", "ended_at")
	require.Equal(t, "SUCCEEDED", greet["state"])
	require.Equal(t, float64(1), greet["attempts"])
	tasks := run["tasks"].(map[string]any)
	shout := tasks["shout"].(map[string]any)
	requireKeys(t, shout, "state", "use", "started_at", "ended_at", "duration_ms", "attempts", "error", "output")
	require.Equal(t, "shell", shout["use"])
	require.Equal(t, float64(0), shout["output"].(map[string]any)["exit_code"])
	require.Regexp(t, tsRE, shout["started_at"])
	require.Equal(t, "hello api", tasks["greet"].(map[string]any)["output"])

	// The same run in the list.
	a = b.do("GET", "/runs?flow=hello", nil)
	require.Equal(t, http.StatusOK, a.status)
	list := a.json(t)
	runs := list["runs"].([]any)
	require.Len(t, runs, 1)
	sum := runs[0].(map[string]any)
	require.Len(t, sum, len(summaryKeys))
	requireKeys(t, sum, summaryKeys...)
	require.Equal(t, id, sum["run_id"])
	require.Nil(t, list["next_cursor"])
}

func testRunList(t *testing.T, mk serverFactory) {
	b := mk(t)
	var ids []string
	for i := range 5 {
		flow := "hello"
		if i%2 == 1 {
			flow = "other"
		}
		ids = append(ids, b.submit(map[string]any{"flow_name": flow, "tags": []string{fmt.Sprintf("n%d", i), "all"}}))
		time.Sleep(2 * time.Millisecond) // distinct created_at
	}
	for _, id := range ids {
		b.wait(id)
	}
	failed := b.submit(map[string]any{"flow_yaml": "version: 1\nflow: {name: failing}\ntasks:\n  boom: {use: fail, inputs: {message: nope}}\n"})
	require.Equal(t, "FAILED", b.wait(failed)["status"])

	listIDs := func(q string) ([]string, any) {
		a := b.do("GET", "/runs"+q, nil)
		require.Equal(t, http.StatusOK, a.status, "%s: %s", q, a.body)
		m := a.json(t)
		var out []string
		for _, r := range m["runs"].([]any) {
			out = append(out, r.(map[string]any)["run_id"].(string))
		}
		return out, m["next_cursor"]
	}
	all, _ := listIDs("")
	require.Equal(t, []string{failed, ids[4], ids[3], ids[2], ids[1], ids[0]}, all, "newest first")
	got, _ := listIDs("?status=failed")
	require.Equal(t, []string{failed}, got)
	got, _ = listIDs("?status=Failed,completed")
	require.Len(t, got, 6)
	got, _ = listIDs("?status=FAILED&status=PENDING")
	require.Equal(t, []string{failed}, got)
	got, _ = listIDs("?status=COMPLETED&flow=other")
	require.Equal(t, []string{ids[3], ids[1]}, got)
	got, _ = listIDs("?tag=n2")
	require.Equal(t, []string{ids[2]}, got)
	got, _ = listIDs("?tag=all&flow=hello")
	require.Equal(t, []string{ids[4], ids[2], ids[0]}, got)
	got, _ = listIDs("?flow=nosuchflow")
	require.Empty(t, got)

	// Paging.
	var paged []string
	q := "?limit=2"
	for pages := 0; ; pages++ {
		require.Less(t, pages, 5)
		got, next := listIDs(q)
		paged = append(paged, got...)
		if next == nil {
			break
		}
		require.Len(t, got, 2)
		q = "?limit=2&cursor=" + next.(string)
	}
	require.Equal(t, all, paged)
}

func testLogs(t *testing.T, mk serverFactory) {
	b := mk(t)
	id := b.submit(map[string]any{"flow_name": "hello"})
	b.wait(id)
	a := b.do("GET", "/runs/"+id+"/logs", nil)
	require.Equal(t, http.StatusOK, a.status, "%s", a.body)
	doc := a.json(t)
	requireKeys(t, doc, "run_id", "run_status", "logs", "next_after")
	require.Equal(t, id, doc["run_id"])
	require.Equal(t, "COMPLETED", doc["run_status"])
	logs := doc["logs"].([]any)
	require.GreaterOrEqual(t, len(logs), 3)
	var texts []string
	for i, l := range logs {
		e := l.(map[string]any)
		requireKeys(t, e, "seq", "task", "stream", "level", "text", "timestamp", "trace_id", "span_id")
		require.Equal(t, float64(i+1), e["seq"])
		require.Regexp(t, tsRE, e["timestamp"])
		require.Contains(t, []any{"stdout", "stderr", "log"}, e["stream"])
		texts = append(texts, e["task"].(string)+"/"+e["stream"].(string)+":"+e["text"].(string))
	}
	require.Contains(t, texts, "shout/stdout:LOUD")
	require.Contains(t, texts, "shout/stderr:quiet")
	require.Equal(t, float64(len(logs)), doc["next_after"])

	a = b.do("GET", "/runs/"+id+"/logs?tail=1", nil)
	tail := a.json(t)["logs"].([]any)
	require.Len(t, tail, 1)
	require.Equal(t, float64(len(logs)), tail[0].(map[string]any)["seq"])

	a = b.do("GET", "/runs/"+id+"/logs?task=shout", nil)
	for _, l := range a.json(t)["logs"].([]any) {
		require.Equal(t, "shout", l.(map[string]any)["task"])
	}
	a = b.do("GET", fmt.Sprintf("/runs/%s/logs?after=%d", id, len(logs)-1), nil)
	require.Len(t, a.json(t)["logs"].([]any), 1)
	a = b.do("GET", fmt.Sprintf("/runs/%s/logs?after=%d", id, len(logs)+5), nil)
	doc = a.json(t)
	require.Empty(t, doc["logs"])
	require.Equal(t, float64(len(logs)+5), doc["next_after"])

	// follow on a finished run: the entries, then end.
	s := b.follow("/runs/" + id + "/logs?follow=true&task=shout")
	var n int
	for {
		ev, ok := s.next(t)
		require.True(t, ok, "stream ended without an end event")
		if ev.event == "end" {
			require.Contains(t, ev.data, `"run_status":"COMPLETED"`)
			break
		}
		n++
	}
	require.Equal(t, 2, n)
	_, ok := s.next(t)
	require.False(t, ok, "stream must close after end")
}

func testLogsFollow(t *testing.T, mk serverFactory) {
	b := mk(t)
	gate := filepath.Join(b.dir, "gate")
	src := fmt.Sprintf("version: 1\nflow: {name: gated}\ntasks:\n  g:\n    use: shell\n    inputs: {cmd: 'echo first; while [ ! -f %s ]; do sleep 0.02; done; echo second; echo third'}\n", gate)
	id := b.submit(map[string]any{"flow_yaml": src})
	s := b.follow("/runs/" + id + "/logs?follow=true")
	ev, ok := s.next(t)
	require.True(t, ok)
	require.Contains(t, ev.data, `"text":"first"`)
	firstSeq := ev.id
	require.Regexp(t, `^\d+$`, firstSeq)
	var first map[string]any
	require.NoError(t, json.Unmarshal([]byte(ev.data), &first))
	require.Equal(t, firstSeq, fmt.Sprint(first["seq"]), "the id: line is the entry's seq")
	// The run is still going: it waits for the gate we open only now.
	a := b.do("GET", "/runs/"+id, nil)
	require.Equal(t, "RUNNING", a.json(t)["status"])
	// A second client resumes after the first entry while the run is
	// still going (a reconnect with Last-Event-ID): nothing until the gate.
	resumed := b.follow("/runs/"+id+"/logs?follow=true", "Last-Event-ID", firstSeq)
	select {
	case ev := <-resumed.events:
		t.Fatalf("resumed stream sent %+v before the run logged anything new", ev)
	case <-time.After(100 * time.Millisecond):
	}
	require.NoError(t, os.WriteFile(gate, nil, 0o644))
	for _, st := range []*sseStream{s, resumed} {
		var texts []string
		for {
			ev, ok := st.next(t)
			require.True(t, ok, "stream ended without an end event")
			if ev.event == "end" {
				require.Contains(t, ev.data, `"run_status":"COMPLETED"`)
				break
			}
			require.NotEmpty(t, ev.id)
			texts = append(texts, ev.data)
		}
		require.Len(t, texts, 2)
		require.Contains(t, texts[0], `"text":"second"`)
		require.Contains(t, texts[1], `"text":"third"`)
		_, ok = st.next(t)
		require.False(t, ok, "stream must close after end")
	}

	// Resume after the run ended: the later entries, then end.
	s = b.follow("/runs/"+id+"/logs?follow=true", "Last-Event-ID", firstSeq)
	ev, ok = s.next(t)
	require.True(t, ok)
	require.Contains(t, ev.data, `"text":"second"`)
	ev, _ = s.next(t)
	require.Contains(t, ev.data, `"text":"third"`)
	ev, _ = s.next(t)
	require.Equal(t, "end", ev.event)
	_, ok = s.next(t)
	require.False(t, ok)
}

func testCancel(t *testing.T, mk serverFactory) {
	b := mk(t)
	id := b.submit(map[string]any{"flow_name": "slow"})
	b.waitStatus(id, engine.RunRunning)
	a := b.do("POST", "/runs/"+id+"/cancel", nil)
	require.Equal(t, http.StatusAccepted, a.status, "%s", a.body)
	doc := a.json(t)
	require.Equal(t, id, doc["run_id"])
	require.Contains(t, []any{"CANCELLING", "CANCELLED"}, doc["status"])
	require.Equal(t, "CANCELLED", b.wait(id)["status"])
	a = b.do("POST", "/runs/"+id+"/cancel", nil)
	requireError(t, a, http.StatusConflict, api.CodeConflict)
	require.Contains(t, a.json(t)["error"].(map[string]any)["message"], "CANCELLED")
}

func testFlows(t *testing.T, mk serverFactory) {
	b := mk(t)
	a := b.do("GET", "/flows", nil)
	require.Equal(t, http.StatusOK, a.status)
	doc := a.json(t)
	var names []string
	for _, f := range doc["flows"].([]any) {
		fm := f.(map[string]any)
		requireKeys(t, fm, "name", "description", "file", "tasks", "defaults")
		names = append(names, fm["name"].(string))
	}
	require.Equal(t, []string{"hello", "needs", "other", "slow"}, names)
	errs := doc["errors"].([]any)
	require.Len(t, errs, 1)
	e := errs[0].(map[string]any)
	require.True(t, strings.HasSuffix(e["file"].(string), "broken.yaml"))
	require.Equal(t, float64(5), e["line"])
	require.Contains(t, e["message"], "no_such_task")

	a = b.do("GET", "/flows/hello", nil)
	require.Equal(t, http.StatusOK, a.status)
	f := a.json(t)
	requireKeys(t, f, "name", "description", "file", "defaults", "max_parallel", "timeout", "graph", "tasks", "edges", "warnings", "source")
	require.Equal(t, "says hello", f["description"])
	tasks := f["tasks"].([]any)
	require.Len(t, tasks, 2)
	shout := tasks[1].(map[string]any)
	require.Equal(t, "shout", shout["name"])
	require.Equal(t, "shell", shout["use"])
	require.Equal(t, []any{"greet"}, shout["upstream"])
	require.Equal(t, "all", shout["trigger"])
	require.Equal(t, "stop", shout["fail_policy"])
	require.Equal(t, float64(0), shout["retries"])
	require.Nil(t, shout["timeout"])
	require.Equal(t, []any{map[string]any{"from": "greet", "to": "shout"}}, f["edges"])

	requireError(t, b.do("GET", "/flows/nope", nil), http.StatusNotFound, api.CodeNotFound)
	requireError(t, b.do("GET", "/flows/broken", nil), http.StatusNotFound, api.CodeNotFound)
}

func testMeta(t *testing.T, mk serverFactory) {
	b := mk(t)
	a := b.do("GET", "/tasks", nil)
	require.Equal(t, http.StatusOK, a.status)
	var names []string
	for _, x := range a.json(t)["tasks"].([]any) {
		m := x.(map[string]any)
		requireKeys(t, m, "name", "plugin", "summary", "tags", "category", "inputs", "outputs")
		names = append(names, m["name"].(string))
	}
	require.Contains(t, names, "shell")
	require.True(t, sort.StringsAreSorted(names))

	a = b.do("GET", "/plugins", nil)
	require.Equal(t, http.StatusOK, a.status)
	require.Equal(t, b.pluginPath, a.json(t)["path"])

	var ws []any
	require.Eventually(t, func() bool { // the worker announces itself asynchronously
		a = b.do("GET", "/workers", nil)
		require.Equal(t, http.StatusOK, a.status)
		ws = a.json(t)["workers"].([]any)
		return len(ws) == 1
	}, 5*time.Second, 10*time.Millisecond)
	w := ws[0].(map[string]any)
	requireKeys(t, w, "id", "host", "started_at", "last_heartbeat", "running", "concurrency")
	require.Equal(t, b.workerID, w["id"])
	require.Regexp(t, tsRE, w["last_heartbeat"])

	a = b.do("GET", "/webhooks/deliveries", nil)
	require.Equal(t, http.StatusOK, a.status)
	require.Equal(t, map[string]any{"deliveries": []any{}}, a.json(t))

	a = b.do("GET", "/healthz", nil)
	require.Equal(t, http.StatusOK, a.status)
	require.Equal(t, "ok", a.json(t)["status"])
	a = b.do("GET", "/readyz", nil)
	require.Equal(t, http.StatusOK, a.status)
	require.Equal(t, "ready", a.json(t)["status"])

	a = b.do("GET", "/openapi.json", nil)
	require.Equal(t, http.StatusOK, a.status)
	require.Equal(t, "3.1.0", a.json(t)["openapi"])

	if b.metrics {
		a = b.do("GET", "/metrics", nil)
		require.Equal(t, http.StatusOK, a.status)
		require.Contains(t, string(a.body), "# TYPE pyoco_runs_queued gauge")
	} else { // no Metrics handler configured: a JSON 404
		requireError(t, b.do("GET", "/metrics", nil), http.StatusNotFound, api.CodeNotFound)
	}
}

func testIdempotency(t *testing.T, mk serverFactory) {
	b := mk(t)
	body := map[string]any{"flow_name": "other"}
	a1 := b.do("POST", "/runs", body, "Idempotency-Key", "key-1")
	require.Equal(t, http.StatusCreated, a1.status, "%s", a1.body)
	a2 := b.do("POST", "/runs", body, "Idempotency-Key", "key-1")
	require.Equal(t, http.StatusOK, a2.status, "%s", a2.body)
	require.Equal(t, a1.json(t)["run_id"], a2.json(t)["run_id"])
	require.Equal(t, a1.json(t)["trace_id"], a2.json(t)["trace_id"])
	a3 := b.do("POST", "/runs", body, "Idempotency-Key", "key-2")
	require.Equal(t, http.StatusCreated, a3.status)
	require.NotEqual(t, a1.json(t)["run_id"], a3.json(t)["run_id"])
	// A request that failed validation binds nothing.
	requireError(t, b.do("POST", "/runs", map[string]any{"flow_name": "nope"}, "Idempotency-Key", "key-3"), http.StatusNotFound, api.CodeNotFound)
	require.Equal(t, http.StatusCreated, b.do("POST", "/runs", body, "Idempotency-Key", "key-3").status)

	// The same key with another body is 422, not the earlier run; the same
	// body written differently (key order, spacing) is a replay.
	withParams := `{"flow_name": "other", "params": {"a": 1, "b": [2]}, "tags": ["t"]}`
	a4 := b.do("POST", "/runs", withParams, "Idempotency-Key", "key-4")
	require.Equal(t, http.StatusCreated, a4.status, "%s", a4.body)
	a5 := b.do("POST", "/runs", `{"tags":["t"],"params":{"b":[2],"a":1},"flow_name":"other"}`, "Idempotency-Key", "key-4")
	require.Equal(t, http.StatusOK, a5.status, "%s", a5.body)
	require.Equal(t, a4.json(t)["run_id"], a5.json(t)["run_id"])
	for name, other := range map[string]string{
		"params": `{"flow_name": "other", "params": {"a": 2, "b": [2]}, "tags": ["t"]}`,
		"tags":   `{"flow_name": "other", "params": {"a": 1, "b": [2]}}`,
		"flow":   `{"flow_name": "hello", "params": {"who": "x"}, "tags": ["t"]}`,
	} {
		a := b.do("POST", "/runs", other, "Idempotency-Key", "key-4")
		requireError(t, a, http.StatusUnprocessableEntity, api.CodeUnprocessable)
		msg := a.json(t)["error"].(map[string]any)["message"].(string)
		require.Contains(t, msg, "different request", name)
		require.Contains(t, msg, a4.json(t)["run_id"], name)
	}
}

func testTraceParent(t *testing.T, mk serverFactory) {
	b := mk(t)
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	a := b.do("POST", "/runs", map[string]any{"flow_name": "other"}, "traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	require.Equal(t, http.StatusCreated, a.status)
	require.Equal(t, traceID, a.json(t)["trace_id"])
	run := b.wait(a.json(t)["run_id"].(string))
	require.Equal(t, traceID, run["trace_id"])
	// A malformed traceparent is ignored: a new trace.
	a = b.do("POST", "/runs", map[string]any{"flow_name": "other"}, "traceparent", "garbage")
	require.Equal(t, http.StatusCreated, a.status)
	require.NotEqual(t, traceID, a.json(t)["trace_id"])
}

func testFlowYAMLError(t *testing.T, mk serverFactory) {
	b := mk(t)
	a := b.do("POST", "/runs", map[string]any{"flow_yaml": "version: 1\nflow:\n  name: x\ntasks:\n  a: {use: log, inputs: {message: hi}}\n  b: {use: nope, bogus: 1, retries: -1}\n"})
	requireError(t, a, http.StatusUnprocessableEntity, api.CodeUnprocessable)
	details := a.json(t)["error"].(map[string]any)["details"].([]any)
	require.GreaterOrEqual(t, len(details), 2)
	for _, d := range details {
		dm := d.(map[string]any)
		require.Equal(t, "flow_yaml", dm["file"])
		require.Equal(t, float64(6), dm["line"])
		require.Greater(t, dm["column"], float64(0))
	}
	// Missing required param: 422 at the task that references it.
	a = b.do("POST", "/runs", map[string]any{"flow_name": "needs"})
	requireError(t, a, http.StatusUnprocessableEntity, api.CodeUnprocessable)
	d := a.json(t)["error"].(map[string]any)["details"].([]any)[0].(map[string]any)
	require.Contains(t, d["message"], `param "must"`)
	require.Equal(t, float64(5), d["line"])
	require.Equal(t, http.StatusCreated, b.do("POST", "/runs", map[string]any{"flow_name": "needs", "params": map[string]any{"must": 1}}).status)

	// An unknown use: 422 where this server is the one that executes runs;
	// accepted where workers elsewhere may have it, and the run fails on
	// the worker that takes it, naming the use.
	a = b.do("POST", "/runs", map[string]any{"flow_yaml": "version: 1\nflow: {name: u}\ntasks:\n  a: {use: no_such_task}\n"})
	if !b.openUse {
		requireError(t, a, http.StatusUnprocessableEntity, api.CodeUnprocessable)
		require.Contains(t, string(a.body), `unknown use \"no_such_task\"`)
		return
	}
	require.Equal(t, http.StatusCreated, a.status, "%s", a.body)
	run := b.wait(a.json(t)["run_id"].(string))
	require.Equal(t, "FAILED", run["status"])
	require.Contains(t, run["error"], `unknown use "no_such_task"`)
}

// requireError checks a's status and the one JSON error shape.
func requireError(t *testing.T, a answer, status int, code string) {
	t.Helper()
	require.Equal(t, status, a.status, "body: %s", a.body)
	require.Equal(t, "application/json", a.header.Get("Content-Type"))
	m := a.json(t)
	require.Len(t, m, 1, "body: %s", a.body)
	e, ok := m["error"].(map[string]any)
	require.True(t, ok, "body: %s", a.body)
	require.Equal(t, code, e["code"])
	require.NotEmpty(t, e["message"])
}

func testAuth(t *testing.T, mk serverFactory) {
	b := mk(t, func(c *api.Config) { c.Token = "s3cret" })
	require.Equal(t, http.StatusOK, b.do("GET", "/runs", nil).status)
	for _, auth := range []string{"Bearer wrong", "Bearer s3cre", "Bearer s3cret2", "Basic s3cret", "s3cret"} {
		a := b.do("GET", "/runs", nil, "Authorization", auth)
		requireError(t, a, http.StatusUnauthorized, api.CodeUnauthorized)
		require.Contains(t, a.header.Get("WWW-Authenticate"), "Bearer")
	}
	for _, p := range []string{"/runs", "/runs/x", "/flows", "/tasks", "/plugins", "/workers", "/webhooks/deliveries", "/openapi.json", "/nope"} {
		requireError(t, b.do("GET", p, nil, "Authorization", ""), http.StatusUnauthorized, api.CodeUnauthorized)
	}
	requireError(t, b.do("POST", "/runs", map[string]any{"flow_name": "other"}, "Authorization", ""), http.StatusUnauthorized, api.CodeUnauthorized)
	for _, p := range []string{"/healthz", "/readyz"} {
		require.Equal(t, http.StatusOK, b.do("GET", p, nil, "Authorization", "").status, p)
	}
	// /metrics is exempt from the token (a JSON 404 without a metrics handler).
	if b.metrics {
		require.Equal(t, http.StatusOK, b.do("GET", "/metrics", nil, "Authorization", "").status)
	} else {
		requireError(t, b.do("GET", "/metrics", nil, "Authorization", ""), http.StatusNotFound, api.CodeNotFound)
	}
}

func testBadInput(t *testing.T, mk serverFactory) {
	b := mk(t)
	finished := b.submit(map[string]any{"flow_name": "other"})
	b.wait(finished)
	big := `{"flow_name": "other", "params": {"x": "` + strings.Repeat("a", 1<<20) + `"}}`
	type tc struct {
		method, path string
		body         any
		header       []string
		status       int
		code         string
		param        string
	}
	cases := map[string]tc{
		"status bogus":             {"GET", "/runs?status=bogus", nil, nil, 400, "bad_request", "status"},
		"status empty":             {"GET", "/runs?status=", nil, nil, 400, "bad_request", "status"},
		"status list bad":          {"GET", "/runs?status=FAILED,nope", nil, nil, 400, "bad_request", "status"},
		"limit 0":                  {"GET", "/runs?limit=0", nil, nil, 400, "bad_request", "limit"},
		"limit 501":                {"GET", "/runs?limit=501", nil, nil, 400, "bad_request", "limit"},
		"limit abc":                {"GET", "/runs?limit=abc", nil, nil, 400, "bad_request", "limit"},
		"limit -1":                 {"GET", "/runs?limit=-1", nil, nil, 400, "bad_request", "limit"},
		"limit twice":              {"GET", "/runs?limit=1&limit=2", nil, nil, 400, "bad_request", "limit"},
		"cursor garbage":           {"GET", "/runs?cursor=garbage", nil, nil, 400, "bad_request", "cursor"},
		"cursor empty":             {"GET", "/runs?cursor=", nil, nil, 400, "bad_request", "cursor"},
		"cursor base64ish":         {"GET", "/runs?cursor=eyJhIjoxfQ", nil, nil, 400, "bad_request", "cursor"},
		"flow bad name":            {"GET", "/runs?flow=a%20b", nil, nil, 400, "bad_request", "flow"},
		"unknown query param":      {"GET", "/runs?stauts=FAILED", nil, nil, 400, "bad_request", "stauts"},
		"unknown run":              {"GET", "/runs/nope", nil, nil, 404, "not_found", ""},
		"unknown run logs":         {"GET", "/runs/nope/logs", nil, nil, 404, "not_found", ""},
		"unknown run cancel":       {"POST", "/runs/nope/cancel", nil, nil, 404, "not_found", ""},
		"cancel finished":          {"POST", "/runs/" + finished + "/cancel", nil, nil, 409, "conflict", ""},
		"unknown flow":             {"POST", "/runs", `{"flow_name": "nope"}`, nil, 404, "not_found", ""},
		"bad JSON":                 {"POST", "/runs", `{"flow_name": `, nil, 400, "bad_request", ""},
		"not JSON":                 {"POST", "/runs", `flow_name=other`, nil, 400, "bad_request", ""},
		"empty body":               {"POST", "/runs", ``, nil, 400, "bad_request", ""},
		"array body":               {"POST", "/runs", `[]`, nil, 400, "bad_request", ""},
		"null body":                {"POST", "/runs", `null`, nil, 400, "bad_request", ""},
		"two objects":              {"POST", "/runs", `{"flow_name": "other"}{}`, nil, 400, "bad_request", ""},
		"unknown field":            {"POST", "/runs", `{"flow_name": "other", "flow": "x"}`, nil, 400, "bad_request", ""},
		"both flow_name and yaml":  {"POST", "/runs", `{"flow_name": "other", "flow_yaml": "version: 1"}`, nil, 400, "bad_request", ""},
		"neither":                  {"POST", "/runs", `{"params": {}}`, nil, 400, "bad_request", ""},
		"empty flow_name":          {"POST", "/runs", `{"flow_name": ""}`, nil, 400, "bad_request", ""},
		"flow_name not string":     {"POST", "/runs", `{"flow_name": 3}`, nil, 400, "bad_request", ""},
		"params array":             {"POST", "/runs", `{"flow_name": "other", "params": [1]}`, nil, 400, "bad_request", ""},
		"params string":            {"POST", "/runs", `{"flow_name": "other", "params": "x"}`, nil, 400, "bad_request", ""},
		"params number":            {"POST", "/runs", `{"flow_name": "other", "params": 1}`, nil, 400, "bad_request", ""},
		"tags not strings":         {"POST", "/runs", `{"flow_name": "other", "tags": [1]}`, nil, 400, "bad_request", ""},
		"empty tag":                {"POST", "/runs", `{"flow_name": "other", "tags": [""]}`, nil, 400, "bad_request", ""},
		"invalid flow_yaml":        {"POST", "/runs", `{"flow_yaml": "version: 2\nflow: {name: x}\ntasks: {}\n"}`, nil, 422, "unprocessable", ""},
		"flow_yaml not yaml":       {"POST", "/runs", `{"flow_yaml": "{{{"}`, nil, 422, "unprocessable", ""},
		"flow_yaml cycle":          {"POST", "/runs", `{"flow_yaml": "version: 1\nflow: {name: c}\ntasks:\n  a: {use: noop, depends_on: [b]}\n  b: {use: noop, depends_on: [a]}\n"}`, nil, 422, "unprocessable", ""},
		"missing param":            {"POST", "/runs", `{"flow_name": "needs"}`, nil, 422, "unprocessable", ""},
		"oversized body":           {"POST", "/runs", big, nil, 413, "payload_too_large", ""},
		"bad idempotency key":      {"POST", "/runs", `{"flow_name": "other"}`, []string{"Idempotency-Key", "a\tb"}, 400, "bad_request", "Idempotency-Key"},
		"tail 0":                   {"GET", "/runs/" + finished + "/logs?tail=0", nil, nil, 400, "bad_request", "tail"},
		"tail 10001":               {"GET", "/runs/" + finished + "/logs?tail=10001", nil, nil, 400, "bad_request", "tail"},
		"tail x":                   {"GET", "/runs/" + finished + "/logs?tail=x", nil, nil, 400, "bad_request", "tail"},
		"after -1":                 {"GET", "/runs/" + finished + "/logs?after=-1", nil, nil, 400, "bad_request", "after"},
		"after huge":               {"GET", "/runs/" + finished + "/logs?after=99999999999999999999", nil, nil, 400, "bad_request", "after"},
		"follow maybe":             {"GET", "/runs/" + finished + "/logs?follow=maybe", nil, nil, 400, "bad_request", "follow"},
		"task empty":               {"GET", "/runs/" + finished + "/logs?task=", nil, nil, 400, "bad_request", "task"},
		"logs unknown param":       {"GET", "/runs/" + finished + "/logs?lines=3", nil, nil, 400, "bad_request", "lines"},
		"bad Last-Event-ID":        {"GET", "/runs/" + finished + "/logs?follow=true", nil, []string{"Last-Event-ID", "x"}, 400, "bad_request", "Last-Event-ID"},
		"unknown path":             {"GET", "/nope", nil, nil, 404, "not_found", ""},
		"unknown flow get":         {"GET", "/flows/nope", nil, nil, 404, "not_found", ""},
		"method not allowed":       {"DELETE", "/runs", nil, nil, 405, "method_not_allowed", ""},
		"GET cancel":               {"GET", "/runs/" + finished + "/cancel", nil, nil, 405, "method_not_allowed", ""},
		"run id too long":          {"GET", "/runs/" + strings.Repeat("x", 300), nil, nil, 404, "not_found", ""},
		"run get with query":       {"GET", "/runs/" + finished + "?x=1", nil, nil, 400, "bad_request", "x"},
		"limit fraction":           {"GET", "/runs?limit=1.5", nil, nil, 400, "bad_request", "limit"},
		"limit overflow":           {"GET", "/runs?limit=99999999999999999999", nil, nil, 400, "bad_request", "limit"},
		"limit plus sign space":    {"GET", "/runs?limit=%2050", nil, nil, 400, "bad_request", "limit"},
		"status quote":             {"GET", "/runs?status=FAILED%27", nil, nil, 400, "bad_request", "status"},
		"status trailing comma":    {"GET", "/runs?status=FAILED,", nil, nil, 400, "bad_request", "status"},
		"tag empty":                {"GET", "/runs?tag=", nil, nil, 400, "bad_request", "tag"},
		"tag twice":                {"GET", "/runs?tag=a&tag=b", nil, nil, 400, "bad_request", "tag"},
		"tag too long":             {"GET", "/runs?tag=" + strings.Repeat("t", 257), nil, nil, 400, "bad_request", "tag"},
		"flow empty":               {"GET", "/runs?flow=", nil, nil, 400, "bad_request", "flow"},
		"flow twice":               {"GET", "/runs?flow=a&flow=b", nil, nil, 400, "bad_request", "flow"},
		"cursor too long":          {"GET", "/runs?cursor=" + strings.Repeat("A", 2000), nil, nil, 400, "bad_request", "cursor"},
		"cursor twice":             {"GET", "/runs?cursor=a&cursor=b", nil, nil, 400, "bad_request", "cursor"},
		"tail twice":               {"GET", "/runs/" + finished + "/logs?tail=1&tail=2", nil, nil, 400, "bad_request", "tail"},
		"tail fraction":            {"GET", "/runs/" + finished + "/logs?tail=1.5", nil, nil, 400, "bad_request", "tail"},
		"after x":                  {"GET", "/runs/" + finished + "/logs?after=x", nil, nil, 400, "bad_request", "after"},
		"follow twice":             {"GET", "/runs/" + finished + "/logs?follow=true&follow=false", nil, nil, 400, "bad_request", "follow"},
		"follow empty":             {"GET", "/runs/" + finished + "/logs?follow=", nil, nil, 400, "bad_request", "follow"},
		"task too long":            {"GET", "/runs/" + finished + "/logs?task=" + strings.Repeat("k", 257), nil, nil, 400, "bad_request", "task"},
		"negative Last-Event-ID":   {"GET", "/runs/" + finished + "/logs?follow=true", nil, []string{"Last-Event-ID", "-3"}, 400, "bad_request", "Last-Event-ID"},
		"unknown run follow":       {"GET", "/runs/nope/logs?follow=true", nil, nil, 404, "not_found", ""},
		"unknown flow_name wild":   {"POST", "/runs", `{"flow_name": "../../etc/passwd"}`, nil, 404, "not_found", ""},
		"flow_yaml empty":          {"POST", "/runs", `{"flow_yaml": "  "}`, nil, 400, "bad_request", ""},
		"flow_yaml not string":     {"POST", "/runs", `{"flow_yaml": 1}`, nil, 400, "bad_request", ""},
		"flow_yaml unknown task":   {"POST", "/runs", `{"flow_yaml": "version: 1\nflow: {name: u}\ntasks:\n  a: {use: noop, depends_on: [no_such_task]}\n"}`, nil, 422, "unprocessable", ""},
		"flow_yaml unknown field":  {"POST", "/runs", `{"flow_yaml": "version: 1\nflow: {name: u}\ntasks:\n  a: {use: noop, bogus: 1}\n"}`, nil, 422, "unprocessable", ""},
		"tags not array":           {"POST", "/runs", `{"flow_name": "other", "tags": "a"}`, nil, 400, "bad_request", ""},
		"too many tags":            {"POST", "/runs", `{"flow_name": "other", "tags": [` + strings.Repeat(`"t",`, 64) + `"t"]}`, nil, 400, "bad_request", ""},
		"tag too long in body":     {"POST", "/runs", `{"flow_name": "other", "tags": ["` + strings.Repeat("t", 257) + `"]}`, nil, 400, "bad_request", ""},
		"params bad JSON inside":   {"POST", "/runs", `{"flow_name": "other", "params": {"a": }}`, nil, 400, "bad_request", ""},
		"idempotency key too long": {"POST", "/runs", `{"flow_name": "other"}`, []string{"Idempotency-Key", strings.Repeat("k", 256)}, 400, "bad_request", "Idempotency-Key"},
		"PUT run":                  {"PUT", "/runs/" + finished, `{}`, nil, 405, "method_not_allowed", ""},
		"POST flows":               {"POST", "/flows", `{}`, nil, 405, "method_not_allowed", ""},
		"DELETE workers":           {"DELETE", "/workers", nil, nil, 405, "method_not_allowed", ""},
		"logs limit 0":             {"GET", "/runs/" + finished + "/logs?limit=0", nil, nil, 400, "bad_request", "limit"},
		"logs limit 10001":         {"GET", "/runs/" + finished + "/logs?limit=10001", nil, nil, 400, "bad_request", "limit"},
		"follow limit x":           {"GET", "/runs/" + finished + "/logs?follow=true&limit=x", nil, nil, 400, "bad_request", "limit"},
		"cancel unknown param":     {"POST", "/runs/" + finished + "/cancel?force=1", nil, nil, 400, "bad_request", "force"},
		"cancel long id":           {"POST", "/runs/" + strings.Repeat("z", 120) + "/cancel", nil, nil, 404, "not_found", ""},
	}
	require.GreaterOrEqual(t, len(cases), 80)
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			a := b.do(c.method, c.path, c.body, c.header...)
			requireError(t, a, c.status, c.code)
			if c.param != "" {
				e := a.json(t)["error"].(map[string]any)
				require.Equal(t, c.param, e["param"])
				require.Contains(t, e["message"], c.param)
			}
		})
	}
}
