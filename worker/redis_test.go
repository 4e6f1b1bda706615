package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/internal/redistest"
	"github.com/pyoco/pyoco/redisstore"
	"github.com/pyoco/pyoco/worker"
)

// TestRedisSettlesLeases drains runs from a Redis queue with two workers
// that take several runs at once: every run completes, and the store's
// scripts acknowledged every delivery (nothing pending, the stream empty)
// without the workers' own acks.
func TestRedisSettlesLeases(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c := redistest.Client(t)
	ns := redistest.Namespace(t, c)
	store, err := redisstore.New(c, &redisstore.Config{Namespace: ns})
	require.NoError(t, err)
	b := setup(t)
	ids := submitTwoTaskRuns(t, b, store, 60)
	var ws []*worker.Worker
	for _, id := range []string{"w1", "w2"} {
		eng, err := engine.New(store, b.reg, &engine.Config{WorkerID: id})
		require.NoError(t, err)
		w, err := worker.New(eng, store, &worker.Config{ID: id, Concurrency: 4})
		require.NoError(t, err)
		require.NoError(t, w.Start(ctx))
		ws = append(ws, w)
	}
	for _, id := range ids {
		require.Eventually(t, func() bool {
			r, err := store.RunGet(ctx, id)
			require.NoError(t, err)
			return r.Status == engine.RunCompleted
		}, 30*time.Second, 10*time.Millisecond, id)
		require.Equal(t, 1, b.calledTimes(id, "a"))
		require.Equal(t, 1, b.calledTimes(id, "b"))
	}
	for _, w := range ws {
		require.NoError(t, w.Stop(ctx))
	}
	queue := "{" + ns + "}:queue"
	p, err := c.XPending(ctx, queue, "workers").Result()
	require.NoError(t, err)
	require.Zero(t, p.Count, "every delivery acknowledged")
	n, err := c.XLen(ctx, queue).Result()
	require.NoError(t, err)
	require.Zero(t, n, "every entry deleted")
}

// TestRedisReclaimNotStarvedByBacklog: on Redis, a dead consumer's runs are
// reclaimed and completed while a backlog still keeps every slot busy, not
// after it drained.
func TestRedisReclaimNotStarvedByBacklog(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c := redistest.Client(t)
	ns := redistest.Namespace(t, c)
	store, err := redisstore.New(c, &redisstore.Config{Namespace: ns})
	require.NoError(t, err)
	b := setup(t)
	f, err := engine.LoadFlow("s.yaml", []byte("version: 1\nflow:\n  name: sleepy\n  graph: s\ntasks:\n  s: {use: test/sleep}\n"), b.reg)
	require.NoError(t, err)
	sub, err := engine.New(store, b.reg, &engine.Config{WorkerID: "submitter"})
	require.NoError(t, err)
	var victims, backlog []string
	for range 2 {
		r, err := sub.Submit(ctx, &engine.SubmitParams{Flow: f})
		require.NoError(t, err)
		victims = append(victims, r.ID)
	}
	ls, err := store.QueuePopBatch(ctx, &engine.QueuePopParams{WorkerID: "dead", Block: time.Second}, 2)
	require.NoError(t, err)
	require.Len(t, ls, 2)
	// 400 runs of 50ms on 4 slots: at least 5s of work.
	for range 400 {
		r, err := sub.Submit(ctx, &engine.SubmitParams{Flow: f})
		require.NoError(t, err)
		backlog = append(backlog, r.ID)
	}
	eng, err := engine.New(store, b.reg, &engine.Config{WorkerID: "live"})
	require.NoError(t, err)
	w, err := worker.New(eng, store, &worker.Config{ID: "live", Concurrency: 4, Lease: 300 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, w.Start(ctx))
	defer func() { require.NoError(t, w.Stop(ctx)) }()
	completed := func(id string) bool {
		r, err := store.RunGet(ctx, id)
		require.NoError(t, err)
		return r.Status == engine.RunCompleted
	}
	require.Eventually(t, func() bool { return completed(victims[0]) && completed(victims[1]) }, time.Minute, 20*time.Millisecond)
	left := 0
	for _, id := range backlog {
		if !completed(id) {
			left++
		}
	}
	t.Logf("dead consumer's runs completed with %d of %d backlog runs left", left, len(backlog))
	require.Greater(t, left, len(backlog)/4, "reclaimed long before the backlog drained")
}

// TestRedisOwnerLost: a worker whose run another worker took over (its
// lease reclaimed and the run started again elsewhere) learns it from its
// heartbeat, stops executing the run and neither acknowledges nor requeues
// the new owner's delivery.
func TestRedisOwnerLost(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c := redistest.Client(t)
	ns := redistest.Namespace(t, c)
	storeA, err := redisstore.New(c, &redisstore.Config{Namespace: ns})
	require.NoError(t, err)
	storeB, err := redisstore.New(c, &redisstore.Config{Namespace: ns})
	require.NoError(t, err)
	b := setup(t)
	f, err := engine.LoadFlow("w.yaml", []byte("version: 1\nflow:\n  name: waits\n  graph: a >> b\ntasks:\n  a: {use: test/noop}\n  b: {use: test/wait}\n"), b.reg)
	require.NoError(t, err)
	sub, err := engine.New(storeB, b.reg, &engine.Config{WorkerID: "submitter"})
	require.NoError(t, err)
	r, err := sub.Submit(ctx, &engine.SubmitParams{Flow: f})
	require.NoError(t, err)

	engA, err := engine.New(storeA, b.reg, &engine.Config{WorkerID: "A"})
	require.NoError(t, err)
	wA, err := worker.New(engA, storeA, &worker.Config{ID: "A", Concurrency: 2, Lease: time.Minute, HeartbeatInterval: 100 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, wA.Start(ctx))
	defer func() {
		close(b.release)
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		require.NoError(t, wA.Stop(sctx))
	}()
	require.Eventually(t, func() bool { return b.calledTimes(r.ID, "b") == 1 }, 30*time.Second, 10*time.Millisecond)

	// B takes the run over by force (min idle 0) and starts it.
	ls, err := storeB.QueueReclaim(ctx, &engine.QueueReclaimParams{WorkerID: "B", MinIdle: 0, Count: 10})
	require.NoError(t, err)
	require.Len(t, ls, 1)
	started, err := storeB.RunStart(ctx, &engine.RunStartParams{RunID: r.ID, WorkerID: "B", At: time.Now().UTC(), Lease: ls[0]})
	require.NoError(t, err)
	require.Equal(t, 2, started.Attempt)

	require.Eventually(t, func() bool { return len(wA.Running()) == 0 }, 30*time.Second, 10*time.Millisecond, "A stops the run")
	got, err := storeB.RunGet(ctx, r.ID)
	require.NoError(t, err)
	require.Equal(t, engine.RunRunning, got.Status, "not finished nor cancelled by A")
	require.Equal(t, "B", got.WorkerID)
	p, err := c.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: "{" + ns + "}:queue", Group: "workers", Start: "-", End: "+", Count: 10}).Result()
	require.NoError(t, err)
	require.Len(t, p, 1, "B's delivery neither acknowledged nor requeued by A")
	require.Equal(t, "B", p[0].Consumer)
	n, err := c.XLen(ctx, "{"+ns+"}:queue").Result()
	require.NoError(t, err)
	require.Equal(t, int64(1), n, "no second entry")
	require.Equal(t, 1, b.calledTimes(r.ID, "a"))
}

// submitTwoTaskRuns submits n runs of a two-task no-op chain to store and
// returns their IDs.
func submitTwoTaskRuns(t *testing.T, b *testBundle, store engine.Store, n int) []string {
	t.Helper()
	f, err := engine.LoadFlow("f.yaml", []byte(`version: 1
flow:
  name: two
  graph: a >> b
tasks:
  a: {use: test/noop}
  b: {use: test/noop}
`), b.reg)
	require.NoError(t, err)
	sub, err := engine.New(store, b.reg, &engine.Config{WorkerID: "submitter"})
	require.NoError(t, err)
	var ids []string
	for range n {
		r, err := sub.Submit(t.Context(), &engine.SubmitParams{Flow: f})
		require.NoError(t, err)
		ids = append(ids, r.ID)
	}
	return ids
}
