package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/api"
	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/builtin"
	"github.com/pyoco/pyoco/engine/memstore"
)

// bare serves api.New over store with no worker and no flow directory:
// runs and log entries are made through the store directly.
func bare(t *testing.T, store engine.Store, edit ...func(*api.Config)) *bundle {
	t.Helper()
	reg := engine.NewRegistry()
	require.NoError(t, builtin.Register(reg))
	eng, err := engine.New(store, reg, &engine.Config{WorkerID: "test-worker"})
	require.NoError(t, err)
	cfg := &api.Config{LogPollInterval: 10 * time.Millisecond, HeartbeatInterval: 100 * time.Millisecond}
	for _, e := range edit {
		e(cfg)
	}
	srv, err := api.New(eng, cfg)
	require.NoError(t, err)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
		_ = srv.Close()
	})
	client := ts.Client()
	t.Cleanup(client.CloseIdleConnections)
	return &bundle{t: t, url: ts.URL, client: client, srv: srv}
}

// pendingRun creates a PENDING run with n log entries (seq 1..n).
func pendingRun(t *testing.T, st engine.Store, n int) string {
	t.Helper()
	ctx := context.Background()
	r := &engine.Run{ID: engine.NewRunID(), FlowName: "f", Status: engine.RunPending, CreatedAt: time.Now(),
		Tasks: map[string]*engine.TaskState{"a": {Name: "a", Use: "noop", Status: engine.TaskPending}}}
	require.NoError(t, st.RunCreate(ctx, r))
	appendLogs(t, st, r.ID, n)
	return r.ID
}

func appendLogs(t *testing.T, st engine.Store, runID string, n int) {
	t.Helper()
	if n == 0 {
		return
	}
	es := make([]engine.LogEntry, n)
	for i := range es {
		es[i] = engine.LogEntry{Task: "a", Stream: engine.StreamStdout, Text: fmt.Sprintf("line %d", i), Timestamp: time.Now()}
	}
	require.NoError(t, st.LogAppend(context.Background(), runID, es))
}

func seqsOf(t *testing.T, a answer) ([]int64, int64) {
	t.Helper()
	require.Equal(t, http.StatusOK, a.status, "%s", a.body)
	require.Equal(t, "application/json", a.header.Get("Content-Type"))
	var doc struct {
		RunID     string `json:"run_id"`
		RunStatus string `json:"run_status"`
		Logs      []struct {
			Seq int64 `json:"seq"`
		} `json:"logs"`
		NextAfter *int64 `json:"next_after"`
	}
	require.NoError(t, json.Unmarshal(a.body, &doc), "%s", a.body)
	require.NotEmpty(t, doc.RunID)
	require.NotEmpty(t, doc.RunStatus)
	require.NotNil(t, doc.Logs)
	require.NotNil(t, doc.NextAfter)
	var out []int64
	for _, l := range doc.Logs {
		out = append(out, l.Seq)
	}
	return out, *doc.NextAfter
}

func seqRange(from, to int64) []int64 {
	var out []int64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

// TestLogsPaging: GET /runs/{id}/logs answers at most limit entries (1000
// by default); clients continue with after=next_after.
func TestLogsPaging(t *testing.T) {
	t.Parallel()
	st := memstore.New()
	b := bare(t, st)
	id := pendingRun(t, st, 2500)
	path := "/runs/" + id + "/logs"

	var all []int64
	after := int64(0)
	pages := 0
	for {
		got, next := seqsOf(t, b.do("GET", path+"?after="+strconv.FormatInt(after, 10), nil))
		pages++
		require.LessOrEqual(t, len(got), api.DefaultLogsLimit)
		all = append(all, got...)
		if len(got) < api.DefaultLogsLimit {
			require.Equal(t, after, next-int64(len(got)))
			break
		}
		require.Equal(t, got[len(got)-1], next)
		after = next
	}
	require.Equal(t, 3, pages)
	require.Equal(t, seqRange(1, 2500), all)

	got, next := seqsOf(t, b.do("GET", path+"?limit=7", nil))
	require.Equal(t, seqRange(1, 7), got)
	require.Equal(t, int64(7), next)
	got, _ = seqsOf(t, b.do("GET", path+"?limit=10000", nil))
	require.Len(t, got, 2500)
	// tail keeps its meaning: the window begins at the tail-th last entry.
	got, next = seqsOf(t, b.do("GET", path+"?tail=25&limit=10", nil))
	require.Equal(t, seqRange(2476, 2485), got)
	got, _ = seqsOf(t, b.do("GET", path+"?after="+strconv.FormatInt(next, 10)+"&limit=100", nil))
	require.Equal(t, seqRange(2486, 2500), got)
	got, next = seqsOf(t, b.do("GET", path+"?tail=2000", nil)) // the first page of the last 2000
	require.Equal(t, seqRange(501, 1500), got)
	require.Equal(t, int64(1500), next)
	// An empty page keeps next_after.
	got, next = seqsOf(t, b.do("GET", path+"?after=2500", nil))
	require.Empty(t, got)
	require.Equal(t, int64(2500), next)

	for _, q := range []string{"limit=0", "limit=10001", "limit=x", "limit=", "limit=1&limit=2", "limit=-1"} {
		requireError(t, b.do("GET", path+"?"+q, nil), http.StatusBadRequest, api.CodeBadRequest)
		require.Equal(t, "limit", b.do("GET", path+"?"+q, nil).json(t)["error"].(map[string]any)["param"], q)
	}
}

// TestLogsFollowPaging: a followed stream reads limit entries at a time,
// sends every entry once and in order, and ends only once the run is
// finished and a page was not full. A resume after the end answers 204.
func TestLogsFollowPaging(t *testing.T) {
	t.Parallel()
	st := memstore.New()
	b := bare(t, st)
	id := pendingRun(t, st, 150)
	s := b.follow("/runs/" + id + "/logs?follow=true&limit=40")
	want := int64(1)
	readUpTo := func(last int64) {
		t.Helper()
		for want <= last {
			ev, ok := s.next(t)
			require.True(t, ok)
			require.Empty(t, ev.event, "%+v", ev)
			require.Equal(t, strconv.FormatInt(want, 10), ev.id)
			want++
		}
	}
	readUpTo(150)
	select {
	case ev := <-s.events:
		t.Fatalf("stream sent %+v while the run is pending with nothing new", ev)
	case <-time.After(100 * time.Millisecond):
	}
	appendLogs(t, st, id, 95)
	require.Equal(t, http.StatusAccepted, b.do("POST", "/runs/"+id+"/cancel", nil).status)
	readUpTo(245)
	ev, ok := s.next(t)
	require.True(t, ok)
	require.Equal(t, "end", ev.event)
	require.Equal(t, "245", ev.id, "the end event's id is the last seq")
	require.JSONEq(t, fmt.Sprintf(`{"run_id":%q,"run_status":"CANCELLED","next_after":245}`, id), ev.data)
	_, ok = s.next(t)
	require.False(t, ok, "stream must close after end")

	// A finished run followed from the start: every page, then end.
	s = b.follow("/runs/" + id + "/logs?follow=true&limit=100")
	want = 1
	readUpTo(245)
	ev, _ = s.next(t)
	require.Equal(t, "end", ev.event)

	// EventSource reconnects after end with Last-Event-ID: nothing is left.
	for _, last := range []string{"245", "300"} {
		a := b.do("GET", "/runs/"+id+"/logs?follow=true", nil, "Last-Event-ID", last)
		require.Equal(t, http.StatusNoContent, a.status, "%s", a.body)
		require.Empty(t, a.body)
	}
	// A resume with something left: those entries, then end.
	s = b.follow("/runs/"+id+"/logs?follow=true&limit=3", "Last-Event-ID", "240")
	want = 241
	readUpTo(245)
	ev, _ = s.next(t)
	require.Equal(t, "end", ev.event)

	// A finished run without entries: end carries id 0, and the resume 204.
	empty := pendingRun(t, st, 0)
	require.Equal(t, http.StatusAccepted, b.do("POST", "/runs/"+empty+"/cancel", nil).status)
	s = b.follow("/runs/" + empty + "/logs?follow=true")
	ev, _ = s.next(t)
	require.Equal(t, "end", ev.event)
	require.Equal(t, "0", ev.id)
	require.Equal(t, http.StatusNoContent, b.do("GET", "/runs/"+empty+"/logs?follow=true", nil, "Last-Event-ID", "0").status)
	// Without Last-Event-ID a finished run is still streamed (then end).
	require.Equal(t, http.StatusOK, b.do("GET", "/runs/"+empty+"/logs?follow=true", nil).status)
}

// failingStore fails the next fails RunCreate calls with ErrUnavailable.
type failingStore struct {
	engine.Store
	fails atomic.Int32
}

func (f *failingStore) RunCreate(ctx context.Context, r *engine.Run) error {
	if f.fails.Add(-1) >= 0 {
		return fmt.Errorf("injected store failure: %w", engine.ErrUnavailable)
	}
	return f.Store.RunCreate(ctx, r)
}

// TestIdempotencyFailedSubmit: a submit whose store write fails does not
// lock its Idempotency-Key: a retry creates the run (201), the next retry
// replays it (200); concurrent retries agree on one run.
func TestIdempotencyFailedSubmit(t *testing.T) {
	t.Parallel()
	for name, mk := range map[string]storeFactory{"memstore": memStore, "redisstore": redisStore} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			base := mk(t)
			fs := &failingStore{Store: base}
			b := bare(t, fs, func(c *api.Config) {
				if is, ok := base.(engine.IdempotencyStore); ok {
					c.Idempotency = is // the store's keys, as a deployment on it uses
				}
			})
			body := map[string]any{"flow_yaml": "version: 1\nflow: {name: x}\ntasks:\n  a: {use: noop}\n"}

			fs.fails.Store(2)
			for range 2 {
				requireError(t, b.do("POST", "/runs", body, "Idempotency-Key", "order-42"), http.StatusServiceUnavailable, api.CodeUnavailable)
			}
			a := b.do("POST", "/runs", body, "Idempotency-Key", "order-42")
			require.Equal(t, http.StatusCreated, a.status, "%s", a.body)
			id := a.json(t)["run_id"].(string)
			a = b.do("POST", "/runs", body, "Idempotency-Key", "order-42")
			require.Equal(t, http.StatusOK, a.status, "%s", a.body)
			require.Equal(t, id, a.json(t)["run_id"])
			require.Equal(t, http.StatusOK, b.do("GET", "/runs/"+id, nil).status)

			// One failure, then concurrent retries: one run, created once.
			fs.fails.Store(1)
			requireError(t, b.do("POST", "/runs", body, "Idempotency-Key", "order-43"), http.StatusServiceUnavailable, api.CodeUnavailable)
			var wg sync.WaitGroup
			answers := make([]answer, 6)
			for i := range answers {
				wg.Go(func() { answers[i] = b.do("POST", "/runs", body, "Idempotency-Key", "order-43") })
			}
			wg.Wait()
			created, ids := 0, map[string]bool{}
			for _, a := range answers {
				require.Contains(t, []int{http.StatusCreated, http.StatusOK}, a.status, "%s", a.body)
				if a.status == http.StatusCreated {
					created++
				}
				ids[a.json(t)["run_id"].(string)] = true
			}
			require.Equal(t, 1, created)
			require.Len(t, ids, 1)
		})
	}
}

// idemMap is an engine.IdempotencyStore the test can bind keys in, as
// another API server sharing it would.
type idemMap struct {
	mu sync.Mutex
	m  map[string]string
}

func (m *idemMap) IdempotencyGetOrSet(_ context.Context, key, runID string, _ time.Duration) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.m[key]; ok {
		return v, nil
	}
	m.m[key] = runID
	return "", nil
}

func (m *idemMap) IdempotencyRelease(_ context.Context, key, runID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m[key] == runID {
		delete(m.m, key)
	}
	return nil
}

// TestIdempotencyStaleBinding: a key bound (by another server) to a run
// that never appeared is taken as a failed request once the run id is old,
// and as a request in progress (409) while it is new.
func TestIdempotencyStaleBinding(t *testing.T) {
	t.Parallel()
	im := &idemMap{m: map[string]string{}}
	b := bare(t, memstore.New(), func(c *api.Config) { c.Idempotency = im })
	body := map[string]any{"flow_yaml": "version: 1\nflow: {name: x}\ntasks:\n  a: {use: noop}\n"}

	// A UUIDv7 from a minute ago.
	old := engine.NewRunID()
	ms := fmt.Sprintf("%012x", time.Now().Add(-time.Minute).UnixMilli())
	old = ms[:8] + "-" + ms[8:] + old[13:]
	im.m["k-old"] = old
	a := b.do("POST", "/runs", body, "Idempotency-Key", "k-old")
	require.Equal(t, http.StatusCreated, a.status, "%s", a.body)
	require.NotEqual(t, old, a.json(t)["run_id"])
	a2 := b.do("POST", "/runs", body, "Idempotency-Key", "k-old")
	require.Equal(t, http.StatusOK, a2.status, "%s", a2.body)
	require.Equal(t, a.json(t)["run_id"], a2.json(t)["run_id"])

	// A fresh binding whose request may still be submitting elsewhere.
	im.m["k-new"] = engine.NewRunID()
	a = b.do("POST", "/runs", body, "Idempotency-Key", "k-new")
	requireError(t, a, http.StatusConflict, api.CodeConflict)
}
