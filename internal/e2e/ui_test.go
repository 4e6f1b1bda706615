//go:build linux

package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

var updateDocs = flag.Bool("update", false, "rewrite the screenshots in docs/ (TestUI)")

// uiFlows are the flows of TestUI: etl has a fan-out, a task that fails once
// and is retried, and a last task that waits for the test's gate file, so
// that its last log line is written after the page follows the logs.
const uiETLFlow = `version: 1
flow:
  name: etl
  description: nightly extract, clean, enrich and load
tasks:
  extract: {use: shell, inputs: {cmd: "echo extracting 3 files; echo rows=1200"}}
  clean: {use: shell, depends_on: [extract], inputs: {cmd: "echo dropped 12 duplicate rows"}}
  enrich:
    use: shell
    depends_on: [extract]
    retries: 1
    retry_delay: 100ms
    inputs: {cmd: "if [ -f enrich.ok ]; then echo enriched 1188 rows; else touch enrich.ok; echo 'geo lookup timed out' >&2; exit 3; fi"}
  load: {use: shell, depends_on: [clean, enrich], inputs: {cmd: "echo loading into warehouse; while [ ! -f %s ]; do sleep 0.05; done; echo loaded 1188 rows"}}
`

const uiHelloFlow = `version: 1
flow:
  name: hello
tasks:
  greet: {use: log, inputs: {message: "hello"}}
`

const uiReportFlow = `version: 1
flow:
  name: report
tasks:
  render: {use: shell, inputs: {cmd: "echo 'template missing: weekly.tmpl' >&2; exit 2"}}
`

// uiAPI talks to the server of TestUI with its token.
type uiAPI struct {
	t     *testing.T
	s     *stack
	base  string
	token string
}

func (a *uiAPI) do(method, path string, body any) map[string]any {
	a.t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(a.t, err)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.base+path, r)
	require.NoError(a.t, err)
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.s.http.Do(req)
	require.NoError(a.t, err)
	defer resp.Body.Close()
	var doc map[string]any
	require.NoError(a.t, json.NewDecoder(resp.Body).Decode(&doc))
	require.Less(a.t, resp.StatusCode, 300, "%s %s: %v", method, path, doc)
	return doc
}

func (a *uiAPI) submit(flow string, tags ...string) string {
	return a.do("POST", "/runs", map[string]any{"flow_name": flow, "tags": tags})["run_id"].(string)
}

func (a *uiAPI) waitStatus(id string, want ...string) {
	a.t.Helper()
	waitFor(a.t, 30*time.Second, "run "+id+" "+strings.Join(want, "|"), func() bool {
		st := a.do("GET", "/runs/"+id, nil)["status"].(string)
		for _, w := range want {
			if st == w {
				return true
			}
		}
		return false
	})
}

// chromiumBin finds Debian's chromium (apt-get install chromium
// chromium-driver); missing, the test fails in CI and is skipped elsewhere.
func chromiumBin(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	missingTool(t, "chromium not found on PATH; apt-get install -y --no-install-recommends chromium chromium-driver")
	return ""
}

// newBrowser starts a headless Chromium with a fresh profile; it is stopped
// (and its processes reaped) when the test ends.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	bin := chromiumBin(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		_ = chromedp.Cancel(ctx) // closes the browser and waits for it
		cancel()
		cancelAlloc()
	})
	// The first Run starts the browser, under no timeout (a timeout there
	// would stop the browser with it).
	require.NoError(t, chromedp.Do(ctx))
	return ctx
}

// step runs actions under a timeout derived from the browser's context.
func step(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	require.NoError(t, chromedp.Do(sctx, actions...), what)
}

// waitJS polls a JavaScript predicate in the page until it is truthy.
func waitJS(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	step(t, ctx, what, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(0)))
}

// setValue sets the value of the form field with this id.
func setValue(id, v string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](`document.getElementById(` + jsString(id) + `).value = ` + jsString(v))
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestUI drives the run viewer (/ui) of a real `pyoco server` (with an API
// token) in a real headless Chromium: sign in, the runs list shows the runs,
// the flow filter narrows it, a run's page shows its task graph, its
// attempts (the retried one twice) and a link to its trace, and follows its
// logs live: a line the task writes after the page opened appears, then the
// stream's end. With -update it rewrites docs/ui-runs.png and docs/ui-run.png.
func TestUI(t *testing.T) {
	t.Parallel()
	ctx := newBrowser(t)
	s := newStack(t)
	flows := filepath.Join(s.dir, "flows")
	require.NoError(t, os.Mkdir(flows, 0o755))
	gate := filepath.Join(s.dir, "gate")
	for name, src := range map[string]string{
		"etl.yaml": fmt.Sprintf(uiETLFlow, gate), "hello.yaml": uiHelloFlow, "report.yaml": uiReportFlow,
	} {
		require.NoError(t, os.WriteFile(filepath.Join(flows, name), []byte(src), 0o644))
	}
	const token = "ui-test-token"
	const traceURL = "http://jaeger.example:16686/trace/{trace_id}"
	port := freeTCPPort(t)
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	srv := s.start("server", pyocoBin, []string{"server", "--addr", "127.0.0.1:" + strconv.Itoa(port), "--flows", flows,
		"--concurrency", "4"}, []string{"OTEL_TRACES_EXPORTER=none", "PYOCO_PLUGIN_PATH=" + s.dir,
		"PYOCO_API_TOKEN=" + token, "PYOCO_TRACE_URL=" + traceURL})
	require.NoError(t, s.waitHTTP(srv, base+"/healthz", 30*time.Second))
	a := &uiAPI{t: t, s: s, base: base, token: token}

	hello := a.submit("hello", "smoke")
	a.waitStatus(hello, "COMPLETED")
	report := a.submit("report", "nightly")
	a.waitStatus(report, "FAILED")
	etl := a.submit("etl", "nightly", "warehouse")
	// The run's first lines are in before the page opens; its last one
	// waits for the gate.
	waitFor(t, 30*time.Second, "etl loading", func() bool {
		logs := a.do("GET", "/runs/"+etl+"/logs", nil)["logs"].([]any)
		for _, l := range logs {
			if l.(map[string]any)["text"] == "loading into warehouse" {
				return true
			}
		}
		return false
	})

	// Sign in: the page asks for the token (the API answered 401).
	step(t, ctx, "open /ui", chromedp.Navigate(base+"/ui"), chromedp.WaitVisible(chromedp.ID("token")))
	step(t, ctx, "sign in", chromedp.SendKeys(chromedp.ID("token"), token), chromedp.Click(chromedp.ID("login-btn")))
	row := func(id string) string { return `tr[data-run-id="` + id + `"]` }
	for _, id := range []string{hello, report, etl} {
		step(t, ctx, "runs list shows "+id, chromedp.WaitVisible(chromedp.CSS(row(id))))
	}
	waitJS(t, ctx, "etl row RUNNING", `document.querySelector(`+jsString(row(etl))+`).dataset.status === "RUNNING"`)
	if *updateDocs {
		screenshot(t, ctx, "ui-runs.png")
	}

	// The flow filter narrows the list (through the hash, so a reload
	// keeps it).
	step(t, ctx, "filter by flow", setValue("f-flow", "etl"), chromedp.Click(chromedp.ID("apply")))
	waitJS(t, ctx, "only etl runs", `location.hash.includes("flow=etl") && !document.querySelector(`+jsString(row(hello))+
		`) && !!document.querySelector(`+jsString(row(etl))+`)`)
	step(t, ctx, "filter by status", setValue("f-flow", ""), setValue("f-status", "FAILED"), chromedp.Click(chromedp.ID("apply")))
	waitJS(t, ctx, "only failed runs", `!document.querySelector(`+jsString(row(etl))+`) && !!document.querySelector(`+jsString(row(report))+`)`)
	step(t, ctx, "clear filters", setValue("f-status", ""), chromedp.Click(chromedp.ID("apply")))

	// Paging with the API's cursor: two runs a page, newest first.
	rows := `document.querySelectorAll("#runs tbody tr")`
	// A second navigation while the first one still waits for the API
	// (this listener runs right after the page's own): the first one's view
	// must never be drawn (left running under the second, it would redraw
	// the list with its own filter every 2 s). Only the last one's runs are
	// fetched.
	step(t, ctx, "two a page", chromedp.Evaluate[chromedp.Void](`performance.setResourceTimingBufferSize(10000);
		window.t0 = performance.now();
		window.addEventListener("hashchange", () => { location.hash = "#/runs?limit=2"; }, { once: true });
		location.hash = "#/runs?status=FAILED"`))
	page1 := rows + `.length === 2 && !!document.querySelector(` + jsString(row(etl)) + `) && !document.getElementById("next").disabled`
	waitJS(t, ctx, "page 1", page1)
	time.Sleep(2500 * time.Millisecond) // past the newest page's 2 s refresh
	stale, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`performance.getEntriesByType("resource").filter((e) =>
		e.startTime > window.t0 && e.name.includes("/runs?") && e.name.includes("status=FAILED")).length`))
	require.NoError(t, err)
	require.Zero(t, stale, "the first navigation's list was fetched: its view is running")
	waitJS(t, ctx, "still page 1", page1)
	step(t, ctx, "older", chromedp.Click(chromedp.ID("next")))
	waitJS(t, ctx, "page 2", rows+`.length === 1 && !!document.querySelector(`+jsString(row(hello))+`) && document.getElementById("next").disabled &&
		document.getElementById("page-no").textContent === "page 2"`)
	step(t, ctx, "newer", chromedp.Click(chromedp.ID("prev")))
	waitJS(t, ctx, "page 1 again", rows+`.length === 2 && !!document.querySelector(`+jsString(row(etl))+`) && document.getElementById("prev").disabled`)
	step(t, ctx, "all runs", chromedp.Evaluate[chromedp.Void](`location.hash = "#/runs"`))
	step(t, ctx, "runs list again", chromedp.WaitVisible(chromedp.CSS(row(hello))))

	// The run page.
	step(t, ctx, "open the etl run", chromedp.Click(chromedp.CSS(row(etl)+" a.run-link")),
		chromedp.WaitVisible(chromedp.CSS(`#graph g.node[data-task="load"]`)))
	waitJS(t, ctx, "graph edges", `document.querySelectorAll("#graph path.edge").length === 4`)
	waitJS(t, ctx, "live log line before the gate", `document.getElementById("logs").textContent.includes("loading into warehouse")`)
	waitJS(t, ctx, "stream live", `document.getElementById("log-state").textContent === "live"`)
	waitJS(t, ctx, "enrich's two attempts", `!!document.querySelector('#timeline rect.attempt[data-task="enrich"][data-attempt="2"]') &&
		document.querySelector('#timeline rect.attempt[data-task="enrich"][data-attempt="1"]').dataset.status === "FAILED"`)
	trace := a.do("GET", "/runs/"+etl, nil)["trace_id"].(string)
	href, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("a.trace-link").href`))
	require.NoError(t, err)
	require.Equal(t, strings.ReplaceAll(traceURL, "{trace_id}", trace), href)
	logs, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("logs").textContent`))
	require.NoError(t, err)
	require.NotContains(t, logs, "loaded 1188 rows", "the last line is written only after the gate")
	require.Contains(t, logs, "stderr: geo lookup timed out")

	// Open the gate: the last line arrives on the open stream, then its end.
	require.NoError(t, os.WriteFile(gate, nil, 0o644))
	waitJS(t, ctx, "the line written after the gate", `document.getElementById("logs").textContent.includes("loaded 1188 rows")`)
	waitJS(t, ctx, "stream ended", `document.getElementById("log-state").textContent === "ended (COMPLETED)"`)
	waitJS(t, ctx, "run COMPLETED", `document.getElementById("r-status").textContent === "COMPLETED" &&
		document.querySelector('#graph g.node[data-task="load"]').dataset.state === "SUCCEEDED"`)
	if *updateDocs {
		screenshot(t, ctx, "ui-run.png")
	}
}

// screenshot writes the page as docs/NAME.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join("..", "..", "docs", name), buf, 0o644))
	t.Logf("wrote docs/%s (%d bytes)", name, len(buf))
}
