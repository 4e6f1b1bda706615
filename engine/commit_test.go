package engine_test

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/builtin"
	"github.com/pyoco/pyoco/engine/memstore"
)

// batchStore is a memory store that is an [engine.BatchWriter]: it records
// the size of every batch and, when hold is set, keeps each batch waiting
// for a value from hold (or its closing).
type batchStore struct {
	*memstore.Store
	hold chan struct{}

	mu    sync.Mutex
	sizes []int
	kinds map[string]int
}

func (s *batchStore) WriteBatch(ctx context.Context, ops []*engine.WriteOp) {
	s.mu.Lock()
	s.sizes = append(s.sizes, len(ops))
	for _, op := range ops {
		switch {
		case op.Start != nil:
			s.kinds["start"]++
		case op.Tasks != nil:
			s.kinds["tasks"]++
		case op.Finish != nil:
			s.kinds["finish"]++
		}
	}
	hold := s.hold
	s.mu.Unlock()
	if hold != nil {
		<-hold
	}
	for _, op := range ops {
		switch {
		case op.Start != nil:
			op.Run, op.Err = s.RunStart(ctx, op.Start)
		case op.Tasks != nil:
			op.Err = s.TaskUpdateMany(ctx, op.Tasks)
		case op.Finish != nil:
			op.Run, op.Err = s.RunFinish(ctx, op.Finish)
		}
	}
}

func (s *batchStore) batches() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.sizes...)
}

func setupBatchStore(t *testing.T, hold chan struct{}) (*batchStore, *engine.Engine, *engine.Flow) {
	t.Helper()
	st := &batchStore{Store: memstore.New(), hold: hold, kinds: map[string]int{}}
	reg := engine.NewRegistry()
	require.NoError(t, builtin.Register(reg))
	eng, err := engine.New(st, reg, nil)
	require.NoError(t, err)
	f, err := engine.LoadFlow("b.yaml", []byte("version: 1\nflow: {name: one}\ntasks:\n  a: {use: noop}\n"), reg)
	require.NoError(t, err)
	return st, eng, f
}

// TestGroupCommitLoneRunNotDelayed: on an idle engine every write of a run
// goes at once, alone (batches of one), and no time passes for it (fake
// clock: any timer in the committer would show).
func TestGroupCommitLoneRunNotDelayed(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		st, eng, f := setupBatchStore(t, nil)
		run, err := eng.Submit(ctx, &engine.SubmitParams{Flow: f})
		require.NoError(t, err)
		start := time.Now()
		final, err := eng.Execute(ctx, &engine.ExecuteParams{RunID: run.ID})
		require.NoError(t, err)
		require.Equal(t, engine.RunCompleted, final.Status)
		require.Zero(t, time.Since(start), "no wait on the way")
		require.Equal(t, []int{1, 1, 1}, st.batches(), "start, task start, finish: each alone")
	})
}

// TestGroupCommitSharesRoundTrips: writes that find the batches in flight
// (two) busy wait for one of them and then go together, at most 64 in one
// batch; every run still completes with every write applied.
func TestGroupCommitSharesRoundTrips(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		runs int
	}{
		{"the waiting starts go in one batch", 10},
		{"a batch is bounded", 70},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				ctx := context.Background()
				hold := make(chan struct{})
				st, eng, f := setupBatchStore(t, hold)
				ids := make([]string, tt.runs)
				for i := range ids {
					run, err := eng.Submit(ctx, &engine.SubmitParams{Flow: f})
					require.NoError(t, err)
					ids[i] = run.ID
				}
				var wg sync.WaitGroup
				for _, id := range ids {
					wg.Go(func() {
						final, err := eng.Execute(ctx, &engine.ExecuteParams{RunID: id})
						if err != nil || final.Status != engine.RunCompleted {
							t.Errorf("run %s: %v", id, err)
						}
					})
				}
				synctest.Wait() // two batches held, every other start waiting
				require.Equal(t, []int{1, 1}, st.batches())
				hold <- struct{}{} // one returns: its leader hands the lead on
				synctest.Wait()
				sizes := st.batches()
				require.Len(t, sizes, 3)
				// Every waiting start (and maybe the released run's task
				// start, queued meanwhile), up to the bound.
				require.GreaterOrEqual(t, sizes[2], min(tt.runs-2, 64))
				close(hold)
				wg.Wait()

				sizes = st.batches()
				total := 0
				for _, n := range sizes {
					require.LessOrEqual(t, n, 64)
					total += n
				}
				require.Equal(t, 3*tt.runs, total, "one start, one task write, one finish per run")
				require.Equal(t, map[string]int{"start": tt.runs, "tasks": tt.runs, "finish": tt.runs}, st.kinds)
				for _, id := range ids {
					r, err := st.RunGet(ctx, id)
					require.NoError(t, err)
					require.Equal(t, engine.RunCompleted, r.Status)
					require.Equal(t, engine.TaskSucceeded, r.Tasks["a"].Status)
				}
			})
		})
	}
}
