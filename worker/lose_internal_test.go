package worker

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/memstore"
)

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLoseLeaseAfterRunEnded: when the heartbeat finds a lease gone because
// the run ended here (its finish acknowledged the entry), the worker logs
// no "taken over" WARN; a lease lost while the run still executes here is
// a takeover: WARN, and the run is stopped (issue 16, defect 7).
func TestLoseLeaseAfterRunEnded(t *testing.T) {
	t.Parallel()
	store := memstore.New()
	eng, err := engine.New(store, engine.NewRegistry(), nil)
	require.NoError(t, err)
	var logs syncBuffer
	w, err := New(eng, store, &Config{ID: "w1", Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	require.NoError(t, err)

	ended := &engine.Lease{ID: "1-0", RunID: "run-ended"}
	running := &engine.Lease{ID: "2-0", RunID: "run-running"}
	var stopped error
	w.mu.Lock()
	w.held[ended.ID] = &holding{lease: ended, ended: true, stop: func(error) { t.Error("a run that ended here was stopped") }}
	w.held[running.ID] = &holding{lease: running, stop: func(err error) { stopped = err }}
	w.mu.Unlock()

	w.loseLeases(context.Background(), []*engine.Lease{ended})
	require.NotContains(t, logs.String(), "taken over")
	require.Contains(t, logs.String(), "lease gone after the run ended here")

	w.loseLeases(context.Background(), []*engine.Lease{running})
	require.Contains(t, logs.String(), "level=WARN msg=\"run taken over by another worker: stopping it here\" worker_id=w1 run_id=run-running")
	require.ErrorIs(t, stopped, errOwnerLost)
	w.mu.Lock()
	require.True(t, w.held[ended.ID].lost && w.held[running.ID].lost, "both leases are marked lost: never acked nor requeued again")
	w.mu.Unlock()
}
