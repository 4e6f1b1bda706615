package api_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// testRunFlow: GET /runs/{run_id}/flow is the run's snapshot, with its
// tasks and edges, for a flow given by name and for inline flow_yaml; an
// unknown run is 404.
func testRunFlow(t *testing.T, mk serverFactory) {
	b := mk(t)
	id := b.submit(map[string]any{"flow_name": "hello"})
	a := b.do("GET", "/runs/"+id+"/flow", nil)
	require.Equal(t, http.StatusOK, a.status, "%s", a.body)
	doc := a.json(t)
	require.Equal(t, "hello", doc["name"])
	require.Equal(t, []any{map[string]any{"from": "greet", "to": "shout"}}, doc["edges"])
	tasks := doc["tasks"].([]any)
	require.Len(t, tasks, 2)
	require.Equal(t, "greet", tasks[0].(map[string]any)["name"])

	inline := "version: 1\nflow: {name: inline_graph}\ntasks:\n  a: {use: noop}\n  b: {use: noop, depends_on: [a]}\n  c: {use: noop, depends_on: [a, b]}\n"
	id = b.submit(map[string]any{"flow_yaml": inline})
	a = b.do("GET", "/runs/"+id+"/flow", nil)
	require.Equal(t, http.StatusOK, a.status, "%s", a.body)
	doc = a.json(t)
	require.Equal(t, "inline_graph", doc["name"])
	require.Len(t, doc["edges"], 3)
	require.Equal(t, inline, doc["source"])

	a = b.do("GET", "/runs/nope/flow", nil)
	require.Equal(t, http.StatusNotFound, a.status)
	a = b.do("GET", "/runs/"+id+"/flow?x=1", nil)
	require.Equal(t, http.StatusBadRequest, a.status)
}
