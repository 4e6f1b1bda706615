package ui_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/ui"
)

// TestHandler: the page, its files and its settings are served under /ui
// with a strict Content-Security-Policy; a bad trace URL template is refused.
func TestHandler(t *testing.T) {
	t.Parallel()
	h, err := ui.Handler(&ui.Config{TraceURL: "http://localhost:16686/trace/{trace_id}"})
	require.NoError(t, err)
	get := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec
	}
	rec := get("/ui")
	require.Equal(t, http.StatusMovedPermanently, rec.Code)
	require.Equal(t, "/ui/", rec.Header().Get("Location"))
	rec = get("/ui/")
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Body.String(), `<script src="app.js"`)
	require.Contains(t, rec.Header().Get("Content-Security-Policy"), "default-src 'self'")
	for _, f := range []string{"/ui/app.js", "/ui/style.css"} {
		require.Equal(t, http.StatusOK, get(f).Code, f)
	}
	rec = get("/ui/config.json")
	require.JSONEq(t, `{"trace_url": "http://localhost:16686/trace/{trace_id}"}`, rec.Body.String())
	require.Equal(t, http.StatusNotFound, get("/ui/nope.js").Code)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/ui/", strings.NewReader("x")))
	require.Equal(t, http.StatusMethodNotAllowed, rec.Code)

	for _, bad := range []string{"http://jaeger/trace/", "jaeger/{trace_id}", "ftp://x/{trace_id}", "http:///{trace_id}"} {
		_, err := ui.Handler(&ui.Config{TraceURL: bad})
		require.Error(t, err, bad)
	}
	_, err = ui.Handler(&ui.Config{TraceURL: `http://localhost:3000/explore?left={"datasource":"tempo","queries":[{"query":"{trace_id}"}]}`})
	require.NoError(t, err, "the Grafana+Tempo example of docs/api.md")
	h, err = ui.Handler(nil)
	require.NoError(t, err)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/ui/config.json", nil))
	require.JSONEq(t, `{"trace_url": ""}`, rec.Body.String())
	require.True(t, ui.Match(httptest.NewRequest("GET", "/ui", nil)))
	require.False(t, ui.Match(httptest.NewRequest("GET", "/uix", nil)))
}
