//go:build linux

package e2e_test

// Helpers of TestStack: real Jaeger, Prometheus and pyoco processes on
// loopback ports, and small clients of their HTTP APIs.

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ciMode reports whether missing tools fail the test (CI=true) instead of
// skipping it.
func ciMode() bool { return os.Getenv("CI") == "true" }

// missingTool fails (in CI) or skips the test because a tool is missing.
func missingTool(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if ciMode() {
		t.Fatal(msg)
	}
	t.Skip(msg + " (CI=true makes this a failure)")
}

// jaegerCachePath is where .ci/run builds Jaeger: keyed by the hash of
// tools/jaeger/go.sum, so a dependency bump builds a new binary.
func jaegerCachePath() (string, error) {
	sum, err := os.ReadFile(filepath.Join("..", "..", "tools", "jaeger", "go.sum"))
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(sum)
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "pyoco", "jaeger-"+hex.EncodeToString(h[:])[:16]), nil
}

// jaegerBin finds the Jaeger v2 binary: $PYOCO_JAEGER_BIN, else the .ci/run
// cache.
func jaegerBin(t *testing.T) string {
	t.Helper()
	const howto = "build it with `cd tools/jaeger && go build -o /some/dir/jaeger github.com/jaegertracing/jaeger/cmd/jaeger` " +
		"and set PYOCO_JAEGER_BIN=/some/dir/jaeger, or run .ci/run once (it builds it into the cache)"
	if p := os.Getenv("PYOCO_JAEGER_BIN"); p != "" {
		if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			t.Fatalf("PYOCO_JAEGER_BIN=%s is not an executable file (%v); %s", p, err, howto)
		}
		return p
	}
	p, err := jaegerCachePath()
	if err != nil {
		t.Fatalf("jaeger cache path: %v", err)
	}
	if _, err := os.Stat(p); err != nil {
		missingTool(t, "Jaeger not found: PYOCO_JAEGER_BIN is unset and %s does not exist; %s", p, howto)
	}
	return p
}

// lookTool finds a program on PATH.
func lookTool(t *testing.T, name, howto string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		missingTool(t, "%s not found on PATH; %s", name, howto)
	}
	return p
}

// freeTCPPort returns a loopback port that was free a moment ago (a process
// that then fails to bind it is started again on another one).
func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// stack owns the processes of one test: each logs to its own file, is
// stopped (SIGTERM, then SIGKILL) and reaped when the test ends, and the
// tails of every log are printed if the test failed.
type stack struct {
	t    *testing.T
	dir  string
	http *http.Client

	mu    sync.Mutex
	procs []*stackProc
}

// stackProc is one process of the stack.
type stackProc struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{} // closed when reaped
}

func newStack(t *testing.T) *stack {
	s := &stack{
		t:    t,
		dir:  t.TempDir(),
		http: &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second},
	}
	t.Cleanup(s.stopAll)
	return s
}

// start starts a process; env is added to the test's environment.
func (s *stack) start(name, bin string, args, env []string) *stackProc {
	s.t.Helper()
	s.mu.Lock()
	logPath := filepath.Join(s.dir, fmt.Sprintf("%02d-%s.log", len(s.procs), name))
	s.mu.Unlock()
	logf, err := os.Create(logPath)
	if err != nil {
		s.t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start %s: %v", name, err)
	}
	p := &stackProc{name: name, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	return p
}

func (p *stackProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to grace, then SIGKILL, and reaps.
func (p *stackProc) stop(grace time.Duration) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// stopAll stops every process (in reverse start order) and, if the test
// failed, prints each log's tail.
func (s *stack) stopAll() {
	s.mu.Lock()
	procs := s.procs
	s.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop(15 * time.Second)
	}
	s.http.CloseIdleConnections()
	if s.t.Failed() {
		for _, p := range procs {
			s.t.Logf("--- %s (%s), last lines:\n%s", p.name, p.cmd.ProcessState, logTail(p.log, 40))
		}
	}
}

// logTail returns the last n lines of a file.
func logTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// errExited is returned while waiting for a process that has exited.
var errExited = errors.New("process exited")

// waitLog polls p's log until re matches, and returns the submatches.
func (p *stackProc) waitLog(re *regexp.Regexp, within time.Duration) ([]string, error) {
	deadline := time.Now().Add(within)
	for {
		data, _ := os.ReadFile(p.log)
		if m := re.FindStringSubmatch(string(data)); m != nil {
			return m, nil
		}
		if p.exited() {
			return nil, fmt.Errorf("%s: %w (%s) before logging %q:\n%s", p.name, errExited, p.cmd.ProcessState, re, logTail(p.log, 20))
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s: no %q in its log after %s:\n%s", p.name, re, within, logTail(p.log, 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitHTTP polls url until it answers 200.
func (s *stack) waitHTTP(p *stackProc, u string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		resp, err := s.http.Get(u)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if p.exited() {
			return fmt.Errorf("%s: %w (%s):\n%s", p.name, errExited, p.cmd.ProcessState, logTail(p.log, 20))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s not ready after %s (%v):\n%s", p.name, u, within, err, logTail(p.log, 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startRetrying starts a process on freshly picked ports up to 3 times:
// another process may take a picked port before ours binds it.
func (s *stack) startRetrying(name string, try func() (*stackProc, error)) {
	s.t.Helper()
	var errs []error
	for range 3 {
		p, err := try()
		if err == nil {
			return
		}
		errs = append(errs, err)
		p.stop(5 * time.Second)
		if !errors.Is(err, errExited) {
			break
		}
	}
	s.t.Fatalf("%s did not start: %v", name, errors.Join(errs...))
}

// jaeger is a Jaeger v2 all-in-one with in-memory storage, bound to
// loopback only.
type jaeger struct {
	otlpHTTP string // base URL of the OTLP/HTTP receiver
	query    string // base URL of the query API
}

const jaegerConfig = `# Jaeger v2 (an OpenTelemetry Collector distribution), in-memory, loopback only.
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:%[1]d
  jaeger_query:
    enable_tracing: false   # else it exports its own spans to localhost:4317
    storage:
      traces: mem
    http:
      endpoint: 127.0.0.1:%[2]d
    grpc:
      endpoint: 127.0.0.1:%[3]d
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:%[4]d
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
`

func (s *stack) startJaeger(bin string) *jaeger {
	s.t.Helper()
	var j *jaeger
	s.startRetrying("jaeger", func() (*stackProc, error) {
		health, queryHTTP, queryGRPC, otlp := freeTCPPort(s.t), freeTCPPort(s.t), freeTCPPort(s.t), freeTCPPort(s.t)
		cfg := filepath.Join(s.dir, "jaeger.yaml")
		if err := os.WriteFile(cfg, fmt.Appendf(nil, jaegerConfig, health, queryHTTP, queryGRPC, otlp), 0o644); err != nil {
			s.t.Fatal(err)
		}
		p := s.start("jaeger", bin, []string{"--config", cfg}, []string{"OTEL_SDK_DISABLED=true", "OTEL_TRACES_EXPORTER=none"})
		j = &jaeger{otlpHTTP: fmt.Sprintf("http://127.0.0.1:%d", otlp), query: fmt.Sprintf("http://127.0.0.1:%d", queryHTTP)}
		if err := s.waitHTTP(p, j.query+"/api/services", 60*time.Second); err != nil {
			return p, err
		}
		// The receiver starts after the query extension: wait for its port.
		return p, waitDial(p, fmt.Sprintf("127.0.0.1:%d", otlp), 30*time.Second)
	})
	return j
}

// waitDial polls addr until it accepts a TCP connection.
func waitDial(p *stackProc, addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.Close()
		}
		if p.exited() {
			return fmt.Errorf("%s: %w (%s):\n%s", p.name, errExited, p.cmd.ProcessState, logTail(p.log, 20))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s not listening after %s", p.name, addr, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// jaegerSpan is a span of Jaeger's query API (/api/traces/{id}).
type jaegerSpan struct {
	TraceID       string `json:"traceID"`
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	References    []struct {
		RefType string `json:"refType"`
		TraceID string `json:"traceID"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	Tags []struct {
		Key   string `json:"key"`
		Value any    `json:"value"`
	} `json:"tags"`
}

// tag returns a tag's value as text ("" if absent).
func (sp *jaegerSpan) tag(key string) string {
	for _, t := range sp.Tags {
		if t.Key == key {
			return fmt.Sprint(t.Value)
		}
	}
	return ""
}

// parent returns the span id of the CHILD_OF reference ("" if none).
func (sp *jaegerSpan) parent() string {
	for _, r := range sp.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

// trace fetches a trace's spans; a trace Jaeger does not have yet is empty.
func (s *stack) trace(j *jaeger, traceID string) ([]jaegerSpan, error) {
	resp, err := s.http.Get(j.query + "/api/traces/" + traceID)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, nil
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /api/traces/%s: %s: %s", traceID, resp.Status, body)
	}
	var out struct {
		Data []struct {
			Spans []jaegerSpan `json:"spans"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("GET /api/traces/%s: %w", traceID, err)
	}
	var spans []jaegerSpan
	for _, d := range out.Data {
		spans = append(spans, d.Spans...)
	}
	return spans, nil
}

// prometheus is a Prometheus server with its own TSDB.
type prometheus struct {
	url string
}

const prometheusConfig = `global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: pyoco-server
    static_configs:
      - targets: [%s]
  - job_name: pyoco-worker
    static_configs:
      - targets: [%s]
`

// startPrometheus starts Prometheus scraping server and workers (host:port)
// every second, with exemplar storage on.
func (s *stack) startPrometheus(bin, promtool, server string, workers []string) *prometheus {
	s.t.Helper()
	cfg := filepath.Join(s.dir, "prometheus.yml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, prometheusConfig, server, strings.Join(workers, ", ")), 0o644); err != nil {
		s.t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "config", cfg).CombinedOutput(); err != nil {
		s.t.Fatalf("promtool check config: %v\n%s", err, out)
	}
	var pr *prometheus
	n := 0
	s.startRetrying("prometheus", func() (*stackProc, error) {
		n++
		port := freeTCPPort(s.t)
		p := s.start("prometheus", bin, []string{
			"--config.file=" + cfg,
			"--storage.tsdb.path=" + filepath.Join(s.dir, fmt.Sprintf("tsdb-%d", n)),
			fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port),
			"--enable-feature=exemplar-storage",
			"--log.level=warn",
		}, nil)
		pr = &prometheus{url: fmt.Sprintf("http://127.0.0.1:%d", port)}
		return p, s.waitHTTP(p, pr.url+"/-/ready", 60*time.Second)
	})
	return pr
}

// promSample is one series of a query result.
type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  []any             `json:"value"`  // vector: [time, "value"]
	Values [][]any           `json:"values"` // matrix
}

// query runs an instant query and returns its series (a scalar result is
// one series without labels).
func (s *stack) query(p *prometheus, expr string) ([]promSample, error) {
	body, err := s.getJSON(p.url + "/api/v1/query?" + url.Values{"query": {expr}}.Encode())
	if err != nil {
		return nil, err
	}
	var out struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("query %q: %w", expr, err)
	}
	if out.Status != "success" {
		return nil, fmt.Errorf("query %q: %s", expr, out.Error)
	}
	switch out.Data.ResultType {
	case "scalar", "string":
		var v []any
		if err := json.Unmarshal(out.Data.Result, &v); err != nil {
			return nil, err
		}
		return []promSample{{Value: v}}, nil
	default:
		var r []promSample
		if err := json.Unmarshal(out.Data.Result, &r); err != nil {
			return nil, fmt.Errorf("query %q: %w", expr, err)
		}
		return r, nil
	}
}

// value is a sample's value as text ("" for a matrix series).
func (ps promSample) value() string {
	if len(ps.Value) == 2 {
		return fmt.Sprint(ps.Value[1])
	}
	return ""
}

// getJSON GETs u and returns the body of a 2xx answer (Prometheus answers
// 400/422 with a JSON error that the caller decodes).
func (s *stack) getJSON(u string) ([]byte, error) {
	resp, err := s.http.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 && resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusUnprocessableEntity {
		return nil, fmt.Errorf("GET %s: %s: %s", u, resp.Status, body)
	}
	return body, nil
}

// do sends a JSON request to the pyoco API and decodes the answer into out,
// requiring the status want.
func (s *stack) do(method, u string, in any, want int, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %s (want %d): %s", method, u, resp.Status, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: %w: %s", method, u, err, b)
		}
	}
	return nil
}

// eventually polls check every 200 ms until it returns nil or within
// passes, then fails with its last error.
func eventually(t *testing.T, within time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not true after %s: %v", what, within, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// webhookReceiver is a loopback HTTP server that takes the server's webhook
// deliveries and checks their Standard Webhooks signature: the first
// request is answered 503 with Retry-After: 1 (a retry), the rest 200.
type webhookReceiver struct {
	url    string
	secret string // whsec_…
	key    []byte

	mu     sync.Mutex
	n      int
	ids    map[string]int    // webhook-id -> requests
	events map[string]string // webhook-id -> body "type"
	bad    []string          // problems with a request
}

func startWebhookReceiver(t *testing.T) *webhookReceiver {
	t.Helper()
	w := &webhookReceiver{key: make([]byte, 32), ids: map[string]int{}, events: map[string]string{}}
	_, _ = rand.Read(w.key)
	w.secret = "whsec_" + base64.StdEncoding.EncodeToString(w.key)
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		id, ts := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp")
		m := hmac.New(sha256.New, w.key)
		fmt.Fprintf(m, "%s.%s.%s", id, ts, body)
		want := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
		var payload struct {
			Type string         `json:"type"`
			Data map[string]any `json:"data"`
		}
		err := json.Unmarshal(body, &payload)
		w.mu.Lock()
		w.n++
		n := w.n
		w.ids[id]++
		w.events[id] = payload.Type
		switch {
		case id == "" || ts == "":
			w.bad = append(w.bad, fmt.Sprintf("request %d: webhook-id %q, webhook-timestamp %q", n, id, ts))
		case !slices.Contains(strings.Fields(r.Header.Get("webhook-signature")), want):
			w.bad = append(w.bad, fmt.Sprintf("request %d (%s): webhook-signature %q, want %q", n, id, r.Header.Get("webhook-signature"), want))
		case err != nil || payload.Data["run_id"] == nil:
			w.bad = append(w.bad, fmt.Sprintf("request %d (%s): body %.200s (%v)", n, id, body, err))
		}
		w.mu.Unlock()
		if n == 1 {
			rw.Header().Set("Retry-After", "1")
			rw.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		rw.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	w.url = srv.URL + "/hook"
	return w
}

// deliveries returns how many requests arrived, for how many webhook ids,
// the count of each event type, and the problems found.
func (w *webhookReceiver) deliveries() (requests, ids int, events map[string]int, bad []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	events = map[string]int{}
	for _, e := range w.events {
		events[e]++
	}
	return w.n, len(w.ids), events, slices.Clone(w.bad)
}
