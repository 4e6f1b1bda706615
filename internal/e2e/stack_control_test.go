//go:build linux

package e2e_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/internal/redistest"
)

// TestStackControlFlow runs a flow with a foreach and a sub-flow on a real
// `pyoco server` and `pyoco worker` over Redis, exporting to a real Jaeger,
// and checks the one trace Jaeger holds: the parent's run span, a span per
// iteration (`task chop[i]`, pyoco.task.index), and the sub-flow's run span
// under the span of the task that ran it, with the child's task spans below.
func TestStackControlFlow(t *testing.T) {
	t.Parallel()
	jaegerPath := jaegerBin(t)
	flowsDir := t.TempDir()
	for name, src := range map[string]string{
		"e2e_cf.yaml": `version: 1
flow: {name: e2e_cf, graph: "chop >> sub"}
tasks:
  chop: {use: log, foreach: '["rice", "leek", "kale"]', inputs: {message: "chop ${ctx.item}"}}
  sub: {use: flow/e2e_cf_child, inputs: {n: 3}}
`,
		"e2e_cf_child.yaml": `version: 1
flow: {name: e2e_cf_child, defaults: {n: 0}, graph: "a >> b"}
tasks:
  a: {use: log, inputs: {message: "child ${ctx.params.n}"}}
  b: {use: noop}
`,
	} {
		require.NoError(t, os.WriteFile(filepath.Join(flowsDir, name), []byte(src), 0o644))
	}

	rd := redistest.StartServer(t)
	s := newStack(t)
	j := s.startJaeger(jaegerPath)
	otel := []string{
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=" + j.otlpHTTP + "/v1/traces",
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/protobuf",
		"OTEL_TRACES_EXPORTER=otlp", "OTEL_TRACES_SAMPLER=always_on", "OTEL_BSP_SCHEDULE_DELAY=200",
		"PYOCO_PLUGIN_PATH=" + s.dir, "PYOCO_API_TOKEN=",
	}
	redisURL := "redis://" + rd.Addr()
	srv := s.start("server", pyocoBin, []string{"server", "--addr", "127.0.0.1:0", "--redis", redisURL,
		"--namespace", "cf", "--flows", flowsDir}, append(otel, "OTEL_SERVICE_NAME=pyoco-server"))
	m, err := srv.waitLog(regexp.MustCompile(`msg="serving the API" url=(http://127\.0\.0\.1:\d+)`), 30*time.Second)
	require.NoError(t, err)
	api := &pyocoAPI{s: s, url: m[1], traces: map[string]string{}}
	s.start("worker", pyocoBin, []string{"worker", "--redis", redisURL, "--namespace", "cf", "--metrics-addr", "off"},
		append(otel, "OTEL_SERVICE_NAME=pyoco-worker"))

	id := api.submit(t, "e2e_cf")
	r := api.waitStatus(t, []string{id}, 60*time.Second, "COMPLETED", "FAILED", "CANCELLED")[id]
	require.Equal(t, "COMPLETED", r.Status)
	var doc struct {
		Children []string `json:"children"`
	}
	require.NoError(t, s.do(http.MethodGet, api.url+"/runs/"+id, nil, http.StatusOK, &doc))
	require.Len(t, doc.Children, 1)

	want := []string{"run e2e_cf", "task chop[0]", "task chop[1]", "task chop[2]", "task sub", "run e2e_cf_child", "task a", "task b"}
	var spans []jaegerSpan
	eventually(t, 30*time.Second, "the run's trace in Jaeger", func() error {
		spans, err = s.trace(j, r.TraceID)
		if err != nil {
			return err
		}
		if len(spans) < len(want) {
			return fmt.Errorf("%d of %d spans", len(spans), len(want))
		}
		return nil
	})
	byName := map[string]*jaegerSpan{}
	var names []string
	for i := range spans {
		sp := &spans[i]
		require.Equal(t, r.TraceID, sp.TraceID, "one trace")
		names = append(names, sp.OperationName)
		byName[sp.OperationName] = sp
	}
	slices.Sort(names)
	sortedWant := slices.Clone(want)
	slices.Sort(sortedWant)
	require.Equal(t, sortedWant, names)

	run := byName["run e2e_cf"]
	for i := range 3 {
		it := byName[fmt.Sprintf("task chop[%d]", i)]
		require.Equal(t, run.SpanID, it.parent(), "iteration spans are children of the run span")
		require.Equal(t, fmt.Sprint(i), it.tag("pyoco.task.index"))
		require.Equal(t, "chop", it.tag("pyoco.task.name"))
	}
	sub, child := byName["task sub"], byName["run e2e_cf_child"]
	require.Equal(t, run.SpanID, sub.parent())
	require.Equal(t, sub.SpanID, child.parent(), "the sub-flow's run span is a child of the task span")
	require.Equal(t, doc.Children[0], child.tag("pyoco.run.id"))
	require.Equal(t, child.SpanID, byName["task a"].parent())
	require.Equal(t, child.SpanID, byName["task b"].parent())
}
