package redisstore_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/storetest"
	"github.com/pyoco/pyoco/redisstore"
)

// TestLeaseSettledByScripts checks that a lease passed in the params is
// acknowledged by finish.lua (a finished run) and by start.lua (a run that
// ended between its delivery and its start), so no entry stays pending.
func TestLeaseSettledByScripts(t *testing.T) {
	t.Parallel()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			c := be.client(t)
			s, ns := newStore(t, c, nil)
			queue := "{" + ns + "}:queue"
			pending := func() int64 {
				t.Helper()
				p, err := c.XPending(ctx, queue, "workers").Result()
				require.NoError(t, err)
				return p.Count
			}

			// Finished: finish.lua acks.
			r := storetest.NewTestRun("hello", "a")
			require.NoError(t, s.RunCreate(ctx, r))
			l, err := s.QueuePop(ctx, &engine.QueuePopParams{WorkerID: "w1", Block: 2 * time.Second})
			require.NoError(t, err)
			require.NotNil(t, l)
			st, err := s.RunStart(ctx, &engine.RunStartParams{RunID: r.ID, WorkerID: "w1", Lease: l})
			require.NoError(t, err)
			require.EqualValues(t, 1, pending())
			_, err = s.RunFinish(ctx, &engine.RunFinishParams{RunID: r.ID, Status: engine.RunCompleted, Lease: l, RunAttempt: st.Attempt})
			require.NoError(t, err)
			require.EqualValues(t, 0, pending())
			n, err := c.XLen(ctx, queue).Result()
			require.NoError(t, err)
			require.Zero(t, n, "finished entry deleted")

			// Cancelled between delivery and start: start.lua acks.
			r2 := storetest.NewTestRun("hello", "a")
			require.NoError(t, s.RunCreate(ctx, r2))
			l2, err := s.QueuePop(ctx, &engine.QueuePopParams{WorkerID: "w1", Block: 2 * time.Second})
			require.NoError(t, err)
			require.NotNil(t, l2)
			_, err = s.RunCancel(ctx, &engine.RunCancelParams{RunID: r2.ID})
			require.NoError(t, err)
			require.EqualValues(t, 1, pending())
			_, err = s.RunStart(ctx, &engine.RunStartParams{RunID: r2.ID, WorkerID: "w1", Lease: l2})
			require.ErrorIs(t, err, engine.ErrConflict)
			require.EqualValues(t, 0, pending())
		})
	}
}

// TestCancelNotifyFreshRun cancels a run (through another Store) between
// this Store's RunStart and RunCancelNotify, while the shared subscription
// is live: the notification needs no status read and still arrives, well
// before the once-a-second fallback check.
func TestCancelNotifyFreshRun(t *testing.T) {
	t.Parallel()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			c1, c2 := be.client(t), be.client(t)
			server, ns := newStore(t, c1, nil)
			worker, err := redisstore.New(c2, &redisstore.Config{Namespace: ns})
			require.NoError(t, err)

			// Keep the worker's subscription live with a waiter of another run.
			other := storetest.NewTestRun("hello", "a")
			require.NoError(t, server.RunCreate(ctx, other))
			_, err = worker.RunStart(ctx, &engine.RunStartParams{RunID: other.ID, WorkerID: "w"})
			require.NoError(t, err)
			_, err = worker.RunCancelNotify(ctx, other.ID)
			require.NoError(t, err)

			for _, cancelFirst := range []bool{true, false} {
				r := storetest.NewTestRun("hello", "a")
				require.NoError(t, server.RunCreate(ctx, r))
				_, err = worker.RunStart(ctx, &engine.RunStartParams{RunID: r.ID, WorkerID: "w"})
				require.NoError(t, err)
				start := time.Now()
				if cancelFirst {
					_, err = server.RunCancel(ctx, &engine.RunCancelParams{RunID: r.ID})
					require.NoError(t, err)
				}
				ch, err := worker.RunCancelNotify(ctx, r.ID)
				require.NoError(t, err)
				if !cancelFirst {
					_, err = server.RunCancel(ctx, &engine.RunCancelParams{RunID: r.ID})
					require.NoError(t, err)
				}
				select {
				case <-ch:
					// Not asserting a time bound (shared CPUs); the fallback
					// check would take up to a second.
					t.Logf("cancelFirst=%v: notified after %s", cancelFirst, time.Since(start))
				case <-time.After(5 * time.Second):
					t.Fatalf("cancelFirst=%v: not notified", cancelFirst)
				}
			}
		})
	}
}

// TestTaskChangesInOneScript checks TaskUpdateMany and the tasks that
// RunFinish carries: applied in order in one script, one of an unknown task
// skipped (but for TaskUpdateMany's last change, NOTFOUND), visible to
// another Store at once.
func TestTaskChangesInOneScript(t *testing.T) {
	t.Parallel()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s, ns := newStore(t, be.client(t), nil)
			other, err := redisstore.New(be.client(t), &redisstore.Config{Namespace: ns})
			require.NoError(t, err)
			now := time.Now().UTC().Truncate(time.Millisecond)

			r := storetest.NewTestRun("hello", "a", "b", "c")
			require.NoError(t, s.RunCreate(ctx, r))
			st, err := s.RunStart(ctx, &engine.RunStartParams{RunID: r.ID, WorkerID: "w1"})
			require.NoError(t, err)
			att := &engine.Attempt{Number: 1, Status: engine.TaskRunning, StartedAt: now}
			require.NoError(t, s.TaskUpdateMany(ctx, &engine.TaskUpdateManyParams{RunID: r.ID, RunAttempt: st.Attempt, Tasks: []*engine.TaskUpdateParams{
				{Task: "a", Status: engine.TaskRunning, StartedAt: now, Attempt: att, ResetEnd: true},
				{Task: "nope", Status: engine.TaskFailed},
				{Task: "a", Status: engine.TaskSucceeded, EndedAt: now, Output: []byte(`{"x":1}`)},
				{Task: "b", Status: engine.TaskSkipped, EndedAt: now, Error: "skip"},
			}}))
			got, err := other.RunGet(ctx, r.ID)
			require.NoError(t, err)
			require.Equal(t, engine.TaskSucceeded, got.Tasks["a"].Status)
			require.JSONEq(t, `{"x":1}`, string(got.Tasks["a"].Output))
			require.Len(t, got.Tasks["a"].Attempts, 1)
			require.Equal(t, engine.TaskSkipped, got.Tasks["b"].Status)
			require.NotContains(t, got.Tasks, "nope")
			err = s.TaskUpdateMany(ctx, &engine.TaskUpdateManyParams{RunID: r.ID, Tasks: []*engine.TaskUpdateParams{{Task: "nope", Status: engine.TaskFailed}}})
			require.ErrorIs(t, err, engine.ErrNotFound)

			fin, err := s.RunFinish(ctx, &engine.RunFinishParams{RunID: r.ID, Status: engine.RunFailed, Error: "c failed", RunAttempt: st.Attempt, Tasks: []*engine.TaskUpdateParams{
				{Task: "c", Status: engine.TaskFailed, EndedAt: now, Error: "boom"},
				{Task: "nope", Status: engine.TaskFailed, EndedAt: now},
			}})
			require.NoError(t, err)
			require.Equal(t, engine.TaskFailed, fin.Tasks["c"].Status)
			require.Equal(t, "boom", fin.Tasks["c"].Error)
			require.NotContains(t, fin.Tasks, "nope")
			got, err = other.RunGet(ctx, r.ID)
			require.NoError(t, err)
			require.Equal(t, engine.RunFailed, got.Status)
			require.Equal(t, engine.TaskFailed, got.Tasks["c"].Status)

			err = s.TaskUpdate(ctx, &engine.TaskUpdateParams{RunID: r.ID, Task: "a", Status: engine.TaskSucceeded})
			require.ErrorIs(t, err, engine.ErrConflict)
			err = s.TaskUpdate(ctx, &engine.TaskUpdateParams{RunID: "other", Task: "a", Status: engine.TaskSucceeded})
			require.ErrorIs(t, err, engine.ErrNotFound)
		})
	}
}
