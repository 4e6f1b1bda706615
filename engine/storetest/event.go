package storetest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
)

// listEvents returns every event.
func listEvents(t testing.TB, b *testBundle) []engine.Event {
	t.Helper()
	events, err := b.store.EventList(b.ctx, &engine.EventListParams{})
	require.NoError(t, err)
	return events
}

// requireEvents compares events, ignoring IDs (which must be unique and
// non-empty) and comparing times as instants.
func requireEvents(t testing.TB, want, got []engine.Event) {
	t.Helper()
	ids := map[string]bool{}
	norm := func(es []engine.Event) []engine.Event {
		out := make([]engine.Event, len(es))
		for i, e := range es {
			e.ID = ""
			e.Time = utc(e.Time)
			out[i] = e
		}
		return out
	}
	for _, e := range got {
		require.NotEmpty(t, e.ID)
		require.False(t, ids[e.ID], "event ID %s twice", e.ID)
		ids[e.ID] = true
	}
	require.Equal(t, norm(want), norm(got))
}

func testEventList(t *testing.T, setup setupFunc) {
	t.Run("Lifecycle", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := createRun(t, b, NewTestRun("hello", "a"))
		at := func(s int) time.Time { return b.now.Add(time.Duration(s) * time.Second) }
		startRun(t, b, r.ID, "w1", at(1))
		startRun(t, b, r.ID, "w2", at(2)) // takeover: no event
		require.NoError(t, b.store.TaskUpdate(b.ctx, &engine.TaskUpdateParams{RunID: r.ID, Task: "a", Status: engine.TaskRunning}))
		require.NoError(t, b.store.LogAppend(b.ctx, r.ID, newLogEntries(b, "a", 2)))
		_, err := b.store.RunCancel(b.ctx, &engine.RunCancelParams{RunID: r.ID, At: at(3)})
		require.NoError(t, err)
		_, err = b.store.RunCancel(b.ctx, &engine.RunCancelParams{RunID: r.ID, At: at(4)}) // idempotent: no event
		require.NoError(t, err)
		_, err = b.store.RunFinish(b.ctx, &engine.RunFinishParams{RunID: r.ID, Status: engine.RunCancelled, At: at(5)})
		require.NoError(t, err)
		// Failed calls record nothing.
		_, err = b.store.RunFinish(b.ctx, &engine.RunFinishParams{RunID: r.ID, Status: engine.RunFailed, At: at(6)})
		require.ErrorIs(t, err, engine.ErrConflict)
		_, err = b.store.RunCancel(b.ctx, &engine.RunCancelParams{RunID: r.ID, At: at(6)})
		require.ErrorIs(t, err, engine.ErrConflict)
		_, err = b.store.RunStart(b.ctx, &engine.RunStartParams{RunID: r.ID, WorkerID: "w3", At: at(6)})
		require.ErrorIs(t, err, engine.ErrConflict)

		ev := func(st engine.RunStatus, tm time.Time) engine.Event {
			return engine.Event{RunID: r.ID, FlowName: "hello", Status: st, Time: tm}
		}
		requireEvents(t, []engine.Event{
			ev(engine.RunPending, r.CreatedAt),
			ev(engine.RunRunning, at(1)),
			ev(engine.RunCancelling, at(3)),
			ev(engine.RunCancelled, at(5)),
		}, listEvents(t, b))
	})

	t.Run("PendingCancelAndFinish", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r1 := createRun(t, b, NewTestRun("one", "a"))
		r2 := createRun(t, b, NewTestRun("two", "a"))
		_, err := b.store.RunCancel(b.ctx, &engine.RunCancelParams{RunID: r1.ID, At: b.now.Add(time.Second)})
		require.NoError(t, err)
		startRun(t, b, r2.ID, "w1", b.now.Add(2*time.Second))
		_, err = b.store.RunFinish(b.ctx, &engine.RunFinishParams{RunID: r2.ID, Status: engine.RunCompleted, At: b.now.Add(3 * time.Second)})
		require.NoError(t, err)
		want := []engine.Event{
			{RunID: r1.ID, FlowName: "one", Status: engine.RunPending, Time: r1.CreatedAt},
			{RunID: r2.ID, FlowName: "two", Status: engine.RunPending, Time: r2.CreatedAt},
			{RunID: r1.ID, FlowName: "one", Status: engine.RunCancelled, Time: b.now.Add(time.Second)},
			{RunID: r2.ID, FlowName: "two", Status: engine.RunRunning, Time: b.now.Add(2 * time.Second)},
			{RunID: r2.ID, FlowName: "two", Status: engine.RunCompleted, Time: b.now.Add(3 * time.Second)},
		}
		got := listEvents(t, b)
		if partitioned(b.store) {
			// Each run's events in order; runs of different partitions
			// interleave by the time each partition appended them.
			for _, id := range []string{r1.ID, r2.ID} {
				requireEvents(t, eventsOf(want, id), eventsOf(got, id))
			}
			require.Len(t, got, len(want))
			return
		}
		requireEvents(t, want, got)
	})

	t.Run("AfterPaging", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		require.Empty(t, listEvents(t, b))
		for range 7 {
			r := createRun(t, b, NewTestRun("hello", "a"))
			moveTo(t, b, r.ID, engine.RunCompleted) // PENDING, RUNNING, COMPLETED
		}
		all := listEvents(t, b)
		require.Len(t, all, 21)

		for _, limit := range []int{1, 4, 21, 50} {
			var got []engine.Event
			after := ""
			for {
				page, err := b.store.EventList(b.ctx, &engine.EventListParams{After: after, Limit: limit})
				require.NoError(t, err)
				require.LessOrEqual(t, len(page), limit)
				if len(page) == 0 {
					break
				}
				got = append(got, page...)
				after = page[len(page)-1].ID
			}
			require.Equal(t, all, got, "limit %d", limit)
		}

		rest, err := b.store.EventList(b.ctx, &engine.EventListParams{After: all[len(all)-1].ID})
		require.NoError(t, err)
		require.Empty(t, rest)

		// Events appended later come after the last ID seen.
		r := createRun(t, b, NewTestRun("late", "a"))
		rest, err = b.store.EventList(b.ctx, &engine.EventListParams{After: all[len(all)-1].ID})
		require.NoError(t, err)
		require.Len(t, rest, 1)
		require.Equal(t, r.ID, rest[0].RunID)
		require.NotContains(t, eventIDs(all), rest[0].ID)
	})

	t.Run("BadAfter", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		createRun(t, b, NewTestRun("hello", "a"))
		_, err := b.store.EventList(b.ctx, &engine.EventListParams{After: "not an id!"})
		require.ErrorIs(t, err, engine.ErrBadCursor)
	})
}

// eventsOf returns the events of run id, in order.
func eventsOf(es []engine.Event, id string) []engine.Event {
	var out []engine.Event
	for _, e := range es {
		if e.RunID == id {
			out = append(out, e)
		}
	}
	return out
}

func eventIDs(es []engine.Event) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}
