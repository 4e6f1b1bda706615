package redisstore_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/storetest"
	"github.com/pyoco/pyoco/internal/redistest"
	"github.com/pyoco/pyoco/redisstore"
)

// TestWriteBatch runs the engine's group commit path on a real Redis: the
// starts, task writes and finishes of several runs in one pipeline, each
// with its own result (a stale fence refused, a bad finish refused before
// sending, the others applied), then a batch after SCRIPT FLUSH, whose
// NOSCRIPT replies are sent again one by one.
func TestWriteBatch(t *testing.T) {
	t.Parallel()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			c := be.client(t)
			s, ns := newStore(t, c, nil)
			now := time.Now().UTC().Truncate(time.Millisecond)

			runs := make([]*engine.Run, 3)
			for i := range runs {
				runs[i] = storetest.NewTestRun("batch", "a")
				require.NoError(t, s.RunCreate(ctx, runs[i]))
			}
			leases := map[string]*engine.Lease{}
			for len(leases) < len(runs) {
				ls, err := s.QueuePopBatch(ctx, &engine.QueuePopParams{WorkerID: "w", Block: 2 * time.Second}, len(runs))
				require.NoError(t, err)
				for _, l := range ls {
					leases[l.RunID] = l
				}
			}

			// Three starts in one round trip.
			ops := make([]*engine.WriteOp, len(runs))
			for i, r := range runs {
				ops[i] = &engine.WriteOp{Start: &engine.RunStartParams{RunID: r.ID, WorkerID: "w", At: now, Lease: leases[r.ID]}}
			}
			s.WriteBatch(ctx, ops)
			for i, op := range ops {
				require.NoError(t, op.Err)
				require.Equal(t, runs[i].ID, op.Run.ID)
				require.Equal(t, engine.RunRunning, op.Run.Status)
				require.Equal(t, 1, op.Run.Attempt)
				require.Contains(t, op.Run.Tasks, "a")
			}

			start := func(r *engine.Run, fence int) *engine.WriteOp {
				return &engine.WriteOp{Tasks: &engine.TaskUpdateManyParams{RunID: r.ID, RunAttempt: fence, Tasks: []*engine.TaskUpdateParams{
					{RunID: r.ID, Task: "a", Status: engine.TaskRunning, StartedAt: now, Attempt: &engine.Attempt{Number: 1, Status: engine.TaskRunning, StartedAt: now}},
				}}}
			}
			end := &engine.TaskUpdateParams{RunID: runs[2].ID, Task: "a", Status: engine.TaskSucceeded, EndedAt: now, Output: []byte(`"hi"`)}
			ops = []*engine.WriteOp{
				start(runs[0], 1),
				start(runs[1], 7), // stale fence
				{Finish: &engine.RunFinishParams{RunID: runs[2].ID, Status: engine.RunRunning, RunAttempt: 1}}, // not terminal
				{Finish: &engine.RunFinishParams{RunID: runs[2].ID, Status: engine.RunCompleted, At: now, RunAttempt: 1, Lease: leases[runs[2].ID], Tasks: []*engine.TaskUpdateParams{end}}},
			}
			s.WriteBatch(ctx, ops)
			require.NoError(t, ops[0].Err)
			require.ErrorIs(t, ops[1].Err, engine.ErrConflict)
			require.Error(t, ops[2].Err)
			require.NotErrorIs(t, ops[2].Err, engine.ErrConflict)
			require.NoError(t, ops[3].Err)
			require.Equal(t, engine.RunCompleted, ops[3].Run.Status)
			require.Equal(t, engine.TaskSucceeded, ops[3].Run.Tasks["a"].Status)

			r0, err := s.RunGet(ctx, runs[0].ID)
			require.NoError(t, err)
			require.Equal(t, engine.TaskRunning, r0.Tasks["a"].Status)
			require.Len(t, r0.Tasks["a"].Attempts, 1)
			r1, err := s.RunGet(ctx, runs[1].ID)
			require.NoError(t, err)
			require.Equal(t, engine.TaskPending, r1.Tasks["a"].Status, "the stale write changed nothing")

			// Redis forgets its scripts: the batch still applies, each op
			// sent again on its own.
			require.NoError(t, c.ScriptFlush(ctx).Err())
			ops = []*engine.WriteOp{
				{Finish: &engine.RunFinishParams{RunID: runs[0].ID, Status: engine.RunCompleted, At: now, RunAttempt: 1, Lease: leases[runs[0].ID]}},
				{Finish: &engine.RunFinishParams{RunID: runs[1].ID, Status: engine.RunFailed, At: now, Error: "x", RunAttempt: 1, Lease: leases[runs[1].ID]}},
			}
			s.WriteBatch(ctx, ops)
			for _, op := range ops {
				require.NoError(t, op.Err)
				require.True(t, op.Run.Status.Terminal())
			}
			for i, want := range []engine.RunStatus{engine.RunCompleted, engine.RunFailed, engine.RunCompleted} {
				r, err := s.RunGet(ctx, runs[i].ID)
				require.NoError(t, err)
				require.Equal(t, want, r.Status)
			}
			// Every finish acknowledged its entry.
			n, err := c.XLen(ctx, "{"+ns+"}:queue").Result()
			require.NoError(t, err)
			require.Zero(t, n)
			evs, err := s.EventList(ctx, &engine.EventListParams{})
			require.NoError(t, err)
			require.Len(t, evs, 3*3, "PENDING, RUNNING and the end of each run")
		})
	}
}

// TestWriteBatchFinishMany: the finishes of one batch go in one script per
// partition (finish_many.lua), each run's finish on its own: a stale fence,
// a run already ended and an unknown run are refused with their own
// errors, changing nothing of theirs, while the others are applied, brief
// or whole, with their task changes. On 6 partitions the batch spans
// several scripts.
func TestWriteBatchFinishMany(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name       string
		client     func(testing.TB) redis.UniversalClient
		partitions int
	}{{"Single", redistest.Client, 1}, {"Cluster", redistest.Cluster, 1}, {"ClusterPartitions6", redistest.Cluster, 6}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			c := tt.client(t)
			s, ns := newStore(t, c, &redisstore.Config{Partitions: tt.partitions})
			now := time.Now().UTC().Truncate(time.Millisecond)
			runs := make([]*engine.Run, 8)
			for i := range runs {
				runs[i] = storetest.NewTestRun("many", "a")
				require.NoError(t, s.RunCreate(ctx, runs[i]))
			}
			leases := map[string]*engine.Lease{}
			for len(leases) < len(runs) {
				ls, err := s.QueuePopBatch(ctx, &engine.QueuePopParams{WorkerID: "w", Block: 2 * time.Second, Start: true}, len(runs))
				require.NoError(t, err)
				for _, l := range ls {
					require.NotNil(t, l.Started)
					leases[l.RunID] = l
				}
			}
			_, err := s.RunFinish(ctx, &engine.RunFinishParams{RunID: runs[2].ID, Status: engine.RunCancelled, At: now})
			require.NoError(t, err)

			finish := func(r *engine.Run, fence int, brief bool) *engine.WriteOp {
				att := &engine.Attempt{Number: 1, Status: engine.TaskSucceeded, StartedAt: now, EndedAt: now}
				return &engine.WriteOp{Finish: &engine.RunFinishParams{RunID: r.ID, Status: engine.RunCompleted, At: now, RunAttempt: fence,
					Lease: leases[r.ID], Brief: brief, Tasks: []*engine.TaskUpdateParams{
						{RunID: r.ID, Task: "a", Status: engine.TaskSucceeded, StartedAt: now, EndedAt: now, Attempt: att, Output: []byte(`"ok"`)},
					}}}
			}
			ops := []*engine.WriteOp{
				finish(runs[0], 1, true),
				finish(runs[1], 5, true), // stale fence
				finish(runs[2], 1, true), // already CANCELLED
				finish(runs[3], 1, false),
				{Finish: &engine.RunFinishParams{RunID: "nope", Status: engine.RunCompleted, At: now, Brief: true}},
			}
			for _, r := range runs[4:] {
				ops = append(ops, finish(r, 1, true))
			}
			counter := &pipeCounter{tag: "{" + ns}
			c.AddHook(counter)
			s.WriteBatch(ctx, ops)
			counter.off.Store(true)
			// One script per partition (plus, if Redis did not know it yet,
			// its EVALSHA and EVAL sent again on their own), not a command
			// per run.
			require.LessOrEqual(t, int(counter.n.Load()), 3*tt.partitions, "one script per partition")
			require.NoError(t, ops[0].Err)
			require.Equal(t, engine.RunCompleted, ops[0].Run.Status)
			require.Equal(t, 1, ops[0].Run.Attempt)
			require.Empty(t, ops[0].Run.Tasks, "brief")
			require.ErrorIs(t, ops[1].Err, engine.ErrConflict)
			require.ErrorIs(t, ops[2].Err, engine.ErrConflict)
			require.NoError(t, ops[3].Err)
			require.Equal(t, engine.TaskSucceeded, ops[3].Run.Tasks["a"].Status, "whole")
			require.ErrorIs(t, ops[4].Err, engine.ErrNotFound)
			for _, op := range ops[5:] {
				require.NoError(t, op.Err)
			}
			for i, want := range []engine.RunStatus{engine.RunCompleted, engine.RunRunning, engine.RunCancelled, engine.RunCompleted,
				engine.RunCompleted, engine.RunCompleted, engine.RunCompleted, engine.RunCompleted} {
				r, err := s.RunGet(ctx, runs[i].ID)
				require.NoError(t, err)
				require.Equal(t, want, r.Status, "run %d", i)
				if want == engine.RunCompleted {
					require.Equal(t, engine.TaskSucceeded, r.Tasks["a"].Status)
					require.JSONEq(t, `"ok"`, string(r.Tasks["a"].Output))
				} else {
					require.NotEqual(t, engine.TaskSucceeded, r.Tasks["a"].Status, "a refused finish wrote no task")
				}
			}
		})
	}
}

// pipeCounter is a go-redis hook that counts the commands sent, in
// pipelines or alone, with a key of tag (the client may be shared) until
// off is set.
type pipeCounter struct {
	tag string
	n   atomic.Int64
	off atomic.Bool
}

func (h *pipeCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *pipeCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, c redis.Cmder) error {
		h.count(c)
		return next(ctx, c)
	}
}

func (h *pipeCounter) count(c redis.Cmder) {
	if !h.off.Load() && strings.Contains(fmt.Sprint(c.Args()...), h.tag) {
		h.n.Add(1)
	}
}
func (h *pipeCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			h.count(c)
		}
		return next(ctx, cmds)
	}
}
