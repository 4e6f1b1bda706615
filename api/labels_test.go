package api_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/api"
	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/builtin"
	"github.com/pyoco/pyoco/engine/memstore"
	"github.com/pyoco/pyoco/telemetry"
)

// TestMetricLabelsBounded: an API caller cannot create metric label values
// (issue 16, defect 1). Names are capped at load time, and the runs of
// inline flows count under flow="_inline", task="_inline" whatever they are
// named; the flows the server offers keep their names.
func TestMetricLabelsBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tel, err := telemetry.Setup(ctx, telemetry.Config{Env: func(string) string { return "" }})
	require.NoError(t, err)
	t.Cleanup(func() { _ = tel.Shutdown(ctx) })
	reg := engine.NewRegistry()
	require.NoError(t, builtin.Register(reg))
	eng, err := engine.New(memstore.New(), reg, &engine.Config{MeterProvider: tel.MeterProvider, TracerProvider: tel.TracerProvider})
	require.NoError(t, err)
	flow, err := engine.LoadFlow("offered.yaml", []byte("version: 1\nflow: {name: offered_flow}\ntasks:\n  known_task: {use: noop}\n"), reg)
	require.NoError(t, err)
	flows, err := api.NewFlows(flow)
	require.NoError(t, err)
	srv, err := api.New(eng, &api.Config{Flows: flows, Metrics: tel.Handler(), MeterProvider: tel.MeterProvider, TracerProvider: tel.TracerProvider})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)

	post := func(body string) (int, string) {
		t.Helper()
		resp, err := ts.Client().Post(ts.URL+"/runs", "application/json", strings.NewReader(body))
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	scrape := func() string {
		t.Helper()
		resp, err := ts.Client().Get(ts.URL + "/metrics")
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return string(b)
	}
	inline := func(flowName string, tasks ...string) string {
		var sb strings.Builder
		fmt.Fprintf(&sb, "version: 1\nflow: {name: %s}\ntasks:\n", flowName)
		for _, n := range tasks {
			fmt.Fprintf(&sb, "  %s: {use: noop}\n", n)
		}
		return fmt.Sprintf(`{"flow_yaml": %q}`, sb.String())
	}

	// Over-long names and too many tasks are refused at load time.
	long := strings.Repeat("n", 100000)
	status, body := post(inline(long, "a"))
	require.Equal(t, http.StatusUnprocessableEntity, status, body)
	require.Contains(t, body, "at most 128")
	require.Less(t, len(body), 2000, "the error must not echo the whole name")
	status, body = post(inline("f", strings.Repeat("t", 129)))
	require.Equal(t, http.StatusUnprocessableEntity, status, body)
	require.Contains(t, body, "at most 128")
	many := make([]string, engine.MaxFlowTasks+1)
	for i := range many {
		many[i] = fmt.Sprintf("t%d", i)
	}
	status, body = post(inline("f", many...))
	require.Equal(t, http.StatusUnprocessableEntity, status, body)
	require.Contains(t, body, "at most 10000")
	out := scrape()
	require.NotContains(t, out, "nnnnnnnn")

	// Inline runs of made-up names count under one value, executed or not.
	var ids []string
	for i := range 5 {
		status, body = post(inline(fmt.Sprintf("made_up_%d", i), fmt.Sprintf("task_%d", i)))
		require.Equal(t, http.StatusCreated, status, body)
		ids = append(ids, body)
	}
	status, body = post(`{"flow_name": "offered_flow"}`)
	require.Equal(t, http.StatusCreated, status, body)
	out = scrape()
	require.Contains(t, out, `pyoco_runs_total{flow="_inline",status="PENDING"} 5`)
	require.Contains(t, out, `pyoco_runs_queued{flow="_inline"} 5`)
	require.Contains(t, out, `pyoco_runs_total{flow="offered_flow",status="PENDING"} 1`)
	require.Contains(t, out, `pyoco_runs_queued{flow="offered_flow"} 1`)

	runs, err := eng.Store().RunList(ctx, &engine.RunListParams{Limit: 10})
	require.NoError(t, err)
	for _, r := range runs.Runs {
		_, err := eng.Execute(ctx, &engine.ExecuteParams{RunID: r.ID})
		require.NoError(t, err)
	}
	out = scrape()
	require.Contains(t, out, `pyoco_runs_total{flow="_inline",status="COMPLETED"} 5`)
	require.Contains(t, out, `pyoco_tasks_total{flow="_inline",status="SUCCEEDED",task="_inline"} 5`)
	require.Contains(t, out, `pyoco_tasks_total{flow="offered_flow",status="SUCCEEDED",task="known_task"} 1`)
	require.NotContains(t, out, "made_up_")
	require.NotContains(t, out, `task="task_`)
}
