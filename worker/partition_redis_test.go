package worker_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/internal/redistest"
	"github.com/pyoco/pyoco/redisstore"
	"github.com/pyoco/pyoco/worker"
)

// TestRedisClusterPartitions: on a 3-master Cluster with a namespace of
// six partitions, two workers drain runs spread over every partition,
// including the runs a dead consumer held (reclaimed per partition), each
// task once; afterwards every partition's queue is empty with nothing
// pending, and the queued gauge is back to zero.
func TestRedisClusterPartitions(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c := redistest.Cluster(t)
	ns := redistest.Namespace(t, c)
	store, err := redisstore.New(c, &redisstore.Config{Namespace: ns, Partitions: 6})
	require.NoError(t, err)
	b := setup(t)
	ids := submitTwoTaskRuns(t, b, store, 40)
	dead, err := store.QueuePopBatch(ctx, &engine.QueuePopParams{WorkerID: "dead", Block: time.Second}, 3)
	require.NoError(t, err)
	require.Len(t, dead, 3)
	depth, err := store.QueueDepth(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int64{"two": 40}, depth, "popped runs stay PENDING until started")

	var ws []*worker.Worker
	for _, id := range []string{"w1", "w2"} {
		eng, err := engine.New(store, b.reg, &engine.Config{WorkerID: id})
		require.NoError(t, err)
		w, err := worker.New(eng, store, &worker.Config{ID: id, Concurrency: 4, Lease: 300 * time.Millisecond})
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
	for k := range 6 {
		queue := "{" + ns + ":p" + strconv.Itoa(k) + "}:queue"
		p, err := c.XPending(ctx, queue, "workers").Result()
		require.NoError(t, err)
		require.Zero(t, p.Count, "every delivery of %s acknowledged", queue)
		n, err := c.XLen(ctx, queue).Result()
		require.NoError(t, err)
		require.Zero(t, n, "every entry of %s deleted", queue)
	}
	depth, err = store.QueueDepth(ctx)
	require.NoError(t, err)
	require.Empty(t, depth)
}
