package storetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
)

// RunQueue runs the conformance suite of the queue capabilities
// ([engine.Queue], [engine.QueueStats], [engine.WorkerRegistry],
// [engine.Pinger]) against the stores newStore returns (fresh and empty per
// subtest, as for [Run]). A capability the store lacks is skipped. The
// suite uses real time with short leases (a few hundred milliseconds).
//
// It pins: RunCreate enqueues; QueuePop delivers each run once, oldest
// first (per partition, for a store with several: see partitioned), with
// Deliveries 1, wakes up at once when a run is created while it
// blocks, returns (nil, nil) when Block passes, and never returns a run that
// was cancelled while PENDING; QueueAck removes a delivery for good;
// QueueReclaim returns only deliveries idle for MinIdle, with Deliveries
// incremented, and drops those of terminal runs; QueueHeartbeat keeps a
// delivery from being reclaimed, but only for the worker that holds it;
// QueueRequeue makes the run poppable again; QueuePopBatch (if implemented)
// takes up to the count asked, oldest first, and with Start starts each run
// it hands out (Lease.Started: RUNNING, attempt 1, the worker's, with its
// tasks), settling and leaving out runs that ended; QueueDepth counts PENDING runs
// by flow; WorkerList returns the workers whose heartbeat has not expired.
func RunQueue(t *testing.T, newStore func(t *testing.T) engine.Store) {
	t.Helper()
	setup := func(t *testing.T) (*testBundle, engine.Queue) {
		t.Helper()
		b := &testBundle{store: newStore(t), ctx: t.Context(), now: time.Now().UTC().Truncate(time.Millisecond)}
		q, ok := b.store.(engine.Queue)
		if !ok {
			t.Skip("store does not implement engine.Queue")
		}
		return b, q
	}
	pop := func(t *testing.T, b *testBundle, q engine.Queue, worker string) *engine.Lease {
		t.Helper()
		l, err := q.QueuePop(b.ctx, &engine.QueuePopParams{WorkerID: worker, Block: 2 * time.Second})
		require.NoError(t, err)
		require.NotNil(t, l, "pop: nothing delivered")
		return l
	}
	requireEmpty := func(t *testing.T, b *testBundle, q engine.Queue) {
		t.Helper()
		l, err := q.QueuePop(b.ctx, &engine.QueuePopParams{WorkerID: "probe", Block: 100 * time.Millisecond})
		require.NoError(t, err)
		require.Nil(t, l, "pop: want nothing")
	}

	t.Run("PopInOrderOnce", func(t *testing.T) {
		t.Parallel()
		b, q := setup(t)
		r1 := createRun(t, b, NewTestRun("hello", "a"))
		r2 := createRun(t, b, NewTestRun("hello", "a"))
		l1 := pop(t, b, q, "w1")
		l2 := pop(t, b, q, "w2")
		if partitioned(b.store) {
			require.ElementsMatch(t, []string{r1.ID, r2.ID}, []string{l1.RunID, l2.RunID})
		} else {
			require.Equal(t, r1.ID, l1.RunID)
			require.Equal(t, r2.ID, l2.RunID)
		}
		require.Equal(t, 1, l1.Deliveries)
		require.NotEqual(t, l1.ID, l2.ID)
		requireEmpty(t, b, q)
	})

	t.Run("SubFlowRunNotQueued", func(t *testing.T) {
		t.Parallel()
		b, q := setup(t)
		child := NewTestRun("child", "a")
		child.ParentRunID = unknownID
		child.FlowIncludes = []engine.FlowInclude{{Name: "inner", File: "flows/inner.yaml", Source: "version: 1\n"}}
		want := child.Clone()
		createRun(t, b, child)
		got := getRun(t, b, child.ID)
		RequireRunEqual(t, want, got)
		require.Equal(t, unknownID, got.ParentRunID)
		require.Equal(t, want.FlowIncludes, got.FlowIncludes)
		requireEmpty(t, b, q)
		// Its parent's execution starts and finishes it, as any run.
		startRun(t, b, child.ID, "w1", b.now)
		_, err := b.store.RunFinish(b.ctx, &engine.RunFinishParams{RunID: child.ID, Status: engine.RunCompleted, At: b.now, RunAttempt: 1})
		require.NoError(t, err)
		require.Equal(t, engine.RunCompleted, getRun(t, b, child.ID).Status)
		r := createRun(t, b, NewTestRun("hello", "a"))
		require.Equal(t, r.ID, pop(t, b, q, "w1").RunID)
	})

	t.Run("PopBatch", func(t *testing.T) {
		t.Parallel()
		b, q := setup(t)
		bp, ok := q.(engine.QueueBatchPopper)
		if !ok {
			t.Skip("store does not implement engine.QueueBatchPopper")
		}
		var ids []string
		for range 5 {
			ids = append(ids, createRun(t, b, NewTestRun("hello", "a")).ID)
		}
		cancelled := createRun(t, b, NewTestRun("hello", "a"))
		_, err := b.store.RunCancel(b.ctx, &engine.RunCancelParams{RunID: cancelled.ID, At: b.now})
		require.NoError(t, err)
		p := &engine.QueuePopParams{WorkerID: "w1", Block: 2 * time.Second}
		ls, err := bp.QueuePopBatch(b.ctx, p, 3)
		require.NoError(t, err)
		require.Len(t, ls, 3, "no more than asked")
		ls2, err := bp.QueuePopBatch(b.ctx, p, 10)
		require.NoError(t, err)
		require.Len(t, ls2, 2, "what is there, without the cancelled run")
		var got []string
		for _, l := range append(ls, ls2...) {
			require.Equal(t, 1, l.Deliveries)
			got = append(got, l.RunID)
		}
		if partitioned(b.store) {
			require.ElementsMatch(t, ids, got, "each once")
		} else {
			require.Equal(t, ids, got, "oldest first, each once")
		}
		ls3, err := bp.QueuePopBatch(b.ctx, &engine.QueuePopParams{WorkerID: "w1", Block: 100 * time.Millisecond}, 10)
		require.NoError(t, err)
		require.Empty(t, ls3, "Block passes")
	})

	t.Run("PopBatchStarts", func(t *testing.T) {
		t.Parallel()
		b, q := setup(t)
		bp, ok := q.(engine.QueueBatchPopper)
		if !ok {
			t.Skip("store does not implement engine.QueueBatchPopper")
		}
		var ids []string
		for range 4 {
			ids = append(ids, createRun(t, b, NewTestRun("hello", "a")).ID)
		}
		p := &engine.QueuePopParams{WorkerID: "w1", Block: 2 * time.Second, Start: true}
		ls, err := bp.QueuePopBatch(b.ctx, p, 10)
		require.NoError(t, err)
		var got []string
		for _, l := range ls {
			got = append(got, l.RunID)
			// Every run was queued before the call: each is started.
			require.NotNil(t, l.Started, "run %s not started", l.RunID)
			require.Equal(t, l.RunID, l.Started.ID)
			require.Equal(t, engine.RunRunning, l.Started.Status)
			require.Equal(t, 1, l.Started.Attempt)
			require.Equal(t, "w1", l.Started.WorkerID)
			require.Contains(t, l.Started.Tasks, "a", "with its tasks, as RunStart returns it")
			stored, err := b.store.RunGet(b.ctx, l.RunID)
			require.NoError(t, err)
			require.Equal(t, engine.RunRunning, stored.Status)
			require.Equal(t, 1, stored.Attempt)
		}
		require.ElementsMatch(t, ids, got, "each once")
		running, err := b.store.RunList(b.ctx, &engine.RunListParams{Statuses: []engine.RunStatus{engine.RunRunning}})
		require.NoError(t, err)
		require.Len(t, running.Runs, 4, "moved to the RUNNING index")

		// The started attempt is the fence; finishing with the lease
		// settles the delivery.
		l := ls[0]
		_, err = b.store.RunFinish(b.ctx, &engine.RunFinishParams{RunID: l.RunID, Status: engine.RunCompleted, At: b.now,
			Lease: l, RunAttempt: l.Started.Attempt + 1})
		require.ErrorIs(t, err, engine.ErrConflict, "a stale fence")
		_, err = b.store.RunFinish(b.ctx, &engine.RunFinishParams{RunID: l.RunID, Status: engine.RunCompleted, At: b.now,
			Lease: l, RunAttempt: l.Started.Attempt})
		require.NoError(t, err)

		// A run that ended while queued is never handed out.
		r := createRun(t, b, NewTestRun("hello", "a"))
		_, err = b.store.RunFinish(b.ctx, &engine.RunFinishParams{RunID: r.ID, Status: engine.RunFailed, At: b.now})
		require.NoError(t, err)
		ls, err = bp.QueuePopBatch(b.ctx, &engine.QueuePopParams{WorkerID: "w1", Block: 100 * time.Millisecond, Start: true}, 10)
		require.NoError(t, err)
		require.Empty(t, ls)
	})

	t.Run("PopBlocksThenWakes", func(t *testing.T) {
		t.Parallel()
		b, q := setup(t)
		start := time.Now()
		l, err := q.QueuePop(b.ctx, &engine.QueuePopParams{WorkerID: "w1", Block: 200 * time.Millisecond})
		require.NoError(t, err)
		require.Nil(t, l)
		require.GreaterOrEqual(t, time.Since(start), 150*time.Millisecond, "Block is honoured")

		got := make(chan *engine.Lease, 1)
		var wg sync.WaitGroup
		wg.Go(func() {
			l, err := q.QueuePop(b.ctx, &engine.QueuePopParams{WorkerID: "w1", Block: 10 * time.Second})
			if err == nil {
				got <- l
			}
			close(got)
		})
		time.Sleep(50 * time.Millisecond) // let it block
		r := createRun(t, b, NewTestRun("hello", "a"))
		created := time.Now()
		select {
		case l := <-got:
			require.NotNil(t, l)
			require.Equal(t, r.ID, l.RunID)
			require.Less(t, time.Since(created), 2*time.Second, "a blocked pop wakes up when a run arrives")
		case <-time.After(5 * time.Second):
			t.Fatal("blocked pop did not wake up")
		}
		wg.Wait()
	})

	t.Run("PopEndsWithContext", func(t *testing.T) {
		t.Parallel()
		b, q := setup(t)
		ctx, cancel := context.WithTimeout(b.ctx, 100*time.Millisecond)
		defer cancel()
		l, err := q.QueuePop(ctx, &engine.QueuePopParams{WorkerID: "w1", Block: 300 * time.Millisecond})
		require.Nil(t, l)
		if err != nil {
			require.ErrorIs(t, err, context.DeadlineExceeded)
		}
	})

	t.Run("CancelledPendingNeverPopped", func(t *testing.T) {
		t.Parallel()
		b, q := setup(t)
		r1 := createRun(t, b, NewTestRun("hello", "a"))
		r2 := createRun(t, b, NewTestRun("hello", "a"))
		st, err := b.store.RunCancel(b.ctx, &engine.RunCancelParams{RunID: r1.ID, At: b.now})
		require.NoError(t, err)
		require.Equal(t, engine.RunCancelled, st)
		r3 := createRun(t, b, NewTestRun("hello", "a"))
		_, err = b.store.RunFinish(b.ctx, &engine.RunFinishParams{RunID: r3.ID, Status: engine.RunFailed, At: b.now})
		require.NoError(t, err)
		l := pop(t, b, q, "w1")
		require.Equal(t, r2.ID, l.RunID)
		requireEmpty(t, b, q)
	})

	t.Run("AckIsFinal", func(t *testing.T) {
		t.Parallel()
		b, q := setup(t)
		createRun(t, b, NewTestRun("hello", "a"))
		l := pop(t, b, q, "w1")
		require.NoError(t, q.QueueAck(b.ctx, l))
		time.Sleep(150 * time.Millisecond)
		got, err := q.QueueReclaim(b.ctx, &engine.QueueReclaimParams{WorkerID: "w2", MinIdle: 100 * time.Millisecond, Count: 10})
		require.NoError(t, err)
		require.Empty(t, got)
		requireEmpty(t, b, q)
		require.NoError(t, q.QueueAck(b.ctx, l), "a second ack is harmless")
	})

	t.Run("ReclaimAfterIdle", func(t *testing.T) {
		t.Parallel()
		b, q := setup(t)
		r := createRun(t, b, NewTestRun("hello", "a"))
		l := pop(t, b, q, "w1")
		startRun(t, b, r.ID, "w1", b.now)
		got, err := q.QueueReclaim(b.ctx, &engine.QueueReclaimParams{WorkerID: "w2", MinIdle: 5 * time.Second, Count: 10})
		require.NoError(t, err)
		require.Empty(t, got, "not idle long enough")

		time.Sleep(250 * time.Millisecond)
		got, err = q.QueueReclaim(b.ctx, &engine.QueueReclaimParams{WorkerID: "w2", MinIdle: 200 * time.Millisecond, Count: 10})
		require.NoError(t, err)
		require.Len(t, got, 1)
		require.Equal(t, r.ID, got[0].RunID)
		require.Equal(t, l.ID, got[0].ID)
		require.Equal(t, 2, got[0].Deliveries)

		// Reclaimed again from w2 after another idle period: 3.
		time.Sleep(250 * time.Millisecond)
		got, err = q.QueueReclaim(b.ctx, &engine.QueueReclaimParams{WorkerID: "w3", MinIdle: 200 * time.Millisecond, Count: 10})
		require.NoError(t, err)
		require.Len(t, got, 1)
		require.Equal(t, 3, got[0].Deliveries)
		require.NoError(t, q.QueueAck(b.ctx, got[0]))
	})

	t.Run("ReclaimCount", func(t *testing.T) {
		t.Parallel()
		b, q := setup(t)
		for range 3 {
			createRun(t, b, NewTestRun("hello", "a"))
			pop(t, b, q, "w1")
		}
		time.Sleep(150 * time.Millisecond)
		got, err := q.QueueReclaim(b.ctx, &engine.QueueReclaimParams{WorkerID: "w2", MinIdle: 100 * time.Millisecond, Count: 2})
		require.NoError(t, err)
		require.Len(t, got, 2)
		got2, err := q.QueueReclaim(b.ctx, &engine.QueueReclaimParams{WorkerID: "w2", MinIdle: 100 * time.Millisecond, Count: 2})
		require.NoError(t, err)
		require.Len(t, got2, 1)
		require.NotEqual(t, got[0].ID, got2[0].ID)
		require.NotEqual(t, got[1].ID, got2[0].ID)
	})

	t.Run("ReclaimDropsTerminalRuns", func(t *testing.T) {
		t.Parallel()
		b, q := setup(t)
		r := createRun(t, b, NewTestRun("hello", "a"))
		pop(t, b, q, "w1")
		startRun(t, b, r.ID, "w1", b.now)
		_, err := b.store.RunFinish(b.ctx, &engine.RunFinishParams{RunID: r.ID, Status: engine.RunCompleted, At: b.now})
		require.NoError(t, err)
		time.Sleep(150 * time.Millisecond)
		got, err := q.QueueReclaim(b.ctx, &engine.QueueReclaimParams{WorkerID: "w2", MinIdle: 100 * time.Millisecond, Count: 10})
		require.NoError(t, err)
		require.Empty(t, got)
	})

	t.Run("HeartbeatKeepsLease", func(t *testing.T) {
		t.Parallel()
		b, q := setup(t)
		createRun(t, b, NewTestRun("hello", "a"))
		l := pop(t, b, q, "w1")
		for range 4 {
			time.Sleep(100 * time.Millisecond)
			require.NoError(t, q.QueueHeartbeat(b.ctx, "w1", []*engine.Lease{l}))
		}
		got, err := q.QueueReclaim(b.ctx, &engine.QueueReclaimParams{WorkerID: "w2", MinIdle: 250 * time.Millisecond, Count: 10})
		require.NoError(t, err)
		require.Empty(t, got, "renewed lease is not reclaimed")

		// A heartbeat from a worker that does not hold it renews nothing.
		time.Sleep(300 * time.Millisecond)
		require.NoError(t, q.QueueHeartbeat(b.ctx, "w9", []*engine.Lease{l}))
		got, err = q.QueueReclaim(b.ctx, &engine.QueueReclaimParams{WorkerID: "w2", MinIdle: 250 * time.Millisecond, Count: 10})
		require.NoError(t, err)
		require.Len(t, got, 1)

		// Now w2 holds it: w1's heartbeat does not take it back.
		require.NoError(t, q.QueueHeartbeat(b.ctx, "w1", []*engine.Lease{l}))
		time.Sleep(300 * time.Millisecond)
		got, err = q.QueueReclaim(b.ctx, &engine.QueueReclaimParams{WorkerID: "w3", MinIdle: 250 * time.Millisecond, Count: 10})
		require.NoError(t, err)
		require.Len(t, got, 1, "w1's heartbeat renewed a lease it lost")
		require.Equal(t, 3, got[0].Deliveries)
	})

	t.Run("Requeue", func(t *testing.T) {
		t.Parallel()
		b, q := setup(t)
		r := createRun(t, b, NewTestRun("hello", "a"))
		l := pop(t, b, q, "w1")
		startRun(t, b, r.ID, "w1", b.now)
		require.NoError(t, q.QueueRequeue(b.ctx, &engine.QueueRequeueParams{Lease: l}))
		l2 := pop(t, b, q, "w2")
		require.Equal(t, r.ID, l2.RunID)
		require.Equal(t, 1, l2.Deliveries)
		time.Sleep(150 * time.Millisecond)
		got, err := q.QueueReclaim(b.ctx, &engine.QueueReclaimParams{WorkerID: "w3", MinIdle: 100 * time.Millisecond, Count: 10})
		require.NoError(t, err)
		require.Len(t, got, 1, "only the new delivery is pending")
		require.Equal(t, l2.ID, got[0].ID)
	})

	t.Run("Fencing", func(t *testing.T) {
		// Worker A's run is taken over by B (reclaimed, started again):
		// every write carrying A's fence (RunAttempt 1) is refused with
		// ErrConflict and changes nothing; B's writes go through; a
		// refused finish does not settle B's delivery.
		t.Parallel()
		b, q := setup(t)
		r := createRun(t, b, NewTestRun("hello", "a", "b"))
		la := pop(t, b, q, "A")
		ra, err := b.store.RunStart(b.ctx, &engine.RunStartParams{RunID: r.ID, WorkerID: "A", At: b.now, Lease: la})
		require.NoError(t, err)
		fa := ra.Attempt
		require.NoError(t, b.store.TaskUpdate(b.ctx, &engine.TaskUpdateParams{RunID: r.ID, Task: "a", Status: engine.TaskRunning, StartedAt: b.now, RunAttempt: fa}))

		lbs, err := q.QueueReclaim(b.ctx, &engine.QueueReclaimParams{WorkerID: "B", Count: 10})
		require.NoError(t, err)
		require.Len(t, lbs, 1)
		lb := lbs[0]
		rb, err := b.store.RunStart(b.ctx, &engine.RunStartParams{RunID: r.ID, WorkerID: "B", At: b.now, Lease: lb})
		require.NoError(t, err)
		fb := rb.Attempt
		require.Equal(t, fa+1, fb)

		// A, unaware, goes on: all refused.
		err = b.store.TaskUpdate(b.ctx, &engine.TaskUpdateParams{RunID: r.ID, Task: "b", Status: engine.TaskRunning, StartedAt: b.now, RunAttempt: fa})
		require.ErrorIs(t, err, engine.ErrConflict)
		err = b.store.TaskUpdateMany(b.ctx, &engine.TaskUpdateManyParams{RunID: r.ID, RunAttempt: fa, Tasks: []*engine.TaskUpdateParams{
			{Task: "a", Status: engine.TaskSucceeded, EndedAt: b.now},
		}})
		require.ErrorIs(t, err, engine.ErrConflict)
		_, err = b.store.RunFinish(b.ctx, &engine.RunFinishParams{RunID: r.ID, Status: engine.RunFailed, Error: "A's verdict", RunAttempt: fa, Lease: la,
			Tasks: []*engine.TaskUpdateParams{{Task: "a", Status: engine.TaskFailed, EndedAt: b.now}}})
		require.ErrorIs(t, err, engine.ErrConflict)
		require.ErrorIs(t, q.QueueRequeue(b.ctx, &engine.QueueRequeueParams{Lease: la, RunAttempt: fa}), engine.ErrConflict)

		got, err := b.store.RunGet(b.ctx, r.ID)
		require.NoError(t, err)
		require.Equal(t, engine.RunRunning, got.Status)
		require.Equal(t, "B", got.WorkerID)
		require.Empty(t, got.Error)
		require.Equal(t, engine.TaskRunning, got.Tasks["a"].Status, "A's end not written")
		require.Equal(t, engine.TaskPending, got.Tasks["b"].Status)
		requireEmpty(t, b, q) // not requeued by A

		// B's delivery is still pending: reclaimable by a third worker.
		lcs, err := q.QueueReclaim(b.ctx, &engine.QueueReclaimParams{WorkerID: "C", Count: 10})
		require.NoError(t, err)
		require.Len(t, lcs, 1, "A's refused finish must not settle B's delivery")
		require.Equal(t, lb.ID, lcs[0].ID)

		// B (whose fence is still current: C has not started it) finishes,
		// writing its task ends in the same step.
		require.NoError(t, b.store.TaskUpdateMany(b.ctx, &engine.TaskUpdateManyParams{RunID: r.ID, RunAttempt: fb, Tasks: []*engine.TaskUpdateParams{
			{Task: "a", Status: engine.TaskSucceeded, EndedAt: b.now, Output: []byte(`"B"`)},
			{Task: "b", Status: engine.TaskRunning, StartedAt: b.now},
		}}))
		fin, err := b.store.RunFinish(b.ctx, &engine.RunFinishParams{RunID: r.ID, Status: engine.RunCompleted, RunAttempt: fb, Lease: lb,
			Tasks: []*engine.TaskUpdateParams{{Task: "b", Status: engine.TaskSucceeded, EndedAt: b.now, Output: []byte(`"B"`)}}})
		require.NoError(t, err)
		require.Equal(t, engine.RunCompleted, fin.Status)
		for _, task := range []string{"a", "b"} {
			require.Equal(t, engine.TaskSucceeded, fin.Tasks[task].Status)
			require.JSONEq(t, `"B"`, string(fin.Tasks[task].Output))
		}
		// The finish settled the delivery.
		time.Sleep(20 * time.Millisecond)
		lds, err := q.QueueReclaim(b.ctx, &engine.QueueReclaimParams{WorkerID: "D", Count: 10})
		require.NoError(t, err)
		require.Empty(t, lds)

		// Unfenced (API-side) writes are not refused for the fence.
		r2 := createRun(t, b, NewTestRun("hello", "a"))
		startRun(t, b, r2.ID, "A", b.now)
		startRun(t, b, r2.ID, "B", b.now)
		require.NoError(t, b.store.TaskUpdate(b.ctx, &engine.TaskUpdateParams{RunID: r2.ID, Task: "a", Status: engine.TaskSucceeded}))
		_, err = b.store.RunFinish(b.ctx, &engine.RunFinishParams{RunID: r2.ID, Status: engine.RunCompleted})
		require.NoError(t, err)
	})

	t.Run("QueueDepth", func(t *testing.T) {
		t.Parallel()
		b, _ := setup(t)
		qs, ok := b.store.(engine.QueueStats)
		if !ok {
			t.Skip("store does not implement engine.QueueStats")
		}
		d, err := qs.QueueDepth(b.ctx)
		require.NoError(t, err)
		require.Empty(t, d)
		a1 := createRun(t, b, NewTestRun("alpha", "a"))
		a2 := createRun(t, b, NewTestRun("alpha", "a"))
		createRun(t, b, NewTestRun("alpha", "a"))
		b1 := createRun(t, b, NewTestRun("beta", "a"))
		d, err = qs.QueueDepth(b.ctx)
		require.NoError(t, err)
		require.Equal(t, map[string]int64{"alpha": 3, "beta": 1}, d)

		startRun(t, b, a1.ID, "w1", b.now)
		_, err = b.store.RunCancel(b.ctx, &engine.RunCancelParams{RunID: a2.ID, At: b.now})
		require.NoError(t, err)
		_, err = b.store.RunFinish(b.ctx, &engine.RunFinishParams{RunID: b1.ID, Status: engine.RunFailed, At: b.now})
		require.NoError(t, err)
		d, err = qs.QueueDepth(b.ctx)
		require.NoError(t, err)
		require.Equal(t, map[string]int64{"alpha": 1}, d)
	})

	t.Run("QueueBacklog", func(t *testing.T) {
		t.Parallel()
		b, q := setup(t)
		qb, ok := b.store.(engine.QueueBacklog)
		if !ok {
			t.Skip("store does not implement engine.QueueBacklog")
		}
		requireBacklog := func(wantOldest map[string]time.Time, wantLag int64) {
			t.Helper()
			got, err := qb.QueueOldest(b.ctx)
			require.NoError(t, err)
			require.Len(t, got, len(wantOldest))
			for flow, at := range wantOldest {
				require.True(t, at.Equal(got[flow]), "oldest PENDING run of %s: want %v, got %v", flow, at, got[flow])
			}
			lag, err := qb.QueueLag(b.ctx)
			require.NoError(t, err)
			require.Equal(t, wantLag, lag, "lag")
		}
		requireBacklog(nil, 0)
		t0 := b.now.Truncate(time.Millisecond)
		mk := func(flow string, age time.Duration) *engine.Run {
			r := NewTestRun(flow, "a")
			r.CreatedAt = t0.Add(-age)
			return createRun(t, b, r)
		}
		a1 := mk("alpha", 3*time.Minute)
		a2 := mk("alpha", 2*time.Minute)
		b1 := mk("beta", time.Minute)
		requireBacklog(map[string]time.Time{"alpha": a1.CreatedAt, "beta": b1.CreatedAt}, 3)

		if partitioned(b.store) {
			// No order across partitions: take all three, then start and
			// cancel them one by one; the counts are the partitions' sum.
			for range 3 {
				pop(t, b, q, "w1") // delivered but not started: still PENDING
			}
			requireBacklog(map[string]time.Time{"alpha": a1.CreatedAt, "beta": b1.CreatedAt}, 0)
			startRun(t, b, a1.ID, "w1", b.now)
			requireBacklog(map[string]time.Time{"alpha": a2.CreatedAt, "beta": b1.CreatedAt}, 0)
			_, err := b.store.RunCancel(b.ctx, &engine.RunCancelParams{RunID: b1.ID, At: b.now})
			require.NoError(t, err)
			requireBacklog(map[string]time.Time{"alpha": a2.CreatedAt}, 0)
			startRun(t, b, a2.ID, "w1", b.now)
			requireBacklog(nil, 0)
			return
		}
		l := pop(t, b, q, "w1") // a1, delivered but not started: still PENDING
		require.Equal(t, a1.ID, l.RunID)
		requireBacklog(map[string]time.Time{"alpha": a1.CreatedAt, "beta": b1.CreatedAt}, 2)
		startRun(t, b, a1.ID, "w1", b.now)
		requireBacklog(map[string]time.Time{"alpha": a2.CreatedAt, "beta": b1.CreatedAt}, 2)
		// A PENDING run cancelled leaves the queue.
		_, err := b.store.RunCancel(b.ctx, &engine.RunCancelParams{RunID: b1.ID, At: b.now})
		require.NoError(t, err)
		requireBacklog(map[string]time.Time{"alpha": a2.CreatedAt}, 1)
		require.Equal(t, a2.ID, pop(t, b, q, "w2").RunID)
		startRun(t, b, a2.ID, "w2", b.now)
		requireBacklog(nil, 0)
	})

	t.Run("WorkerRegistry", func(t *testing.T) {
		t.Parallel()
		b, _ := setup(t)
		wr, ok := b.store.(engine.WorkerRegistry)
		if !ok {
			t.Skip("store does not implement engine.WorkerRegistry")
		}
		ws, err := wr.WorkerList(b.ctx)
		require.NoError(t, err)
		require.Empty(t, ws)
		w1 := &engine.WorkerInfo{ID: "w1", Host: "h1", StartedAt: b.now, LastHeartbeat: b.now, Running: []string{"r1"}, Concurrency: 4,
			Tasks: []string{"noop", "x/y"}}
		require.NoError(t, wr.WorkerHeartbeat(b.ctx, w1, time.Minute))
		require.NoError(t, wr.WorkerHeartbeat(b.ctx, &engine.WorkerInfo{ID: "w2", Host: "h2", StartedAt: b.now, LastHeartbeat: b.now}, 200*time.Millisecond))
		ws, err = wr.WorkerList(b.ctx)
		require.NoError(t, err)
		require.Len(t, ws, 2)
		require.Equal(t, "w1", ws[0].ID)
		require.Equal(t, "h1", ws[0].Host)
		require.Equal(t, []string{"r1"}, ws[0].Running)
		require.Equal(t, 4, ws[0].Concurrency)
		require.Equal(t, []string{"noop", "x/y"}, ws[0].Tasks, "the tasks a worker announces")
		require.Empty(t, ws[1].Tasks)
		requireTimeEqual(t, b.now, ws[0].StartedAt)

		time.Sleep(300 * time.Millisecond)
		ws, err = wr.WorkerList(b.ctx)
		require.NoError(t, err)
		require.Len(t, ws, 1, "expired worker dropped")
		require.Equal(t, "w1", ws[0].ID)

		require.NoError(t, wr.WorkerRemove(b.ctx, "w1"))
		ws, err = wr.WorkerList(b.ctx)
		require.NoError(t, err)
		require.Empty(t, ws)
	})

	t.Run("Ping", func(t *testing.T) {
		t.Parallel()
		b, _ := setup(t)
		p, ok := b.store.(engine.Pinger)
		if !ok {
			t.Skip("store does not implement engine.Pinger")
		}
		require.NoError(t, p.Ping(b.ctx))
	})
}
