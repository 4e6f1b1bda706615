package worker_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/internal/redistest"
	"github.com/pyoco/pyoco/redisstore"
	"github.com/pyoco/pyoco/worker"
)

// lockedBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// beatCounter is the Redis store with its heart-beats counted.
type beatCounter struct {
	*redisstore.Store
	beats atomic.Int64
}

func (s *beatCounter) QueueHeartbeatLost(ctx context.Context, workerID string, leases []*engine.Lease) ([]*engine.Lease, error) {
	s.beats.Add(1)
	return s.Store.QueueHeartbeatLost(ctx, workerID, leases)
}

// TestRedisFinishDuringHeartbeatNoWarning: a single worker's run finishes
// (the store acknowledges its queue entry as it finishes it) and a
// heartbeat runs before the worker lets the lease go. The heartbeat finds
// the entry gone; the worker must not log the WARN "run taken over by
// another worker" for it: no other worker exists.
func TestRedisFinishDuringHeartbeatNoWarning(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c := redistest.Client(t)
	ns := redistest.Namespace(t, c)
	store, err := redisstore.New(c, &redisstore.Config{Namespace: ns})
	require.NoError(t, err)
	q := &beatCounter{Store: store}
	b := setup(t)

	// Once the run is finished (stored, entry acknowledged), hold the
	// execution until two more heart-beats began: the first of them
	// reported the lease lost and its handling ended before the second.
	observed := make(chan struct{})
	eng, err := engine.New(store, b.reg, &engine.Config{WorkerID: "solo", Observer: func(p engine.Progress) {
		if p.Kind != engine.ProgressRunFinished {
			return
		}
		defer close(observed)
		from := q.beats.Load()
		for q.beats.Load() < from+2 && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
	}})
	require.NoError(t, err)
	var logs lockedBuffer
	w, err := worker.New(eng, q, &worker.Config{ID: "solo", Concurrency: 1, Lease: time.Minute, HeartbeatInterval: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	require.NoError(t, err)
	require.NoError(t, w.Start(ctx))
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, w.Stop(sctx))
	}()

	f, err := engine.LoadFlow("n.yaml", []byte("version: 1\nflow: {name: quick}\ntasks:\n  a: {use: test/noop}\n"), b.reg)
	require.NoError(t, err)
	r, err := eng.Submit(ctx, &engine.SubmitParams{Flow: f})
	require.NoError(t, err)
	<-observed
	require.Eventually(t, func() bool { return len(w.Running()) == 0 }, 30*time.Second, 10*time.Millisecond)
	got, err := store.RunGet(ctx, r.ID)
	require.NoError(t, err)
	require.Equal(t, engine.RunCompleted, got.Status)
	require.Contains(t, logs.String(), "lease gone after the run ended here", "the heartbeat did find the lease gone")
	require.NotContains(t, logs.String(), "taken over", "a run that finished here was not taken over")
	// No other warning either, but for a heart-beat that ran past its
	// deadline (the interval, 20 ms here): a loaded machine causes those,
	// and they are not about the lease.
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "level=WARN") && !strings.Contains(line, "context deadline exceeded") {
			t.Errorf("unexpected warning: %s", line)
		}
	}
}
