package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
)

// RunSchedule runs the conformance suite of [engine.ScheduleStore] against
// the stores newStore returns (fresh and empty per subtest, as for [Run]);
// it skips when the store lacks the capability.
//
// It pins: a claim with the right Prev records the tick and creates the
// run (indexed by its tags, queued when the store is a [engine.Queue]) in
// one step; a claim with a stale Prev, a tick not after the last one, or a
// run ID that exists changes nothing and wraps ErrConflict; a skip (nil
// Run) moves LastTick only; ScheduleGet of an unclaimed schedule wraps
// ErrNotFound; and of many concurrent claims of one tick exactly one wins
// and exactly one run exists.
func RunSchedule(t *testing.T, newStore func(t *testing.T) engine.Store) {
	t.Helper()
	setup := func(t *testing.T) (*testBundle, engine.ScheduleStore) {
		t.Helper()
		b := &testBundle{store: newStore(t), ctx: t.Context(), now: time.Now().UTC().Truncate(time.Millisecond)}
		ss, ok := b.store.(engine.ScheduleStore)
		if !ok {
			t.Skip("store does not implement engine.ScheduleStore")
		}
		return b, ss
	}
	tick0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	tick1 := tick0.Add(time.Minute)
	tick2 := tick1.Add(time.Minute)

	t.Run("ClaimCreatesRun", func(t *testing.T) {
		t.Parallel()
		b, ss := setup(t)
		_, err := ss.ScheduleGet(b.ctx, "nightly", "0")
		require.ErrorIs(t, err, engine.ErrNotFound)

		r := NewTestRun("nightly", "a")
		r.Tags = []string{"schedule:0"}
		require.NoError(t, ss.ScheduleClaim(b.ctx, &engine.ScheduleClaimParams{Flow: "nightly", Name: "0", Tick: tick0, Run: r}))
		st, err := ss.ScheduleGet(b.ctx, "nightly", "0")
		require.NoError(t, err)
		require.Equal(t, "nightly", st.Flow)
		require.Equal(t, "0", st.Name)
		requireTimeEqual(t, tick0, st.LastTick)
		require.Equal(t, r.ID, st.LastRunID)
		requireTimeEqual(t, r.CreatedAt, st.LastRunAt)
		RequireRunEqual(t, r, getRun(t, b, r.ID))

		page, err := b.store.RunList(b.ctx, &engine.RunListParams{Tag: "schedule:0"})
		require.NoError(t, err)
		require.Equal(t, []string{r.ID}, runIDs(page.Runs))
		evs, err := b.store.EventList(b.ctx, &engine.EventListParams{})
		require.NoError(t, err)
		require.Len(t, evs, 1)
		require.Equal(t, engine.RunPending, evs[0].Status)
		if q, ok := b.store.(engine.Queue); ok {
			l, err := q.QueuePop(b.ctx, &engine.QueuePopParams{WorkerID: "w", Block: time.Second})
			require.NoError(t, err)
			require.NotNil(t, l)
			require.Equal(t, r.ID, l.RunID)
		}

		// Another schedule of the same flow, and the same name in another
		// flow, have their own state.
		_, err = ss.ScheduleGet(b.ctx, "nightly", "1")
		require.ErrorIs(t, err, engine.ErrNotFound)
		_, err = ss.ScheduleGet(b.ctx, "other", "0")
		require.ErrorIs(t, err, engine.ErrNotFound)
	})

	t.Run("StaleClaimConflicts", func(t *testing.T) {
		t.Parallel()
		b, ss := setup(t)
		r0 := NewTestRun("f", "a")
		require.NoError(t, ss.ScheduleClaim(b.ctx, &engine.ScheduleClaimParams{Flow: "f", Name: "s", Tick: tick0, Run: r0}))

		for name, p := range map[string]*engine.ScheduleClaimParams{
			"never claimed":   {Flow: "f", Name: "s", Tick: tick1},
			"wrong prev":      {Flow: "f", Name: "s", Tick: tick2, Prev: tick1},
			"same tick":       {Flow: "f", Name: "s", Tick: tick0, Prev: tick0},
			"tick before":     {Flow: "f", Name: "s", Tick: tick0.Add(-time.Minute), Prev: tick0},
			"run ID exists":   {Flow: "f", Name: "s", Tick: tick1, Prev: tick0, Run: r0},
			"skip with stale": {Flow: "f", Name: "s", Tick: tick1, Prev: tick1},
		} {
			p := *p
			if p.Run == nil && name != "skip with stale" {
				p.Run = NewTestRun("f", "a")
			}
			err := ss.ScheduleClaim(b.ctx, &p)
			require.ErrorIs(t, err, engine.ErrConflict, name)
			if p.Run != nil && p.Run != r0 {
				_, err := b.store.RunGet(b.ctx, p.Run.ID)
				require.ErrorIs(t, err, engine.ErrNotFound, "%s: no run on a refused claim", name)
			}
		}
		st, err := ss.ScheduleGet(b.ctx, "f", "s")
		require.NoError(t, err)
		requireTimeEqual(t, tick0, st.LastTick)
		require.Equal(t, r0.ID, st.LastRunID)
		page, err := b.store.RunList(b.ctx, &engine.RunListParams{})
		require.NoError(t, err)
		require.Len(t, page.Runs, 1)
	})

	t.Run("Skip", func(t *testing.T) {
		t.Parallel()
		b, ss := setup(t)
		// A first claim may be a skip too.
		require.NoError(t, ss.ScheduleClaim(b.ctx, &engine.ScheduleClaimParams{Flow: "f", Name: "s", Tick: tick0}))
		st, err := ss.ScheduleGet(b.ctx, "f", "s")
		require.NoError(t, err)
		requireTimeEqual(t, tick0, st.LastTick)
		require.Empty(t, st.LastRunID)
		require.True(t, st.LastRunAt.IsZero())

		r := NewTestRun("f", "a")
		require.NoError(t, ss.ScheduleClaim(b.ctx, &engine.ScheduleClaimParams{Flow: "f", Name: "s", Tick: tick1, Prev: tick0, Run: r}))
		require.NoError(t, ss.ScheduleClaim(b.ctx, &engine.ScheduleClaimParams{Flow: "f", Name: "s", Tick: tick2, Prev: tick1}))
		st, err = ss.ScheduleGet(b.ctx, "f", "s")
		require.NoError(t, err)
		requireTimeEqual(t, tick2, st.LastTick)
		require.Equal(t, r.ID, st.LastRunID, "a skip keeps the last run")
		requireTimeEqual(t, r.CreatedAt, st.LastRunAt)
	})

	t.Run("ConcurrentClaimsOneWinner", func(t *testing.T) {
		t.Parallel()
		b, ss := setup(t)
		const n = 16
		prev := time.Time{}
		for _, tick := range []time.Time{tick0, tick1, tick2} {
			var (
				wg   sync.WaitGroup
				mu   sync.Mutex
				won  []string
				errs []error
			)
			for range n {
				wg.Go(func() {
					r := NewTestRun("f", "a")
					r.Tags = []string{"schedule:s"}
					err := ss.ScheduleClaim(b.ctx, &engine.ScheduleClaimParams{Flow: "f", Name: "s", Tick: tick, Prev: prev, Run: r})
					mu.Lock()
					defer mu.Unlock()
					if err == nil {
						won = append(won, r.ID)
					} else {
						errs = append(errs, err)
					}
				})
			}
			wg.Wait()
			require.Len(t, won, 1, "exactly one claim of tick %s wins", tick)
			for _, err := range errs {
				require.ErrorIs(t, err, engine.ErrConflict)
			}
			st, err := ss.ScheduleGet(b.ctx, "f", "s")
			require.NoError(t, err)
			require.Equal(t, won[0], st.LastRunID)
			prev = tick
		}
		page, err := b.store.RunList(b.ctx, &engine.RunListParams{Tag: "schedule:s"})
		require.NoError(t, err)
		require.Len(t, page.Runs, 3, "one run per tick")
	})
}
