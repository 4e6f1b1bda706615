package cli

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/pyoco/pyoco/engine"
	"github.com/stretchr/testify/require"
)

// TestFollowLogsEndsOn204: a stream cut after the last entry, resumed with
// Last-Event-ID on a run that has finished meanwhile, gets 204 from the
// server; the client ends with the run's final status, not an error.
func TestFollowLogsEndsOn204(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/runs/r1/logs":
			if calls.Add(1) == 1 {
				require.Empty(t, r.Header.Get("Last-Event-ID"))
				w.Header().Set("Content-Type", "text/event-stream")
				fmt.Fprint(w, "id: 1\ndata: {\"seq\": 1, \"task\": \"a\", \"stream\": \"log\", \"text\": \"hi\"}\n\n")
				return // cut before the end event
			}
			if r.Header.Get("Last-Event-ID") != "1" {
				http.Error(w, "want Last-Event-ID 1", http.StatusBadRequest)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		case "/runs/r1":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"run_id": "r1", "flow_name": "f", "status": "COMPLETED"}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	c, err := newAPIClient(srv.URL, "")
	require.NoError(t, err)
	var texts []string
	st, err := c.followLogs(context.Background(), "r1", url.Values{}, func(_ []byte, e logEntry) { texts = append(texts, e.Text) })
	require.NoError(t, err)
	require.Equal(t, engine.RunCompleted, st)
	require.Equal(t, []string{"hi"}, texts)
	require.Equal(t, int32(2), calls.Load())
}
