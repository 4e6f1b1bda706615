package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/pyoco/pyoco/api"
	"github.com/pyoco/pyoco/api/apidoc"
	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/builtin"
	"github.com/pyoco/pyoco/engine/memstore"
	"github.com/pyoco/pyoco/worker"
)

const okFlow = `version: 1
flow:
  name: ok_flow
tasks:
  hi: {use: shell, inputs: {cmd: "echo hello-from-task"}}
  bye: {use: log, inputs: {message: bye}, depends_on: [hi]}
`

const failFlow = `version: 1
flow:
  name: fail_flow
tasks:
  boom: {use: fail, inputs: {message: kaboom}}
`

// apiServer serves the API over a memstore with one in-process worker and
// the flows ok_flow and fail_flow. It returns the URL.
func apiServer(t *testing.T, token string) string {
	t.Helper()
	store := memstore.New()
	reg := engine.NewRegistry()
	require.NoError(t, builtin.Register(reg))
	// A real tracer provider: attempts and log entries get span ids, as
	// with `pyoco server` (run --server matches them up).
	eng, err := engine.New(store, reg, &engine.Config{WorkerID: "w1", CancelPollInterval: 50 * time.Millisecond,
		TracerProvider: sdktrace.NewTracerProvider()})
	require.NoError(t, err)
	ok, err := engine.LoadFlow("ok.yaml", []byte(okFlow), reg)
	require.NoError(t, err)
	bad, err := engine.LoadFlow("fail.yaml", []byte(failFlow), reg)
	require.NoError(t, err)
	flows, err := api.NewFlows(ok, bad)
	require.NoError(t, err)
	srv, err := api.New(eng, &api.Config{Flows: flows, Token: token, LogPollInterval: 20 * time.Millisecond})
	require.NoError(t, err)
	w, err := worker.New(eng, store, &worker.Config{ID: "w1", Concurrency: 4})
	require.NoError(t, err)
	require.NoError(t, w.Start(context.Background()))
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = w.Stop(ctx)
		_ = srv.Close()
	})
	return ts.URL
}

// cli runs the command line against server and returns exit code, stdout, stderr.
func cliAt(t *testing.T, vars map[string]string, args ...string) (int, string, string) {
	t.Helper()
	e, stdout, stderr := pluginTestEnv(vars)
	code := runCLI(e, args...)
	return code, stdout.String(), stderr.String()
}

func TestClientCommands(t *testing.T) {
	t.Parallel()
	url := apiServer(t, "")
	vars := map[string]string{"PYOCO_SERVER": url, "PYOCO_PLUGIN_PATH": t.TempDir()}
	dir := t.TempDir()
	failFile := filepath.Join(dir, "fail.yaml")
	require.NoError(t, os.WriteFile(failFile, []byte(failFlow), 0o644))

	// submit by name, without and with --wait.
	code, out, errOut := cliAt(t, vars, "submit", "ok_flow", "--tag", "x")
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, `^run \S+ PENDING  trace_id [0-9a-f]{32}\n$`, out)
	firstID := strings.Fields(out)[1]
	code, out, errOut = cliAt(t, vars, "submit", "ok_flow", "--wait", "--param", "n=1")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "COMPLETED")
	// a file is sent as flow_yaml; a failed run exits 1.
	code, out, errOut = cliAt(t, vars, "submit", failFile, "--wait", "--json")
	require.Equal(t, 1, code, errOut)
	var run apidoc.RunDoc
	require.NoError(t, json.Unmarshal([]byte(out), &run))
	require.Equal(t, engine.RunFailed, run.Status)
	failedID := run.RunID

	// runs list: table and JSON, filters.
	code, out, errOut = cliAt(t, vars, "runs", "list")
	require.Equal(t, 0, code, errOut)
	require.True(t, strings.HasPrefix(out, "RUN ID"), out)
	require.Contains(t, out, failedID)
	code, out, _ = cliAt(t, vars, "runs", "list", "--status", "failed", "--json")
	require.Equal(t, 0, code)
	var page struct {
		Runs []apidoc.RunSummaryDoc `json:"runs"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &page))
	require.Len(t, page.Runs, 1)
	require.Equal(t, failedID, page.Runs[0].RunID)
	code, out, _ = cliAt(t, vars, "runs", "list", "--limit", "1")
	require.Equal(t, 0, code)
	require.Contains(t, out, "more: pyoco runs list --cursor ")

	// runs show.
	code, out, _ = cliAt(t, vars, "runs", "show", failedID)
	require.Equal(t, 0, code)
	require.Contains(t, out, "FAILED")
	require.Contains(t, out, "kaboom")
	require.Contains(t, out, "TASK")
	code, out, _ = cliAt(t, vars, "runs", "show", failedID, "--json")
	require.Equal(t, 0, code)
	require.NoError(t, json.Unmarshal([]byte(out), &run))
	require.Equal(t, failedID, run.RunID)

	// runs logs, plain and followed.
	waitDone(t, vars, firstID)
	code, out, _ = cliAt(t, vars, "runs", "logs", firstID)
	require.Equal(t, 0, code)
	require.Contains(t, out, "hi hello-from-task")
	code, out, _ = cliAt(t, vars, "runs", "logs", firstID, "--task", "bye", "--tail", "1")
	require.Equal(t, 0, code)
	require.Equal(t, 1, strings.Count(out, "\n"), out)
	code, out, _ = cliAt(t, vars, "runs", "logs", firstID, "--follow")
	require.Equal(t, 0, code)
	require.Contains(t, out, "hello-from-task")

	// errors: one line, non-zero exit.
	code, _, errOut = cliAt(t, vars, "runs", "cancel", failedID)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "cannot be cancelled")
	require.Equal(t, 1, strings.Count(errOut, "\n"), errOut)
	code, _, errOut = cliAt(t, vars, "runs", "show", "nope")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, `run "nope" not found`)
	code, _, errOut = cliAt(t, vars, "submit", "no_flow")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "not found")
	code, _, errOut = cliAt(t, vars, "runs", "list", "--status", "bogus")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "status")
}

func waitDone(t *testing.T, vars map[string]string, id string) {
	t.Helper()
	require.Eventually(t, func() bool {
		_, out, _ := cliAt(t, vars, "runs", "show", id, "--json")
		var d apidoc.RunDoc
		return json.Unmarshal([]byte(out), &d) == nil && d.Status.Terminal()
	}, 10*time.Second, 20*time.Millisecond)
}

func TestClientErrors(t *testing.T) {
	t.Parallel()
	// Nothing listens on a closed port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	code, _, errOut := cliAt(t, nil, "runs", "list", "--server", "http://"+addr)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "cannot reach server at http://"+addr)
	require.Equal(t, 1, strings.Count(errOut, "\n"), errOut)

	url := apiServer(t, "tok")
	code, _, errOut = cliAt(t, map[string]string{"PYOCO_SERVER": url}, "runs", "list")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "unauthorized")
	require.Contains(t, errOut, "PYOCO_API_TOKEN")
	code, _, errOut = cliAt(t, map[string]string{"PYOCO_SERVER": url, "PYOCO_API_TOKEN": "tok"}, "runs", "list")
	require.Equal(t, 0, code, errOut)
}

func TestRunWithServer(t *testing.T) {
	t.Parallel()
	url := apiServer(t, "")
	dir := t.TempDir()
	file := filepath.Join(dir, "ok.yaml")
	require.NoError(t, os.WriteFile(file, []byte(okFlow), 0o644))
	vars := map[string]string{"PYOCO_PROGRESS": "plain"}
	code, out, errOut := cliAt(t, vars, "run", file, "--server", url)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "run started flow=ok_flow")
	require.Contains(t, out, "task SUCCEEDED task=hi")
	require.Contains(t, out, "[hi] hello-from-task\n")
	require.Contains(t, out, "run COMPLETED flow=ok_flow")

	code, out, errOut = cliAt(t, vars, "run", "fail_flow", "--server", url, "--json")
	require.Equal(t, 1, code)
	var run apidoc.RunDoc
	require.NoError(t, json.Unmarshal([]byte(out), &run))
	require.Equal(t, engine.RunFailed, run.Status)
	require.Contains(t, errOut, "run FAILED")
}

// TestTasksListMatchesAPI: GET /tasks is the same document as
// `pyoco tasks list --json`.
func TestTasksListMatchesAPI(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"PYOCO_PLUGIN_PATH": t.TempDir()}
	code, out, _ := cliAt(t, vars, "tasks", "list", "--json")
	require.Equal(t, 0, code)
	e, _, _ := pluginTestEnv(vars)
	reg, err := newRegistry(context.Background(), e, false)
	require.NoError(t, err)
	docs := make([]api.TaskDoc, 0)
	for _, d := range reg.List() {
		docs = append(docs, api.NewTaskDoc(d))
	}
	want, err := json.Marshal(map[string]any{"tasks": docs})
	require.NoError(t, err)
	require.JSONEq(t, string(want), out)
}

// TestServerCommand starts `pyoco server` on the memory store, submits a
// run through the API and stops it with a cancelled context (SIGTERM).
func TestServerCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	flows := filepath.Join(dir, "flows")
	require.NoError(t, os.Mkdir(flows, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(flows, "ok.yaml"), []byte(okFlow), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(flows, "bad.yml"), []byte("version: 9\n"), 0o644))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	e, stdout, stderr := pluginTestEnv(map[string]string{"PYOCO_PLUGIN_PATH": dir, "PYOCO_API_TOKEN": "tk", "OTEL_TRACES_EXPORTER": "none"})
	var mu syncBuffer
	e.stderr = &mu
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() {
		root := newRoot(e)
		root.SetArgs([]string{"server", "--addr", addr, "--flows", flows, "--workers", "2"})
		root.SetOut(stdout)
		root.SetErr(stderr)
		if err := root.ExecuteContext(ctx); err != nil {
			fmt.Fprintln(&mu, "ERR", err)
			done <- 1
			return
		}
		done <- 0
	}()
	base := "http://" + addr
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 10*time.Second, 20*time.Millisecond, "server did not come up: %s", mu.String())

	vars := map[string]string{"PYOCO_SERVER": base, "PYOCO_API_TOKEN": "tk"}
	code, out, errOut := cliAt(t, vars, "submit", "ok_flow", "--wait")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "COMPLETED")
	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode, "/metrics needs no token")
	resp, err = http.Get(base + "/runs")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 401, resp.StatusCode)

	cancel()
	select {
	case code := <-done:
		require.Equal(t, 0, code, mu.String())
	case <-time.After(15 * time.Second):
		t.Fatal("server did not stop")
	}
	logs := mu.String()
	first, _, _ := strings.Cut(logs, "\n")
	require.Contains(t, first, "embedded in-memory store")
	require.Contains(t, logs, "bad.yml")
	require.Contains(t, logs, "server stopped")
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
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

// TestSubmitIdempotencyKey: `pyoco submit --idempotency-key` sends the
// header: the same key and request give the same run (marked as such), the
// same key with other params is refused with the server's reason.
func TestSubmitIdempotencyKey(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"PYOCO_SERVER": apiServer(t, "")}
	code, out1, errOut := cliAt(t, vars, "submit", "ok_flow", "--idempotency-key", "k-1", "--json")
	require.Equal(t, 0, code, errOut)
	var first submitAnswer
	require.NoError(t, json.Unmarshal([]byte(out1), &first))
	require.NotEmpty(t, first.RunID)

	code, out2, errOut := cliAt(t, vars, "submit", "ok_flow", "--idempotency-key", "k-1")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out2, "run "+first.RunID+" ")
	require.Contains(t, out2, "(existing run of this key)")

	code, out3, _ := cliAt(t, vars, "submit", "ok_flow", "--idempotency-key", "k-2")
	require.Equal(t, 0, code)
	require.NotContains(t, out3, first.RunID)
	require.NotContains(t, out3, "existing run")

	code, _, errOut = cliAt(t, vars, "submit", "ok_flow", "--idempotency-key", "k-1", "--param", "x=1")
	require.Equal(t, ExitFailed, code)
	require.Contains(t, errOut, `Idempotency-Key "k-1" was used within 24h for a different request (run `+first.RunID+`)`)

	code, _, errOut = cliAt(t, vars, "submit", "ok_flow", "--idempotency-key", "bad\tkey")
	require.NotEqual(t, 0, code)
	require.Contains(t, errOut, "Idempotency-Key")
}
