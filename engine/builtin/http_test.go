package builtin_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// seenRequest is what the test server received.
type seenRequest struct {
	Method string
	Host   string
	Header http.Header
	Body   string
}

// newServer starts a loopback server that records each request on the
// returned channel and then calls respond.
func newServer(t *testing.T, respond http.HandlerFunc) (*httptest.Server, <-chan seenRequest) {
	t.Helper()
	seen := make(chan seenRequest, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		seen <- seenRequest{Method: r.Method, Host: r.Host, Header: r.Header.Clone(), Body: string(body)}
		respond(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, seen
}

func reply(status int, contentType, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.Header().Set("X-Reply", "first")
		w.Header().Add("X-Reply", "second")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

func TestHTTP(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name     string
		inputs   map[string]any // "url" is set to the test server's
		respond  http.HandlerFunc
		check    func(t *testing.T, req seenRequest)
		wantBody any    // the output's body
		wantCode int    // the output's status
		wantErr  string // "{url}" stands for the server's URL
	}{
		{
			name:    "GET by default with headers",
			inputs:  map[string]any{"headers": map[string]any{"X-Test": "yes", "Accept": "text/plain"}},
			respond: reply(200, "text/plain", "hi"),
			check: func(t *testing.T, req seenRequest) {
				require.Equal(t, http.MethodGet, req.Method)
				require.Equal(t, "yes", req.Header.Get("X-Test"))
				require.Equal(t, "text/plain", req.Header.Get("Accept"))
				require.Empty(t, req.Body)
			},
			wantBody: "hi", wantCode: 200,
		},
		{
			name:    "Host header",
			inputs:  map[string]any{"headers": map[string]any{"host": "example.test"}},
			respond: reply(200, "", ""),
			check: func(t *testing.T, req seenRequest) {
				require.Equal(t, "example.test", req.Host)
			},
			wantBody: "", wantCode: 200,
		},
		{
			name:    "POST text body",
			inputs:  map[string]any{"method": "post", "body": "raw text", "headers": map[string]any{"Content-Type": "text/csv"}},
			respond: reply(201, "", ""),
			check: func(t *testing.T, req seenRequest) {
				require.Equal(t, http.MethodPost, req.Method)
				require.Equal(t, "raw text", req.Body)
				require.Equal(t, "text/csv", req.Header.Get("Content-Type"))
			},
			wantBody: "", wantCode: 201,
		},
		{
			name:    "PUT JSON body",
			inputs:  map[string]any{"method": "PUT", "body": map[string]any{"a": 12345678901234567, "b": []any{true, nil, "s"}}},
			respond: reply(204, "", ""),
			check: func(t *testing.T, req seenRequest) {
				require.Equal(t, http.MethodPut, req.Method)
				require.Equal(t, "application/json", req.Header.Get("Content-Type"))
				require.JSONEq(t, `{"a": 12345678901234567, "b": [true, null, "s"]}`, req.Body)
			},
			wantBody: "", wantCode: 204,
		},
		{
			name:     "JSON response parsed",
			respond:  reply(200, "application/json; charset=utf-8", `{"ok": true, "n": 2, "list": ["x"]}`),
			wantBody: map[string]any{"ok": true, "n": float64(2), "list": []any{"x"}}, wantCode: 200,
		},
		{
			name:     "problem+json response parsed",
			respond:  reply(200, "application/problem+json", `{"title": "t"}`),
			wantBody: map[string]any{"title": "t"}, wantCode: 200,
		},
		{
			name:     "invalid JSON response kept as text",
			respond:  reply(200, "application/json", `{"ok":`),
			wantBody: `{"ok":`, wantCode: 200,
		},
		{
			name:     "large body capped",
			respond:  reply(200, "text/plain", strings.Repeat("b", 70000)),
			wantBody: strings.Repeat("b", 64<<10) + "\n[output truncated]", wantCode: 200,
		},
		{
			name:    "non-2xx fails",
			inputs:  map[string]any{"method": "DELETE"},
			respond: reply(500, "text/plain", "broken"),
			wantErr: "HTTP 500 Internal Server Error from {url}",
		},
		{
			name:    "3xx fails",
			respond: reply(304, "", ""),
			wantErr: "HTTP 304 Not Modified from {url}",
		},
		{
			name:     "allow_status",
			inputs:   map[string]any{"allow_status": []any{404, 410}},
			respond:  reply(404, "application/json", `{"error": "nope"}`),
			wantBody: map[string]any{"error": "nope"}, wantCode: 404,
		},
		{
			name:    "allow_status lists others",
			inputs:  map[string]any{"allow_status": []any{410}},
			respond: reply(404, "text/plain", "nope"),
			wantErr: "HTTP 404 Not Found from {url}",
		},
		{
			name:   "timeout input",
			inputs: map[string]any{"timeout": "50ms"},
			respond: func(_ http.ResponseWriter, r *http.Request) {
				<-r.Context().Done() // until the client gives up
			},
			wantErr: "http GET {url}: http request timed out after 50ms",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			srv, seen := newServer(t, tt.respond)
			inputs := map[string]any{"url": srv.URL + "/path?q=1"}
			for k, v := range tt.inputs {
				inputs[k] = v
			}

			out, err := b.run(t, t.Context(), "http", inputs)

			req := <-seen
			require.Equal(t, b.tc.TraceParent, req.Header.Get("Traceparent"))
			if tt.check != nil {
				tt.check(t, req)
			}
			if tt.wantErr != "" {
				require.EqualError(t, err, strings.ReplaceAll(tt.wantErr, "{url}", srv.URL+"/path?q=1"))
				require.Nil(t, out)
				return
			}
			require.NoError(t, err)
			m, ok := out.(map[string]any)
			require.True(t, ok, "output %T", out)
			require.Equal(t, tt.wantCode, m["status"])
			require.Equal(t, tt.wantBody, m["body"])
			headers, ok := m["headers"].(map[string]string)
			require.True(t, ok, "headers %T", m["headers"])
			require.Equal(t, "first", headers["X-Reply"])
			_, err = json.Marshal(out)
			require.NoError(t, err)
		})
	}
}

// TestHTTPCancel checks that cancelling the task ends a request in flight
// with an error wrapping the cancellation cause.
func TestHTTPCancel(t *testing.T) {
	t.Parallel()
	b := setup(t)
	srv, seen := newServer(t, func(_ http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})

	ctx, cancel := context.WithCancelCause(t.Context())
	defer cancel(nil)
	done := b.start(t, ctx, "http", map[string]any{"url": srv.URL})
	<-seen
	cancel(errTestCancel)
	r := await(t, done)
	require.Nil(t, r.out)
	require.ErrorIs(t, r.err, errTestCancel)
}

// TestHTTPNoTraceParent checks that no traceparent is made up when tracing
// is off.
func TestHTTPNoTraceParent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.tc.TraceParent = ""
	srv, seen := newServer(t, reply(200, "", "ok"))
	_, err := b.run(t, t.Context(), "http", map[string]any{"url": srv.URL})
	require.NoError(t, err)
	require.Empty(t, (<-seen).Header.Get("Traceparent"))
}

func TestHTTPConnectionRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	_, err := b.run(t, t.Context(), "http", map[string]any{"url": url})
	require.ErrorContains(t, err, "http GET "+url+": ")
	require.ErrorContains(t, err, "connection refused")
}
