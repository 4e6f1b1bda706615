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

// greetPlugin is an exec plug-in (protocol 1) with one task, greet/hello.
const greetPlugin = `#!/bin/sh
case "$1" in
describe)
  echo '{"protocol": 1, "name": "greet", "version": "1.0.0", "tasks": [{"name": "hello", "summary": "Say hello."}]}'
  ;;
run)
  cat > /dev/null
  echo '{"output": "hello from the plug-in"}'
  ;;
esac
`

const greetFlow = `version: 1
flow: {name: greeting}
tasks:
  hi: {use: greet/hello}
`

const unknownUseFlow = `version: 1
flow: {name: nowhere}
tasks:
  lost: {use: nope/missing}
`

// TestServerNeedsNoPlugins: a server on Redis without the greet plug-in
// offers the flow that uses it, GET /tasks lists greet/hello because a live
// worker announces it, and that worker runs it. A use no worker has is
// accepted too, and the run fails on the worker that takes it, naming it.
func TestServerNeedsNoPlugins(t *testing.T) {
	t.Parallel()
	rd := redistest.StartServer(t)
	s := newStack(t)
	flows := filepath.Join(s.dir, "flows")
	require.NoError(t, os.Mkdir(flows, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(flows, "greeting.yaml"), []byte(greetFlow), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(flows, "nowhere.yaml"), []byte(unknownUseFlow), 0o644))
	serverPlugins := filepath.Join(s.dir, "server-plugins")
	workerPlugins := filepath.Join(s.dir, "worker-plugins")
	require.NoError(t, os.Mkdir(serverPlugins, 0o755))
	require.NoError(t, os.Mkdir(workerPlugins, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(workerPlugins, "pyoco-plugin-greet"), []byte(greetPlugin), 0o755))
	redisURL := "redis://" + rd.Addr()
	env := []string{"OTEL_TRACES_EXPORTER=none", "PYOCO_API_TOKEN=", "PYOCO_PLUGIN_CACHE=off"}

	srv := s.start("server", pyocoBin, []string{"server", "--addr", "127.0.0.1:0", "--redis", redisURL,
		"--namespace", "noplug", "--flows", flows}, append(env, "PYOCO_PLUGIN_PATH="+serverPlugins))
	m, err := srv.waitLog(apiLogRe, 30*time.Second)
	require.NoError(t, err)
	base := m[1]

	// Both flows are offered although the server has neither task.
	var list struct {
		Flows []struct {
			Name string `json:"name"`
		} `json:"flows"`
		Errors []any `json:"errors"`
	}
	require.NoError(t, s.do("GET", base+"/flows", nil, 200, &list))
	require.Len(t, list.Flows, 2, "flows: %+v", list)
	require.Empty(t, list.Errors)
	var flow struct {
		Warnings []struct {
			Message string `json:"message"`
		} `json:"warnings"`
	}
	require.NoError(t, s.do("GET", base+"/flows/greeting", nil, 200, &flow))
	require.Len(t, flow.Warnings, 1)
	require.Contains(t, flow.Warnings[0].Message, `use "greet/hello" is not registered in this process`)

	w := s.start("worker", pyocoBin, []string{"worker", "--redis", redisURL, "--namespace", "noplug",
		"--metrics-addr", "off"}, append(env, "PYOCO_PLUGIN_PATH="+workerPlugins))

	// GET /tasks: the union of the server's tasks and the live worker's.
	type taskDoc struct {
		Name    string   `json:"name"`
		Plugin  string   `json:"plugin"`
		Workers []string `json:"workers"`
		Remote  bool     `json:"remote"`
	}
	var greet taskDoc
	eventually(t, 30*time.Second, "the worker announces greet/hello", func() error {
		var tasks struct {
			Tasks []taskDoc `json:"tasks"`
		}
		if err := s.do("GET", base+"/tasks", nil, 200, &tasks); err != nil {
			return err
		}
		for _, td := range tasks.Tasks {
			if td.Name == "greet/hello" {
				greet = td
				return nil
			}
		}
		if w.exited() {
			return fmt.Errorf("worker exited:\n%s", logTail(w.log, 20))
		}
		return fmt.Errorf("greet/hello not in GET /tasks: %+v", tasks.Tasks)
	})
	require.Equal(t, "greet", greet.Plugin)
	require.True(t, greet.Remote)
	require.Len(t, greet.Workers, 1)

	submit := func(flow string) string {
		var r struct {
			RunID string `json:"run_id"`
		}
		require.NoError(t, s.do("POST", base+"/runs", map[string]any{"flow_name": flow}, 201, &r))
		return r.RunID
	}
	type runDoc struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Tasks  map[string]struct {
			Output any `json:"output"`
		} `json:"tasks"`
	}
	waitEnd := func(id string) runDoc {
		var r runDoc
		eventually(t, 60*time.Second, "run "+id+" ends", func() error {
			if err := s.do("GET", base+"/runs/"+id, nil, 200, &r); err != nil {
				return err
			}
			if r.Status == "COMPLETED" || r.Status == "FAILED" || r.Status == "CANCELLED" {
				return nil
			}
			return fmt.Errorf("status %s", r.Status)
		})
		return r
	}
	ok := waitEnd(submit("greeting"))
	require.Equal(t, "COMPLETED", ok.Status, ok.Error)
	require.Equal(t, "hello from the plug-in", ok.Tasks["hi"].Output)

	// flow_yaml is checked the same way: accepted, executed on the worker.
	var inline struct {
		RunID string `json:"run_id"`
	}
	require.NoError(t, s.do("POST", base+"/runs", map[string]any{"flow_yaml": greetFlow}, 201, &inline))
	require.Equal(t, "COMPLETED", waitEnd(inline.RunID).Status)

	bad := waitEnd(submit("nowhere"))
	require.Equal(t, "FAILED", bad.Status)
	require.Contains(t, bad.Error, "on worker ")
	require.Contains(t, bad.Error, `unknown use "nope/missing"`)
}
