package api_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/api"
)

// raw sends a request exactly as given (no redirect is followed, the path
// is not cleaned) and returns the answer. A nil length sends body chunked.
func (b *bundle) raw(method, path string, body io.Reader, chunked bool, token string) answer {
	b.t.Helper()
	req, err := http.NewRequest(method, b.url, body)
	require.NoError(b.t, err)
	req.URL.Path, req.URL.RawPath = path, ""
	if i := strings.IndexByte(path, '?'); i >= 0 {
		req.URL.Path, req.URL.RawQuery = path[:i], path[i+1:]
	}
	if chunked {
		req.ContentLength = -1
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := *b.client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	require.NoError(b.t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(b.t, err)
	return answer{status: resp.StatusCode, header: resp.Header, body: data}
}

// TestUncleanPaths: a path the mux would clean answers a JSON 404 after the
// bearer check, never the mux's HTML redirect (issue 16, defect 3).
func TestUncleanPaths(t *testing.T) {
	t.Parallel()
	b := setup(t, memStore, func(c *api.Config) { c.Token = "s3cret" })
	for _, p := range []string{"/runs/../metrics", "//runs", "/runs/./abc", "/x/../runs", "/x/../zzz", "/runs/abc/../../flows"} {
		t.Run(p, func(t *testing.T) {
			// Without the token every unclean path is a 401, whether or not
			// it would lead to a route: nothing can be enumerated.
			requireError(t, b.raw("GET", p, nil, false, ""), http.StatusUnauthorized, api.CodeUnauthorized)
			// With it, a JSON 404 naming the canonical path.
			a := b.raw("GET", p, nil, false, "s3cret")
			requireError(t, a, http.StatusNotFound, api.CodeNotFound)
			require.Contains(t, string(a.body), "not canonical")
		})
	}
	// Canonical paths still work, and the open ones stay open.
	require.Equal(t, http.StatusOK, b.raw("GET", "/flows", nil, false, "s3cret").status)
	require.Equal(t, http.StatusOK, b.raw("GET", "/healthz", nil, false, "").status)
}

// TestMalformedQuery: a query string url.ParseQuery refuses is a 400 on every
// route, not an answer with the defaults (issue 16, defect 5).
func TestMalformedQuery(t *testing.T) {
	t.Parallel()
	b := setup(t, memStore)
	id := b.submit(map[string]any{"flow_name": "hello"})
	b.wait(id)
	for _, p := range []string{
		"/runs?limit=%zz", "/runs?status=%", "/runs/" + id + "?x=%zz", "/runs/" + id + "/logs?limit=%zz",
		"/flows?%zz", "/tasks?a=%g1", "/webhooks/deliveries?status=%zz", "/plugins?%",
	} {
		t.Run(p, func(t *testing.T) {
			a := b.raw("GET", p, nil, false, "")
			requireError(t, a, http.StatusBadRequest, api.CodeBadRequest)
			require.Equal(t, "query", a.json(t)["error"].(map[string]any)["param"])
		})
	}
	require.Equal(t, http.StatusOK, b.raw("GET", "/runs?limit=5", nil, false, "").status)
}

// TestLargeBodyIs413: a body over the limit is 413 whatever it holds, with
// its length announced or chunked (SPEC §4; issue 16, defect 6).
func TestLargeBodyIs413(t *testing.T) {
	t.Parallel()
	b := setup(t, memStore)
	for _, c := range []struct {
		name    string
		size    int
		chunked bool
	}{
		{"2MiB non-JSON", 2 << 20, false},
		{"1.1MB non-JSON", 1_100_000, false},
		{"2MiB non-JSON chunked", 2 << 20, true},
		{"1.1MB non-JSON chunked", 1_100_000, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := bytes.Repeat([]byte("x"), c.size)
			var rd io.Reader = bytes.NewReader(body)
			if c.chunked {
				rd = io.MultiReader(rd) // hides the length: sent chunked
			}
			requireError(t, b.raw("POST", "/runs", rd, c.chunked, ""), http.StatusRequestEntityTooLarge, api.CodePayloadTooLarge)
		})
	}
	// A small non-JSON body is still a 400.
	requireError(t, b.raw("POST", "/runs", strings.NewReader("xxxx"), false, ""), http.StatusBadRequest, api.CodeBadRequest)
}
