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
				ra, err := a.RunStart(ctx, &engine.RunStartParams{RunID: r.ID, WorkerID: "A", Lease: la})
				require.NoError(t, err)
				fa := ra.Attempt
				require.NoError(t, a.TaskUpdate(ctx, &engine.TaskUpdateParams{RunID: r.ID, Task: "a", Status: engine.TaskRunning, StartedAt: now, RunAttempt: fa}))
				lost, err := a.QueueHeartbeatLost(ctx, "A", []*engine.Lease{la})
				require.NoError(t, err)
				require.Empty(t, lost, "A still holds its lease")

				// B takes over.
				lbs, err := b.QueueReclaim(ctx, &engine.QueueReclaimParams{WorkerID: "B", Count: 10})
				require.NoError(t, err)
				require.Len(t, lbs, 1)
				lb := lbs[0]
				rb, err := b.RunStart(ctx, &engine.RunStartParams{RunID: r.ID, WorkerID: "B", Lease: lb})
				require.NoError(t, err)
				require.Equal(t, 2, rb.Attempt)
				fb := rb.Attempt

				// A, unaware, goes on: all refused.
				err = a.TaskUpdate(ctx, &engine.TaskUpdateParams{RunID: r.ID, Task: "b", Status: engine.TaskRunning, StartedAt: now, RunAttempt: fa})
				require.ErrorIs(t, err, engine.ErrConflict)
				require.ErrorContains(t, err, "owner lost")
				lost, err = a.QueueHeartbeatLost(ctx, "A", []*engine.Lease{la})
				require.NoError(t, err)
				require.Equal(t, []*engine.Lease{la}, lost)
				// A's finish, carrying its task end, is refused whole.
				fr, err := a.RunFinish(ctx, &engine.RunFinishParams{RunID: r.ID, Status: engine.RunFailed, Error: "A's verdict", RunAttempt: fa, Lease: la,
					Tasks: []*engine.TaskUpdateParams{{Task: "a", Status: engine.TaskSucceeded, EndedAt: now}}})
				require.ErrorIs(t, err, engine.ErrConflict)
				require.ErrorContains(t, err, "owner lost")
				require.Nil(t, fr)
				require.ErrorIs(t, a.QueueRequeue(ctx, &engine.QueueRequeueParams{Lease: la, RunAttempt: fa}), engine.ErrConflict)

				got, err := b.RunGet(ctx, r.ID)
				require.NoError(t, err)
				require.Equal(t, engine.RunRunning, got.Status)
				require.Equal(t, "B", got.WorkerID)
				require.Equal(t, engine.TaskRunning, got.Tasks["a"].Status, "A's task end not written")
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
					require.NoError(t, b.TaskUpdate(ctx, &engine.TaskUpdateParams{RunID: r.ID, Task: task, Status: engine.TaskRunning, StartedAt: now, RunAttempt: fb}))
					require.NoError(t, b.TaskUpdate(ctx, &engine.TaskUpdateParams{RunID: r.ID, Task: task, Status: engine.TaskSucceeded, EndedAt: now, Output: []byte(`"B"`), RunAttempt: fb}))
				}
				fin, err := b.RunFinish(ctx, &engine.RunFinishParams{RunID: r.ID, Status: engine.RunCompleted, RunAttempt: fb, Lease: lb})
				require.NoError(t, err)
				require.Equal(t, engine.RunCompleted, fin.Status)
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

				// A still refused after the end.
				require.ErrorIs(t, a.QueueRequeue(ctx, &engine.QueueRequeueParams{Lease: la, RunAttempt: fa}), engine.ErrConflict)
				_, err = a.RunCancel(ctx, &engine.RunCancelParams{RunID: r.ID})
				require.ErrorIs(t, err, engine.ErrConflict) // terminal, as before
			})
		}
	}
}
