package redisstore_test

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/storetest"
	"github.com/pyoco/pyoco/redisstore"
)

// TestFencing takes a run over from worker A (its lease reclaimed by B, B
// starts it again) while A still runs it: every later write of A's
// delivery is refused with ErrConflict ("owner lost") and changes nothing,
// the heartbeat reports A's lease lost, and the run ends with B's result.
// A and B use separate Stores (two processes) or one (two workers of one
// process).
func TestFencing(t *testing.T) {
	t.Parallel()
	for _, be := range backends {
		for _, shared := range []bool{false, true} {
			name := be.name + "/TwoStores"
			if shared {
				name = be.name + "/OneStore"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				ctx := t.Context()
				c := be.client(t)
				a, ns := newStore(t, c, nil)
				b := a
				if !shared {
					var err error
					b, err = redisstore.New(be.client(t), &redisstore.Config{Namespace: ns})
					require.NoError(t, err)
				}
				queue := "{" + ns + "}:queue"
				now := time.Now().UTC().Truncate(time.Millisecond)

				r := storetest.NewTestRun("hello", "a", "b")
				require.NoError(t, a.RunCreate(ctx, r))
				la, err := a.QueuePop(ctx, &engine.QueuePopParams{WorkerID: "A", Block: 2 * time.Second})
				require.NoError(t, err)
				require.NotNil(t, la)
				ca := engine.ContextWithLease(ctx, la)
				_, err = a.RunStart(ca, &engine.RunStartParams{RunID: r.ID, WorkerID: "A"})
				require.NoError(t, err)
				require.NoError(t, a.TaskUpdate(ca, &engine.TaskUpdateParams{RunID: r.ID, Task: "a", Status: engine.TaskRunning, StartedAt: now}))
				lost, err := a.QueueHeartbeatLost(ctx, "A", []*engine.Lease{la})
				require.NoError(t, err)
				require.Empty(t, lost, "A still holds its lease")

				// B takes over.
				lbs, err := b.QueueReclaim(ctx, &engine.QueueReclaimParams{WorkerID: "B", Count: 10})
				require.NoError(t, err)
				require.Len(t, lbs, 1)
				lb := lbs[0]
				cb := engine.ContextWithLease(ctx, lb)
				rb, err := b.RunStart(cb, &engine.RunStartParams{RunID: r.ID, WorkerID: "B"})
				require.NoError(t, err)
				require.Equal(t, 2, rb.Attempt)

				// A, unaware, goes on: all refused.
				err = a.TaskUpdate(ca, &engine.TaskUpdateParams{RunID: r.ID, Task: "b", Status: engine.TaskRunning, StartedAt: now})
				require.ErrorIs(t, err, engine.ErrConflict)
				require.ErrorContains(t, err, "owner lost")
				lost, err = a.QueueHeartbeatLost(ctx, "A", []*engine.Lease{la})
				require.NoError(t, err)
				require.Equal(t, []*engine.Lease{la}, lost)
				// A deferred end of A's is dropped, not written.
				require.NoError(t, a.TaskUpdate(ca, &engine.TaskUpdateParams{RunID: r.ID, Task: "a", Status: engine.TaskSucceeded, EndedAt: now}))
				fr, err := a.RunFinish(ca, &engine.RunFinishParams{RunID: r.ID, Status: engine.RunFailed, Error: "A's verdict"})
				require.ErrorIs(t, err, engine.ErrConflict)
				require.ErrorContains(t, err, "owner lost")
				require.Nil(t, fr)
				require.True(t, engine.LeaseSettled(ca), "A must not ack B's entry")
				require.ErrorIs(t, a.QueueRequeue(ctx, la), engine.ErrConflict)
				require.ErrorIs(t, a.QueueAck(ctx, la), engine.ErrConflict)

				got, err := b.RunGet(ctx, r.ID)
				require.NoError(t, err)
				require.Equal(t, engine.RunRunning, got.Status)
				require.Equal(t, "B", got.WorkerID)
				require.Equal(t, engine.TaskRunning, got.Tasks["a"].Status, "A's deferred end not written")
				require.Equal(t, engine.TaskPending, got.Tasks["b"].Status)
				p, err := c.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: queue, Group: "workers", Start: "-", End: "+", Count: 10}).Result()
				require.NoError(t, err)
				require.Len(t, p, 1, "B's entry still pending")
				require.Equal(t, "B", p[0].Consumer)

				// B's heartbeat keeps its lease; B finishes.
				lost, err = b.QueueHeartbeatLost(ctx, "B", []*engine.Lease{lb})
				require.NoError(t, err)
				require.Empty(t, lost)
				for _, task := range []string{"a", "b"} {
					require.NoError(t, b.TaskUpdate(cb, &engine.TaskUpdateParams{RunID: r.ID, Task: task, Status: engine.TaskRunning, StartedAt: now}))
					require.NoError(t, b.TaskUpdate(cb, &engine.TaskUpdateParams{RunID: r.ID, Task: task, Status: engine.TaskSucceeded, EndedAt: now, Output: []byte(`"B"`)}))
				}
				fin, err := b.RunFinish(cb, &engine.RunFinishParams{RunID: r.ID, Status: engine.RunCompleted})
				require.NoError(t, err)
				require.Equal(t, engine.RunCompleted, fin.Status)
				require.True(t, engine.LeaseSettled(cb))
				got, err = a.RunGet(ctx, r.ID)
				require.NoError(t, err)
				require.Equal(t, engine.RunCompleted, got.Status)
				require.Empty(t, got.Error)
				for _, task := range []string{"a", "b"} {
					require.Equal(t, engine.TaskSucceeded, got.Tasks[task].Status)
					require.JSONEq(t, `"B"`, string(got.Tasks[task].Output))
				}
				n, err := c.XLen(ctx, queue).Result()
				require.NoError(t, err)
				require.Zero(t, n)

				// A still refused after the end; API-side writes are not fenced.
				require.ErrorIs(t, a.QueueAck(ctx, la), engine.ErrConflict)
				_, err = a.RunCancel(ctx, &engine.RunCancelParams{RunID: r.ID})
				require.ErrorIs(t, err, engine.ErrConflict) // terminal, as before
			})
		}
	}
}

// TestFencingUnfenced checks that writes of a delivery the Store did not
// start (no remembered attempt), and API-side writes, behave as before.
func TestFencingUnfenced(t *testing.T) {
	t.Parallel()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s, _ := newStore(t, be.client(t), nil)
			r := storetest.NewTestRun("hello", "a")
			require.NoError(t, s.RunCreate(ctx, r))
			_, err := s.RunStart(ctx, &engine.RunStartParams{RunID: r.ID, WorkerID: "A"})
			require.NoError(t, err)
			_, err = s.RunStart(ctx, &engine.RunStartParams{RunID: r.ID, WorkerID: "B"})
			require.NoError(t, err)
			require.NoError(t, s.TaskUpdate(ctx, &engine.TaskUpdateParams{RunID: r.ID, Task: "a", Status: engine.TaskSucceeded}))
			// A lease this Store never started: no fence.
			l := &engine.Lease{RunID: r.ID, ID: "1-1", Deliveries: 1}
			require.NoError(t, s.TaskUpdate(engine.ContextWithLease(ctx, l), &engine.TaskUpdateParams{RunID: r.ID, Task: "a", Status: engine.TaskRunning}))
			require.NoError(t, s.QueueAck(ctx, l))
			_, err = s.RunFinish(ctx, &engine.RunFinishParams{RunID: r.ID, Status: engine.RunCompleted})
			require.NoError(t, err)
		})
	}
}

// TestHandBackFlush checks that QueueRequeue and QueueAck first write the
// run's deferred task ends, so the next worker sees a finished task as
// finished (the reviewer's hand-back race), and that Flush writes them all.
func TestHandBackFlush(t *testing.T) {
	t.Parallel()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			a, ns := newStore(t, be.client(t), nil)
			b, err := redisstore.New(be.client(t), &redisstore.Config{Namespace: ns})
			require.NoError(t, err)
			now := time.Now().UTC().Truncate(time.Millisecond)
			popStart := func(s *redisstore.Store, worker string) (*engine.Lease, *engine.Run) {
				t.Helper()
				l, err := s.QueuePop(ctx, &engine.QueuePopParams{WorkerID: worker, Block: 2 * time.Second})
				require.NoError(t, err)
				require.NotNil(t, l)
				r, err := s.RunStart(engine.ContextWithLease(ctx, l), &engine.RunStartParams{RunID: l.RunID, WorkerID: worker})
				require.NoError(t, err)
				return l, r
			}
			finishTask := func(s *redisstore.Store, l *engine.Lease, task string) {
				t.Helper()
				lctx := engine.ContextWithLease(ctx, l)
				require.NoError(t, s.TaskUpdate(lctx, &engine.TaskUpdateParams{RunID: l.RunID, Task: task, Status: engine.TaskRunning, StartedAt: now,
					Attempt: &engine.Attempt{Number: 1, Status: engine.TaskRunning, StartedAt: now}}))
				require.NoError(t, s.TaskUpdate(lctx, &engine.TaskUpdateParams{RunID: l.RunID, Task: task, Status: engine.TaskSucceeded, EndedAt: now}))
			}

			// Requeue.
			r := storetest.NewTestRun("hello", "a", "b")
			require.NoError(t, a.RunCreate(ctx, r))
			la, _ := popStart(a, "A")
			finishTask(a, la, "a")
			require.NoError(t, a.QueueRequeue(ctx, la))
			_, rb := popStart(b, "B")
			require.Equal(t, engine.TaskSucceeded, rb.Tasks["a"].Status, "the hand-back wrote the deferred end first")

			// Ack.
			r2 := storetest.NewTestRun("hello", "a")
			require.NoError(t, a.RunCreate(ctx, r2))
			l2, _ := popStart(a, "A")
			finishTask(a, l2, "a")
			require.NoError(t, a.QueueAck(ctx, l2))
			got, err := b.RunGet(ctx, r2.ID)
			require.NoError(t, err)
			require.Equal(t, engine.TaskSucceeded, got.Tasks["a"].Status)

			// Flush.
			r3 := storetest.NewTestRun("hello", "a")
			require.NoError(t, a.RunCreate(ctx, r3))
			l3, _ := popStart(a, "A")
			finishTask(a, l3, "a")
			require.NoError(t, a.Flush(ctx))
			got, err = b.RunGet(ctx, r3.ID)
			require.NoError(t, err)
			require.Equal(t, engine.TaskSucceeded, got.Tasks["a"].Status)
			require.NoError(t, a.Flush(ctx), "nothing left")
		})
	}
}
