package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/memstore"
)

// TestOpenAPIMatchesRoutes walks the mux's registered patterns and the
// OpenAPI document's paths and methods and fails on any difference.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	eng, err := engine.New(memstore.New(), engine.NewRegistry(), nil)
	require.NoError(t, err)
	s, err := New(eng, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })

	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(openAPIDoc, &doc))
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	slices.Sort(documented)

	var registered []string
	for _, rt := range s.routes {
		registered = append(registered, rt.pattern)
	}
	slices.Sort(registered)
	require.Equal(t, registered, documented, "routes and openapi.json differ")

	// Each documented operation reaches the mux pattern of the same name.
	for _, op := range documented {
		method, path, _ := strings.Cut(op, " ")
		concrete := strings.NewReplacer("{run_id}", "r1", "{name}", "f1").Replace(path)
		_, pattern := s.mux.Handler(httptest.NewRequest(method, concrete, nil))
		require.Equal(t, op, pattern, "%s is not routed as documented", op)
	}
}

// TestErrorAnswerNever500ForEngineErrors pins the mapping of engine errors.
func TestErrorAnswer(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err    error
		status int
		code   string
	}{
		{engine.ErrNotFound, 404, CodeNotFound},
		{engine.ErrConflict, 409, CodeConflict},
		{engine.ErrBadCursor, 400, CodeBadRequest},
		{engine.ErrUnavailable, 503, CodeUnavailable},
		{engine.LoadErrors{{Msg: "x", Pos: engine.Position{Line: 1, Col: 2}}}, 422, CodeUnprocessable},
		{errBadParam("limit", "no"), 400, CodeBadRequest},
		{errors.ErrUnsupported, 500, CodeInternal},
	}
	for _, c := range cases {
		st, doc := errorAnswer(c.err)
		require.Equal(t, c.status, st, "%v", c.err)
		require.Equal(t, c.code, doc.Code, "%v", c.err)
		require.NotEmpty(t, doc.Message)
	}
}

// TestOpenAPIQueryParams walks each documented operation's query
// parameters: the route knows each one, and (but for the routes listed)
// rejects one that is not documented.
func TestOpenAPIQueryParams(t *testing.T) {
	t.Parallel()
	eng, err := engine.New(memstore.New(), engine.NewRegistry(), nil)
	require.NoError(t, err)
	s, err := New(eng, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	var doc struct {
		Paths map[string]map[string]struct {
			Parameters []struct {
				Name string `json:"name"`
				In   string `json:"in"`
			} `json:"parameters"`
		} `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(openAPIDoc, &doc))
	// Routes that ignore their query (probes, and POST /runs whose input is its body).
	lenient := []string{"POST /runs", "GET /healthz", "GET /readyz", "GET /metrics", "GET /openapi.json"}
	h := s.Handler()
	for path, ops := range doc.Paths {
		concrete := strings.NewReplacer("{run_id}", "r1", "{name}", "f1", "{id}", "d1").Replace(path)
		for method, op := range ops {
			name := strings.ToUpper(method) + " " + path
			if slices.Contains(lenient, name) {
				continue
			}
			for _, p := range op.Parameters {
				if p.In != "query" {
					continue
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(strings.ToUpper(method), concrete+"?"+p.Name+"=1", nil))
				require.NotContains(t, rec.Body.String(), "unknown query parameter", "%s ?%s", name, p.Name)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(strings.ToUpper(method), concrete+"?zz_undocumented=1", nil))
			require.Equal(t, 400, rec.Code, "%s must reject an undocumented parameter: %s", name, rec.Body)
			require.Contains(t, rec.Body.String(), `"param":"zz_undocumented"`, name)
		}
	}
}

// TestWriteLogsPage: the streamed page is the JSON of logsDoc.
func TestWriteLogsPage(t *testing.T) {
	t.Parallel()
	run := &engine.Run{ID: "r\"1", Status: engine.RunRunning}
	ts := time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)
	for _, entries := range [][]engine.LogEntry{nil, {
		{Seq: 4, Task: "a", Stream: "stdout", Text: "x\"<y>\n\xff", Timestamp: ts, TraceID: "t", SpanID: "s"},
		{Seq: 9, Task: "b", Stream: "log", Level: "WARN", Text: ""},
	}} {
		rec := httptest.NewRecorder()
		writeLogsPage(rec, run, 3, entries)
		want := logsDoc{RunID: run.ID, RunStatus: run.Status, Logs: []logEntryDoc{}, NextAfter: 3}
		for _, e := range entries {
			want.Logs = append(want.Logs, newLogEntryDoc(e))
			want.NextAfter = e.Seq
		}
		b, err := marshalJSON(want)
		require.NoError(t, err)
		require.Equal(t, string(b), rec.Body.String())
		require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	}
}

// TestErrorAnswerClipsIDs: a store error quoting a long id is cut.
func TestErrorAnswerClipsIDs(t *testing.T) {
	t.Parallel()
	id := strings.Repeat("x", 128)
	_, doc := errorAnswer(fmt.Errorf("retry webhook delivery %s: webhook delivery %s: %w", id, id, engine.ErrNotFound))
	require.NotContains(t, doc.Message, id)
	require.Contains(t, doc.Message, strings.Repeat("x", 64)+"…")
	require.Less(t, len(doc.Message), 200)
}
