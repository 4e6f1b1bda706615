package worker_test

import (
	"testing"
	"time"

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
	for range 60 {
		r, err := sub.Submit(ctx, &engine.SubmitParams{Flow: f})
		require.NoError(t, err)
		ids = append(ids, r.ID)
	}
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
