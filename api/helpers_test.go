package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pyoco/pyoco/api"
	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/builtin"
	"github.com/pyoco/pyoco/internal/redistest"
	"github.com/pyoco/pyoco/worker"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(mainRunner{redistest.Runner(m)})
}

// mainRunner runs the functions of addCleanup after the tests (and the
// Redis servers) are done, before goleak checks and exits.
type mainRunner struct{ r interface{ Run() int } }

func (m mainRunner) Run() int {
	defer func() {
		cleanups.mu.Lock()
		defer cleanups.mu.Unlock()
		for _, f := range cleanups.fs {
			f()
		}
	}()
	return m.r.Run()
}

var cleanups struct {
	mu sync.Mutex
	fs []func()
}

// addCleanup runs f when the test binary's tests are done.
func addCleanup(f func()) {
	cleanups.mu.Lock()
	defer cleanups.mu.Unlock()
	cleanups.fs = append(cleanups.fs, f)
}

// Test flows written into each bundle's flows directory.
var flowFiles = map[string]string{
	"hello.yaml": `version: 1
flow:
  name: hello
  description: says hello
  defaults: {who: world}
tasks:
  greet: {use: log, inputs: {message: "hello ${ctx.params.who}"}}
  shout: {use: shell, inputs: {cmd: "echo LOUD; echo quiet >&2"}, depends_on: [greet]}
`,
	"other.yaml": `version: 1
flow:
  name: other
tasks:
  only: {use: noop}
`,
	"slow.yaml": `version: 1
flow:
  name: slow
tasks:
  nap: {use: sleep, inputs: {duration: 30s}}
`,
	"needs.yaml": `version: 1
flow:
  name: needs
tasks:
  use_it: {use: log, inputs: {message: "${ctx.params.must}"}}
`,
	"broken.yaml": `version: 1
flow:
  name: broken
tasks:
  a: {use: noop, depends_on: [no_such_task]}
`,
}

// storeFactory makes a fresh, empty store for one test.
type storeFactory func(t *testing.T) engine.Store

// serverFactory serves the API with the test flows and one worker for one
// test: in this process ([inProcess]) or as `pyoco server` and `pyoco
// worker` processes (process_test.go). edit may change the Config; a
// process server honours Token only.
type serverFactory func(t *testing.T, edit ...func(*api.Config)) *bundle

// inProcess serves api.New over the stores of newStore (see [setup]).
func inProcess(newStore storeFactory) serverFactory {
	return func(t *testing.T, edit ...func(*api.Config)) *bundle { return setup(t, newStore, edit...) }
}

type bundle struct {
	t      *testing.T
	url    string
	dir    string
	client *http.Client
	token  string
	// srv is the in-process server (nil for a process server).
	srv *api.Server
	// workerID is the id of the one worker that executes the runs.
	workerID string
	// metrics is true when GET /metrics is served (else a JSON 404).
	metrics bool
	// pluginPath is the plug-in path GET /plugins reports.
	pluginPath []any
	// openUse is true when the server accepts a use it does not know
	// (engine.AllowUnknownUse: `pyoco server` on Redis), leaving the check
	// to the worker that executes the run.
	openUse bool
}

// setup serves api.New over a store from newStore, with the test flows and
// one in-process worker. edit may change the Config.
func setup(t *testing.T, newStore storeFactory, edit ...func(*api.Config)) *bundle {
	t.Helper()
	store := newStore(t)
	reg := engine.NewRegistry()
	require.NoError(t, builtin.Register(reg))
	eng, err := engine.New(store, reg, &engine.Config{WorkerID: "test-worker", CancelPollInterval: 50 * time.Millisecond})
	require.NoError(t, err)
	dir := t.TempDir()
	flowDir := writeFlows(t, dir)
	flows, err := api.LoadFlowDir(flowDir, reg)
	require.NoError(t, err)
	cfg := &api.Config{Flows: flows, LogPollInterval: 20 * time.Millisecond, HeartbeatInterval: 100 * time.Millisecond,
		Plugins: map[string]any{"path": []string{"/nowhere"}, "plugins": []any{}}}
	for _, e := range edit {
		e(cfg)
	}
	srv, err := api.New(eng, cfg)
	require.NoError(t, err)
	if q, ok := store.(engine.Queue); ok {
		w, err := worker.New(eng, q, &worker.Config{ID: eng.WorkerID(), Concurrency: 4, Lease: 5 * time.Second})
		require.NoError(t, err)
		require.NoError(t, w.Start(context.Background()))
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = w.Stop(ctx)
		})
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
		_ = srv.Close()
	})
	client := ts.Client()
	t.Cleanup(client.CloseIdleConnections)
	return &bundle{t: t, url: ts.URL, dir: dir, client: client, token: cfg.Token, srv: srv, workerID: eng.WorkerID(),
		pluginPath: []any{"/nowhere"}}
}

// writeFlows writes the test flows into dir/flows and returns that path.
func writeFlows(t *testing.T, dir string) string {
	t.Helper()
	flowDir := filepath.Join(dir, "flows")
	require.NoError(t, os.Mkdir(flowDir, 0o755))
	for name, src := range flowFiles {
		require.NoError(t, os.WriteFile(filepath.Join(flowDir, name), []byte(src), 0o644))
	}
	return flowDir
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(a.body, &m), "body: %s", a.body)
	return m
}

// do sends a request; body is sent as is when it is a string or []byte,
// as JSON otherwise. Header pairs follow.
func (b *bundle) do(method, path string, body any, header ...string) answer {
	b.t.Helper()
	var rd io.Reader
	switch v := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(v)
	case []byte:
		rd = bytes.NewReader(v)
	default:
		j, err := json.Marshal(v)
		require.NoError(b.t, err)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, b.url+path, rd)
	require.NoError(b.t, err)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if b.token != "" {
		req.Header.Set("Authorization", "Bearer "+b.token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := b.client.Do(req)
	require.NoError(b.t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(b.t, err)
	return answer{status: resp.StatusCode, header: resp.Header, body: data}
}

// submit posts a run and returns its id.
func (b *bundle) submit(body any, header ...string) string {
	b.t.Helper()
	a := b.do("POST", "/runs", body, header...)
	require.Equal(b.t, http.StatusCreated, a.status, "body: %s", a.body)
	return a.json(b.t)["run_id"].(string)
}

// wait polls GET /runs/{id} until the run is terminal and returns it.
func (b *bundle) wait(id string) map[string]any {
	b.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		a := b.do("GET", "/runs/"+id, nil)
		require.Equal(b.t, http.StatusOK, a.status, "body: %s", a.body)
		run := a.json(b.t)
		if engine.RunStatus(run["status"].(string)).Terminal() {
			return run
		}
		require.True(b.t, time.Now().Before(deadline), "run %s still %s", id, run["status"])
		time.Sleep(20 * time.Millisecond)
	}
}

// waitStatus polls until the run has status st.
func (b *bundle) waitStatus(id string, st engine.RunStatus) {
	b.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		a := b.do("GET", "/runs/"+id, nil)
		if a.json(b.t)["status"] == string(st) {
			return
		}
		require.True(b.t, time.Now().Before(deadline), "run %s: want %s, is %s", id, st, a.json(b.t)["status"])
		time.Sleep(20 * time.Millisecond)
	}
}

// sseEvent is one Server-Sent Event.
type sseEvent struct {
	id, event, data string
}

// sseStream reads events from a followed log stream.
type sseStream struct {
	resp   *http.Response
	events chan sseEvent
}

func (b *bundle) follow(path string, header ...string) *sseStream {
	b.t.Helper()
	req, err := http.NewRequest("GET", b.url+path, nil)
	require.NoError(b.t, err)
	if b.token != "" {
		req.Header.Set("Authorization", "Bearer "+b.token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := b.client.Do(req)
	require.NoError(b.t, err)
	require.Equal(b.t, http.StatusOK, resp.StatusCode)
	require.Equal(b.t, "text/event-stream", resp.Header.Get("Content-Type"))
	s := &sseStream{resp: resp, events: make(chan sseEvent, 100)}
	go func() {
		defer close(s.events)
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.data != "" || ev.event != "" {
					s.events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[6:]
			}
		}
	}()
	b.t.Cleanup(func() { resp.Body.Close() })
	return s
}

// next returns the next event, failing after a timeout; ok is false when
// the stream ended.
func (s *sseStream) next(t *testing.T) (sseEvent, bool) {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		return ev, ok
	case <-time.After(15 * time.Second):
		t.Fatal("no SSE event within 15s")
		return sseEvent{}, false
	}
}
