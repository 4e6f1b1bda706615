package api_test

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/api"
	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/builtin"
)

// TestSubFlows: a flow of the server runs another through use: flow/<name>,
// and so does an inline flow of POST /runs; GET /runs/{id} lists the
// children, and a child names its parent.
func TestSubFlows(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, src := range map[string]string{
		"inner.yaml": "version: 1\nflow: {name: inner, defaults: {who: nobody}}\ntasks:\n  greet: {use: log, inputs: {message: \"hi ${ctx.params.who}\"}}\n",
		"outer.yaml": "version: 1\nflow: {name: outer}\ntasks:\n  call: {use: flow/inner, inputs: {who: outer}}\n",
	} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644))
	}
	reg := engine.NewRegistry()
	require.NoError(t, builtin.Register(reg))
	flows, err := api.LoadFlowDir(dir, reg)
	require.NoError(t, err)
	_, problems := flows.FlowList()
	require.Empty(t, problems)
	b := inProcess(memStore)(t, func(c *api.Config) { c.Flows = flows })

	check := func(id, who string) {
		t.Helper()
		run := b.wait(id)
		require.Equal(t, "COMPLETED", run["status"], "%v", run["error"])
		require.Nil(t, run["parent_run_id"])
		children := run["children"].([]any)
		require.Len(t, children, 1)
		call := run["tasks"].(map[string]any)["call"].(map[string]any)
		require.Equal(t, map[string]any{"greet": "hi " + who}, call["output"])
		child := b.do("GET", "/runs/"+children[0].(string), nil)
		require.Equal(t, http.StatusOK, child.status)
		cdoc := child.json(t)
		require.Equal(t, id, cdoc["parent_run_id"])
		require.Equal(t, "inner", cdoc["flow_name"])
		require.Equal(t, run["trace_id"], cdoc["trace_id"])
		require.Equal(t, []any{}, cdoc["children"])
	}
	check(b.submit(map[string]any{"flow_name": "outer"}), "outer")
	check(b.submit(map[string]any{"flow_yaml": "version: 1\nflow: {name: adhoc}\ntasks:\n  call: {use: flow/inner, inputs: {who: api}}\n"}), "api")

	a := b.do("POST", "/runs", map[string]any{"flow_yaml": "version: 1\nflow: {name: adhoc}\ntasks:\n  call: {use: flow/nope}\n"})
	require.Equal(t, http.StatusUnprocessableEntity, a.status, "%s", a.body)
	require.Contains(t, string(a.body), `unknown flow \"nope\"`)
}
