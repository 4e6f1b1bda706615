package redisstore_test

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/storetest"
	"github.com/pyoco/pyoco/redisstore"
)

// toOldLayout moves the tasks' fields of run id (the ones with a ':') from
// its run hash to its tasks hash and drops "layout": the shape of a run
// stored before layout 2.
var toOldLayout = redis.NewScript(`
local h = redis.call('HGETALL', KEYS[1])
for i = 1, #h, 2 do
  if string.find(h[i], ':', 1, true) then
    redis.call('HSET', KEYS[2], h[i], h[i + 1])
    redis.call('HDEL', KEYS[1], h[i])
  end
end
return redis.call('HDEL', KEYS[1], 'layout')
`)

// TestTasksInRunHash checks layout 2: a new run keeps its tasks in its run
// hash (no tasks hash is written), and a list reads the run's own fields
// only.
func TestTasksInRunHash(t *testing.T) {
	t.Parallel()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			c := be.client(t)
			s, ns := newStore(t, c, nil)
			now := time.Now().UTC().Truncate(time.Millisecond)

			r := storetest.NewTestRun("layout", "a", "b")
			// Every field a run has, so a list missing one of them
			// (listFields) shows below.
			r.Tags = []string{"t1"}
			r.ParentSpanID = engine.NewSpanID().String()
			r.ParentUnsampled = true
			r.ParentRunID = engine.NewRunID() // a sub-flow run: not queued
			r.FlowIncludes = []engine.FlowInclude{{Name: "inc", File: "inc.yaml", Source: "version: 1\n"}}
			require.NoError(t, s.RunCreate(ctx, r))
			runKey, tasksKey := "{"+ns+"}:run:"+r.ID, "{"+ns+"}:tasks:"+r.ID
			require.Equal(t, "2", c.HGet(ctx, runKey, "layout").Val())
			require.Equal(t, "PENDING", c.HGet(ctx, runKey, "status:a").Val())

			st, err := s.RunStart(ctx, &engine.RunStartParams{RunID: r.ID, WorkerID: "w"})
			require.NoError(t, err)
			require.Equal(t, engine.TaskPending, st.Tasks["a"].Status)
			require.NoError(t, s.TaskUpdateMany(ctx, &engine.TaskUpdateManyParams{RunID: r.ID, RunAttempt: st.Attempt, Tasks: []*engine.TaskUpdateParams{
				{Task: "a", Status: engine.TaskRunning, StartedAt: now, Attempt: &engine.Attempt{Number: 1, Status: engine.TaskRunning, StartedAt: now}},
			}}))
			page, err := s.RunList(ctx, &engine.RunListParams{})
			require.NoError(t, err)
			require.Len(t, page.Runs, 1)
			require.Equal(t, engine.RunRunning, page.Runs[0].Status)
			require.Empty(t, page.Runs[0].Tasks, "a list does not read the tasks")

			fin, err := s.RunFinish(ctx, &engine.RunFinishParams{RunID: r.ID, Status: engine.RunCompleted, Error: "why not", RunAttempt: st.Attempt, Tasks: []*engine.TaskUpdateParams{
				{Task: "a", Status: engine.TaskSucceeded, EndedAt: now, Output: []byte(`1`), Attempt: &engine.Attempt{Number: 1, Status: engine.TaskSucceeded, StartedAt: now, EndedAt: now}},
				{Task: "b", Status: engine.TaskSkipped, EndedAt: now},
			}})
			require.NoError(t, err)
			require.Equal(t, engine.TaskSucceeded, fin.Tasks["a"].Status)
			require.Len(t, fin.Tasks["a"].Attempts, 1)
			require.Equal(t, engine.TaskSkipped, fin.Tasks["b"].Status)
			require.Zero(t, c.Exists(ctx, tasksKey).Val(), "no tasks hash")
			got, err := s.RunGet(ctx, r.ID)
			require.NoError(t, err)
			require.Equal(t, fin.Tasks["a"], got.Tasks["a"])
			require.Equal(t, engine.RunCompleted, got.Status)
			page, err = s.RunList(ctx, &engine.RunListParams{})
			require.NoError(t, err)
			require.Len(t, page.Runs, 1)
			got.Tasks = nil
			storetest.RequireRunEqual(t, got, page.Runs[0])
		})
	}
}

// TestOldLayoutRuns checks that runs stored before layout 2 (their tasks in
// a tasks hash) still go through every script: get, take and start, task
// writes, the three finishes (full, brief through a batch, finish_many),
// cancel, list and retention.
func TestOldLayoutRuns(t *testing.T) {
	t.Parallel()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			c := be.client(t)
			s, ns := newStore(t, c, &redisstore.Config{Retention: time.Second})
			now := time.Now().UTC().Truncate(time.Millisecond)
			old := func() *engine.Run {
				t.Helper()
				r := storetest.NewTestRun("old", "a", "b")
				require.NoError(t, s.RunCreate(ctx, r))
				keys := []string{"{" + ns + "}:run:" + r.ID, "{" + ns + "}:tasks:" + r.ID}
				require.NoError(t, toOldLayout.Run(ctx, c, keys).Err())
				fields, err := c.HKeys(ctx, keys[0]).Result()
				require.NoError(t, err)
				for _, f := range fields {
					require.False(t, strings.Contains(f, ":"), "task field %s left in the run hash", f)
				}
				require.Equal(t, "PENDING", c.HGet(ctx, keys[1], "status:a").Val())
				return r
			}
			taskUpdate := func(r *engine.Run, attempt int) {
				t.Helper()
				require.NoError(t, s.TaskUpdateMany(ctx, &engine.TaskUpdateManyParams{RunID: r.ID, RunAttempt: attempt, Tasks: []*engine.TaskUpdateParams{
					{Task: "a", Status: engine.TaskRunning, StartedAt: now, Attempt: &engine.Attempt{Number: 1, Status: engine.TaskRunning, StartedAt: now}},
				}}))
				require.ErrorIs(t, s.TaskUpdateMany(ctx, &engine.TaskUpdateManyParams{RunID: r.ID, Tasks: []*engine.TaskUpdateParams{
					{Task: "nope", Status: engine.TaskFailed},
				}}), engine.ErrNotFound)
				got, err := s.RunGet(ctx, r.ID)
				require.NoError(t, err)
				require.Equal(t, engine.TaskRunning, got.Tasks["a"].Status)
				require.Len(t, got.Tasks["a"].Attempts, 1)
			}
			done := []*engine.TaskUpdateParams{
				{Task: "a", Status: engine.TaskSucceeded, EndedAt: now, Attempt: &engine.Attempt{Number: 1, Status: engine.TaskSucceeded, StartedAt: now, EndedAt: now}},
				{Task: "b", Status: engine.TaskFailed, EndedAt: now, Error: "boom"},
			}

			// Taken (and started) by the queue, then a full finish.
			r1 := old()
			got, err := s.RunGet(ctx, r1.ID)
			require.NoError(t, err)
			require.Equal(t, engine.TaskPending, got.Tasks["b"].Status)
			var l *engine.Lease
			for l == nil {
				ls, err := s.QueuePopBatch(ctx, &engine.QueuePopParams{WorkerID: "w", Block: 2 * time.Second, Start: true}, 1)
				require.NoError(t, err)
				if len(ls) > 0 {
					l = ls[0]
				}
			}
			require.Equal(t, r1.ID, l.RunID)
			require.NotNil(t, l.Started)
			require.Equal(t, engine.TaskPending, l.Started.Tasks["a"].Status)
			taskUpdate(r1, l.Started.Attempt)
			fin, err := s.RunFinish(ctx, &engine.RunFinishParams{RunID: r1.ID, Status: engine.RunFailed, Error: "b failed", Lease: l, RunAttempt: l.Started.Attempt, Tasks: done})
			require.NoError(t, err)
			require.Equal(t, engine.RunFailed, fin.Status)
			require.Equal(t, engine.TaskSucceeded, fin.Tasks["a"].Status)
			require.Equal(t, "boom", fin.Tasks["b"].Error)

			// Started, then finished through a batch (brief, and two
			// finishes of one partition in one finish_many).
			r2, r3 := old(), old()
			var ops []*engine.WriteOp
			for _, r := range []*engine.Run{r2, r3} {
				st, err := s.RunStart(ctx, &engine.RunStartParams{RunID: r.ID, WorkerID: "w"})
				require.NoError(t, err)
				require.Equal(t, engine.TaskPending, st.Tasks["a"].Status)
				taskUpdate(r, st.Attempt)
				ops = append(ops, &engine.WriteOp{Finish: &engine.RunFinishParams{RunID: r.ID, Status: engine.RunCompleted, RunAttempt: st.Attempt, Tasks: done[:1], Brief: true}})
			}
			s.WriteBatch(ctx, ops)
			for _, op := range ops {
				require.NoError(t, op.Err)
				got, err := s.RunGet(ctx, op.Finish.RunID)
				require.NoError(t, err)
				require.Equal(t, engine.RunCompleted, got.Status)
				require.Equal(t, engine.TaskSucceeded, got.Tasks["a"].Status)
				require.Equal(t, engine.TaskPending, got.Tasks["b"].Status)
			}

			// Cancelled while PENDING: its pending tasks are cancelled.
			r4 := old()
			_, err = s.RunCancel(ctx, &engine.RunCancelParams{RunID: r4.ID})
			require.NoError(t, err)
			got, err = s.RunGet(ctx, r4.ID)
			require.NoError(t, err)
			require.Equal(t, engine.RunCancelled, got.Status)
			require.Equal(t, engine.TaskCancelled, got.Tasks["a"].Status)

			// A live one, listed with the rest; then retention removes the
			// finished ones, tasks hashes included.
			live := old()
			page, err := s.RunList(ctx, &engine.RunListParams{})
			require.NoError(t, err)
			require.Len(t, page.Runs, 5)
			deadline := time.Now().Add(15 * time.Second)
			for {
				page, err := s.RunList(ctx, &engine.RunListParams{})
				require.NoError(t, err)
				garbage := indexGarbage(t, c, ns, []string{live.ID})
				if len(garbage) == 0 && len(page.Runs) == 1 {
					break
				}
				require.True(t, time.Now().Before(deadline), "still there after the deadline: %v", garbage)
				time.Sleep(100 * time.Millisecond)
			}
			require.EqualValues(t, 1, c.Exists(ctx, "{"+ns+"}:tasks:"+live.ID).Val())
		})
	}
}
