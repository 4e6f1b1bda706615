package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/api"
	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/memstore"
	"github.com/pyoco/pyoco/schedule"
)

// TestSchedulesEndpoint serves GET /schedules from a real schedule.Runner
// on a memory store, with a clock the test moves.
func TestSchedulesEndpoint(t *testing.T) {
	t.Parallel()
	src := `version: 1
flow:
  name: nightly
  schedule:
    - {name: often, every: 1m}
    - {cron: "30 2 * * *", timezone: Europe/Paris, catchup: all}
tasks: {a: {use: noop}}
`
	f, err := engine.LoadFlow("nightly.yaml", []byte(src), nil)
	require.NoError(t, err)
	store := memstore.New()
	eng, err := engine.New(store, engine.NewRegistry(), nil)
	require.NoError(t, err)

	t0 := time.Date(2026, 3, 1, 10, 0, 20, 0, time.UTC)
	var mu sync.Mutex
	now := t0
	var armed chan struct{} // when set, closed at the next read of the clock
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		if armed != nil {
			close(armed)
			armed = nil
		}
		return now
	}
	r, err := schedule.New(eng, []*engine.Flow{f}, &schedule.Config{NowFunc: clock, PollInterval: 5 * time.Millisecond})
	require.NoError(t, err)
	srv, err := api.New(eng, &api.Config{Schedules: r})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)

	get := func() (int, map[string]any) {
		t.Helper()
		resp, err := http.Get(hs.URL + "/schedules")
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
		var doc map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&doc))
		return resp.StatusCode, doc
	}
	code, doc := get()
	require.Equal(t, 200, code)
	require.Equal(t, map[string]any{"schedules": []any{
		map[string]any{"flow": "nightly", "name": "often", "spec": "every 1m0s", "timezone": nil, "catchup": "one",
			"tag": "schedule:often", "next_fire_time": "2026-03-01T10:01:00.000Z", "last_tick_time": nil,
			"last_run_id": nil, "last_run_time": nil},
		map[string]any{"flow": "nightly", "name": "1", "spec": "30 2 * * *", "timezone": "Europe/Paris", "catchup": "all",
			"tag": "schedule:1", "next_fire_time": "2026-03-02T01:30:00.000Z", "last_tick_time": nil,
			"last_run_id": nil, "last_run_time": nil},
	}}, doc)

	// The runner counts from the time it starts: move the clock only
	// once it has read it.
	started := make(chan struct{})
	mu.Lock()
	armed = started
	mu.Unlock()
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { require.NoError(t, r.Run(ctx)) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	<-started
	mu.Lock()
	now = t0.Add(50 * time.Second) // 10:01:10
	mu.Unlock()

	var often map[string]any
	require.Eventually(t, func() bool {
		_, doc := get()
		often = doc["schedules"].([]any)[0].(map[string]any)
		return often["last_run_id"] != nil
	}, 10*time.Second, 5*time.Millisecond)
	page, err := store.RunList(t.Context(), &engine.RunListParams{Tag: "schedule:often"})
	require.NoError(t, err)
	require.Len(t, page.Runs, 1)
	require.Equal(t, page.Runs[0].ID, often["last_run_id"])
	require.Equal(t, "2026-03-01T10:01:00.000Z", often["last_tick_time"])
	require.Equal(t, "2026-03-01T10:02:00.000Z", often["next_fire_time"])
	require.NotNil(t, often["last_run_time"])

	resp, err := http.Get(hs.URL + "/schedules?flow=x")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 400, resp.StatusCode, "no query parameters")
}

// TestSchedulesEndpointEmpty: without Config.Schedules the list is empty.
func TestSchedulesEndpointEmpty(t *testing.T) {
	t.Parallel()
	eng, err := engine.New(memstore.New(), engine.NewRegistry(), nil)
	require.NoError(t, err)
	srv, err := api.New(eng, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/schedules", nil))
	require.Equal(t, 200, rec.Code)
	require.JSONEq(t, `{"schedules": []}`, rec.Body.String())
}
