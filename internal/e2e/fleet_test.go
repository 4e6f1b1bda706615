//go:build linux

package e2e_test

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/internal/redistest"
)

var (
	apiLogRe     = regexp.MustCompile(`msg="serving the API" url=(http://127\.0\.0\.1:\d+)`)
	metricsLogRe = regexp.MustCompile(`msg="serving metrics" addr=(http://127\.0\.0\.1:\d+)/metrics`)
)

// scrape returns the Prometheus text exposition at u.
func scrape(t *testing.T, s *stack, u string) string {
	t.Helper()
	resp, err := s.http.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode, string(b))
	return string(b)
}

// seriesValue returns the value of the series of metric whose labels
// include every one of labels (`name="value"`), and whether there is one.
func seriesValue(exposition, metric string, labels ...string) (string, bool) {
	for line := range strings.SplitSeq(exposition, "\n") {
		rest, ok := strings.CutPrefix(line, metric+"{")
		if !ok {
			continue
		}
		ls, value, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		have := strings.Split(ls, ",")
		all := true
		for _, l := range labels {
			found := false
			for _, h := range have {
				if h == l {
					found = true
				}
			}
			all = all && found
		}
		if all {
			return strings.Fields(value)[0], true
		}
	}
	return "", false
}

const countedFlow = `version: 1
flow: {name: counted, graph: "a >> b"}
tasks:
  a: {use: noop}
  b: {use: log, inputs: {message: hi}}
`

// TestCountersStartAtZero: before any run, a fresh server and a fresh
// worker already report every pyoco_runs_total and pyoco_tasks_total series
// of the flows of their --flows directory, at 0, so increase() counts the
// runs that finish before the first scrape.
func TestCountersStartAtZero(t *testing.T) {
	t.Parallel()
	rd := redistest.StartServer(t)
	s := newStack(t)
	flows := filepath.Join(s.dir, "flows")
	require.NoError(t, os.Mkdir(flows, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(flows, "counted.yaml"), []byte(countedFlow), 0o644))
	env := []string{"OTEL_TRACES_EXPORTER=none", "PYOCO_PLUGIN_PATH=" + s.dir, "PYOCO_API_TOKEN="}
	redisURL := "redis://" + rd.Addr()

	srv := s.start("server", pyocoBin, []string{"server", "--addr", "127.0.0.1:0", "--redis", redisURL,
		"--namespace", "counters", "--flows", flows}, env)
	m, err := srv.waitLog(apiLogRe, 30*time.Second)
	require.NoError(t, err)
	serverMetrics := m[1] + "/metrics"
	w := s.start("worker", pyocoBin, []string{"worker", "--redis", redisURL, "--namespace", "counters",
		"--flows", flows, "--metrics-addr", "127.0.0.1:0"}, env)
	m, err = w.waitLog(metricsLogRe, 30*time.Second)
	require.NoError(t, err)
	workerMetrics := m[1] + "/metrics"

	for _, u := range []string{serverMetrics, workerMetrics} {
		exp := scrape(t, s, u)
		for _, st := range []string{"PENDING", "RUNNING", "CANCELLING", "COMPLETED", "FAILED", "CANCELLED"} {
			v, ok := seriesValue(exp, "pyoco_runs_total", `flow="counted"`, fmt.Sprintf("status=%q", st))
			require.True(t, ok, "%s: no pyoco_runs_total{flow=counted,status=%s}:\n%s", u, st, exp)
			require.Equal(t, "0", v, u)
		}
		for _, task := range []string{"a", "b"} {
			for _, st := range []string{"SUCCEEDED", "FAILED", "CANCELLED"} {
				v, ok := seriesValue(exp, "pyoco_tasks_total", `flow="counted"`, fmt.Sprintf("task=%q", task), fmt.Sprintf("status=%q", st))
				require.True(t, ok, "%s: no pyoco_tasks_total{flow=counted,task=%s,status=%s}:\n%s", u, task, st, exp)
				require.Equal(t, "0", v, u)
			}
		}
	}
}
