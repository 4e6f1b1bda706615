package api

import (
	"encoding/json"
	"errors"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

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
