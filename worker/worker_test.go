package worker_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/memstore"
	"github.com/pyoco/pyoco/internal/redistest"
	"github.com/pyoco/pyoco/worker"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(redistest.Runner(m))
}

// testBundle is a memory store, a registry with test tasks, and helpers to
// build engines and workers on them.
type testBundle struct {
	store *memstore.Store
	reg   *engine.Registry

	mu    sync.Mutex
	calls map[string]int // "<run> <task>" → executions
	// release, when non-nil, is waited for by the "test/wait" task.
	release chan struct{}
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	b := &testBundle{store: memstore.New(), reg: engine.NewRegistry(), calls: map[string]int{}, release: make(chan struct{})}
	count := func(tc *engine.TaskContext) {
		b.mu.Lock()
		b.calls[tc.RunID+" "+tc.Task]++
		b.mu.Unlock()
	}
	require.NoError(t, b.reg.Add(engine.TaskDef{Name: "test/noop", Run: func(ctx context.Context, tc *engine.TaskContext, in map[string]any) (any, error) {
		count(tc)
		return map[string]any{"ok": true}, nil
	}}))
	require.NoError(t, b.reg.Add(engine.TaskDef{Name: "test/wait", Run: func(ctx context.Context, tc *engine.TaskContext, in map[string]any) (any, error) {
		count(tc)
		select {
		case <-b.release:
			return "released", nil
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}}))
	require.NoError(t, b.reg.Add(engine.TaskDef{Name: "test/sleep", Run: func(ctx context.Context, tc *engine.TaskContext, in map[string]any) (any, error) {
		count(tc)
		select {
		case <-time.After(50 * time.Millisecond):
			return nil, nil
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}}))
	return b
}

func (b *testBundle) engine(t *testing.T, id string) *engine.Engine {
	t.Helper()
	eng, err := engine.New(b.store, b.reg, &engine.Config{WorkerID: id})
	require.NoError(t, err)
	return eng
}

func (b *testBundle) worker(t *testing.T, id string, cfg *worker.Config) *worker.Worker {
	t.Helper()
	if cfg == nil {
		cfg = &worker.Config{}
	}
	cfg.ID = id
	w, err := worker.New(b.engine(t, id), b.store, cfg)
	require.NoError(t, err)
	return w
}

func (b *testBundle) calledTimes(run, task string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls[run+" "+task]
}

const flowSrc = `version: 1
flow:
  name: %s
  graph: |
    a >> b >> c
tasks:
  a: {use: test/noop}
  b: {use: %s}
  c: {use: test/noop}
`

func (b *testBundle) submit(t *testing.T, middle string) *engine.Run {
	t.Helper()
	f, err := engine.LoadFlow("f.yaml", fmt.Appendf(nil, flowSrc, "chain", middle), b.reg)
	require.NoError(t, err)
	eng := b.engine(t, "submitter")
	r, err := eng.Submit(t.Context(), &engine.SubmitParams{Flow: f})
	require.NoError(t, err)
	return r
}

func (b *testBundle) get(t *testing.T, id string) *engine.Run {
	t.Helper()
	r, err := b.store.RunGet(context.Background(), id)
	require.NoError(t, err)
	return r
}

// waitStatus waits (fake time inside synctest) until run id has status st.
func (b *testBundle) waitStatus(t *testing.T, id string, st engine.RunStatus) *engine.Run {
	t.Helper()
	for range 2000 {
		if r := b.get(t, id); r.Status == st {
			return r
		}
		time.Sleep(10 * time.Millisecond)
	}
	r := b.get(t, id)
	t.Fatalf("run %s is %s, want %s", id, r.Status, st)
	return nil
}

func TestConfig(t *testing.T) {
	t.Parallel()
	b := setup(t)
	eng := b.engine(t, "w")
	_, err := worker.New(nil, b.store, nil)
	require.Error(t, err)
	for _, tt := range []struct {
		field string
		cfg   worker.Config
	}{
		{"Concurrency", worker.Config{Concurrency: -1}},
		{"Lease", worker.Config{Lease: time.Millisecond}},
		{"MaxAttempts", worker.Config{MaxAttempts: -2}},
		{"HeartbeatInterval", worker.Config{Lease: time.Second, HeartbeatInterval: 2 * time.Second}},
	} {
		_, err := worker.New(eng, b.store, &tt.cfg)
		require.ErrorContains(t, err, "Config"[0:0]+tt.field)
	}
	w, err := worker.New(eng, b.store, nil)
	require.NoError(t, err)
	require.Equal(t, "w", w.ID())
	require.NoError(t, w.Stop(t.Context()), "stop before start does nothing")
}

func TestDrainsQueue(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := setup(t)
		var ids []string
		for range 40 {
			ids = append(ids, b.submit(t, "test/noop").ID)
		}
		w1 := b.worker(t, "w1", &worker.Config{Concurrency: 4})
		w2 := b.worker(t, "w2", &worker.Config{Concurrency: 4})
		require.NoError(t, w1.Start(t.Context()))
		require.NoError(t, w2.Start(t.Context()))
		require.Error(t, w1.Start(t.Context()), "second start")
		for _, id := range ids {
			b.waitStatus(t, id, engine.RunCompleted)
			require.Equal(t, 1, b.calledTimes(id, "b"))
		}
		ws, err := b.store.WorkerList(t.Context())
		require.NoError(t, err)
		require.Len(t, ws, 2)
		require.NoError(t, w1.Stop(t.Context()))
		require.NoError(t, w2.Stop(t.Context()))
		ws, err = b.store.WorkerList(t.Context())
		require.NoError(t, err)
		require.Empty(t, ws, "stopped workers leave the registry")
		d, err := b.store.QueueDepth(t.Context())
		require.NoError(t, err)
		require.Empty(t, d)
	})
}

// TestReclaimResumes: a "worker" takes a run and dies after task a
// succeeded; a live worker reclaims it after the lease and resumes it
// without running a again.
func TestReclaimResumes(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := setup(t)
		r := b.submit(t, "test/noop")
		// The ghost pops it, starts it and runs task a by hand, then goes silent.
		l, err := b.store.QueuePop(t.Context(), &engine.QueuePopParams{WorkerID: "ghost"})
		require.NoError(t, err)
		require.Equal(t, r.ID, l.RunID)
		_, err = b.store.RunStart(t.Context(), &engine.RunStartParams{RunID: r.ID, WorkerID: "ghost"})
		require.NoError(t, err)
		now := time.Now()
		require.NoError(t, b.store.TaskUpdate(t.Context(), &engine.TaskUpdateParams{RunID: r.ID, Task: "a", Status: engine.TaskSucceeded,
			StartedAt: now, EndedAt: now, Output: []byte(`{"ok":true}`), Attempt: &engine.Attempt{Number: 1, Status: engine.TaskSucceeded, StartedAt: now, EndedAt: now}}))
		require.NoError(t, b.store.TaskUpdate(t.Context(), &engine.TaskUpdateParams{RunID: r.ID, Task: "b", Status: engine.TaskRunning,
			StartedAt: now, Attempt: &engine.Attempt{Number: 1, Status: engine.TaskRunning, StartedAt: now}}))

		start := time.Now()
		w := b.worker(t, "w1", &worker.Config{Lease: 10 * time.Second})
		require.NoError(t, w.Start(t.Context()))
		got := b.waitStatus(t, r.ID, engine.RunCompleted)
		require.GreaterOrEqual(t, time.Since(start), 10*time.Second, "reclaimed only after the lease")
		require.Equal(t, 2, got.Attempt)
		require.Equal(t, "w1", got.WorkerID)
		require.Equal(t, 0, b.calledTimes(r.ID, "a"), "SUCCEEDED task not run again")
		require.Equal(t, 1, b.calledTimes(r.ID, "b"))
		require.Len(t, got.Tasks["b"].Attempts, 2)
		require.NoError(t, w.Stop(t.Context()))
	})
}

// TestMaxAttempts: a run whose holders keep going silent ends FAILED once
// it was delivered more than MaxAttempts times.
func TestMaxAttempts(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := setup(t)
		r := b.submit(t, "test/noop")
		ctx := t.Context()
		_, err := b.store.QueuePop(ctx, &engine.QueuePopParams{WorkerID: "ghost1"})
		require.NoError(t, err)
		_, err = b.store.RunStart(ctx, &engine.RunStartParams{RunID: r.ID, WorkerID: "ghost1"})
		require.NoError(t, err)
		for _, g := range []string{"ghost2", "ghost3"} {
			time.Sleep(2 * time.Second)
			ls, err := b.store.QueueReclaim(ctx, &engine.QueueReclaimParams{WorkerID: g, MinIdle: time.Second, Count: 1})
			require.NoError(t, err)
			require.Len(t, ls, 1)
		}
		w := b.worker(t, "w1", &worker.Config{Lease: time.Second, MaxAttempts: 3})
		require.NoError(t, w.Start(ctx))
		got := b.waitStatus(t, r.ID, engine.RunFailed)
		require.Equal(t, "run taken over 3 times (max_attempts 3): its workers kept stopping", got.Error)
		require.Equal(t, engine.TaskCancelled, got.Tasks["a"].Status)
		require.Zero(t, b.calledTimes(r.ID, "a"))
		require.NoError(t, w.Stop(ctx))
		ls, err := b.store.QueueReclaim(ctx, &engine.QueueReclaimParams{WorkerID: "x", MinIdle: 0, Count: 10})
		require.NoError(t, err)
		require.Empty(t, ls, "acknowledged")
	})
}

// TestStopHandsBack: Stop waits for running runs until its context ends,
// then hands them back; another worker resumes them.
func TestStopHandsBack(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := setup(t)
		r := b.submit(t, "test/wait")
		w1 := b.worker(t, "w1", nil)
		require.NoError(t, w1.Start(t.Context()))
		for b.calledTimes(r.ID, "b") == 0 {
			time.Sleep(10 * time.Millisecond)
		}
		require.Equal(t, []string{r.ID}, w1.Running())
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		require.ErrorIs(t, w1.Stop(ctx), context.DeadlineExceeded)
		require.Empty(t, w1.Running())
		got := b.get(t, r.ID)
		require.Equal(t, engine.RunRunning, got.Status, "handed back, not cancelled")
		require.Equal(t, engine.TaskPending, got.Tasks["b"].Status)
		require.Equal(t, engine.TaskSucceeded, got.Tasks["a"].Status)

		close(b.release)
		w2 := b.worker(t, "w2", nil)
		require.NoError(t, w2.Start(t.Context()))
		got = b.waitStatus(t, r.ID, engine.RunCompleted)
		require.Equal(t, 1, b.calledTimes(r.ID, "a"))
		require.Equal(t, 2, b.calledTimes(r.ID, "b"))
		require.Equal(t, "w2", got.WorkerID)
		require.NoError(t, w2.Stop(t.Context()))
	})
}

// TestStopWaitsForRuns: a run that finishes within Stop's deadline is
// completed, not handed back.
func TestStopWaitsForRuns(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := setup(t)
		r := b.submit(t, "test/wait")
		w := b.worker(t, "w1", nil)
		require.NoError(t, w.Start(t.Context()))
		for b.calledTimes(r.ID, "b") == 0 {
			time.Sleep(10 * time.Millisecond)
		}
		go func() {
			time.Sleep(time.Second)
			close(b.release)
		}()
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		require.NoError(t, w.Stop(ctx))
		require.Equal(t, engine.RunCompleted, b.get(t, r.ID).Status)
		// A run submitted after Stop is not taken.
		r2 := b.submit(t, "test/noop")
		time.Sleep(time.Second)
		require.Equal(t, engine.RunPending, b.get(t, r2.ID).Status)
	})
}

// TestCancel: a cancel request reaches the running run; a PENDING run
// cancelled is never executed.
func TestCancel(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := setup(t)
		eng := b.engine(t, "api")
		pending := b.submit(t, "test/noop")
		_, err := eng.Cancel(t.Context(), pending.ID)
		require.NoError(t, err)
		r := b.submit(t, "test/wait")
		w := b.worker(t, "w1", nil)
		require.NoError(t, w.Start(t.Context()))
		for b.calledTimes(r.ID, "b") == 0 {
			time.Sleep(10 * time.Millisecond)
		}
		_, err = eng.Cancel(t.Context(), r.ID)
		require.NoError(t, err)
		b.waitStatus(t, r.ID, engine.RunCancelled)
		got := b.get(t, pending.ID)
		require.Equal(t, engine.RunCancelled, got.Status)
		require.Zero(t, got.Attempt, "never picked up")
		require.NoError(t, w.Stop(t.Context()))
	})
}

// submitSleep submits a one-task run of test/sleep (50ms).
func (b *testBundle) submitSleep(t *testing.T) *engine.Run {
	t.Helper()
	f, err := engine.LoadFlow("s.yaml", []byte("version: 1\nflow:\n  name: sleepy\n  graph: s\ntasks:\n  s: {use: test/sleep}\n"), b.reg)
	require.NoError(t, err)
	r, err := b.engine(t, "submitter").Submit(t.Context(), &engine.SubmitParams{Flow: f})
	require.NoError(t, err)
	return r
}

// TestReclaimNotStarvedByBacklog: a dead worker's runs are reclaimed within
// about a lease even though a backlog keeps every slot busy (reclaimed runs
// take the next freed slot before new ones), not after the backlog drained.
func TestReclaimNotStarvedByBacklog(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := setup(t)
		ctx := t.Context()
		victims := []string{b.submitSleep(t).ID, b.submitSleep(t).ID}
		for range victims {
			_, err := b.store.QueuePop(ctx, &engine.QueuePopParams{WorkerID: "dead"})
			require.NoError(t, err)
		}
		// 400 runs of 50ms on 4 slots: 5s of work.
		var backlog []string
		for range 400 {
			backlog = append(backlog, b.submitSleep(t).ID)
		}
		const lease = time.Second
		w := b.worker(t, "w1", &worker.Config{Concurrency: 4, Lease: lease})
		start := time.Now()
		require.NoError(t, w.Start(ctx))
		for b.get(t, victims[0]).Status != engine.RunCompleted || b.get(t, victims[1]).Status != engine.RunCompleted {
			time.Sleep(10 * time.Millisecond)
		}
		took := time.Since(start) // fake time: deterministic
		left := 0
		for _, id := range backlog {
			if b.get(t, id).Status != engine.RunCompleted {
				left++
			}
		}
		t.Logf("dead worker's runs completed %s after start (lease %s); %d of %d backlog runs left", took, lease, left, len(backlog))
		require.LessOrEqual(t, took, 2*lease, "reclaimed within about a lease")
		require.Greater(t, left, len(backlog)/2, "reclaimed long before the backlog drained")
		for _, id := range victims {
			require.Equal(t, "w1", b.get(t, id).WorkerID)
		}
		require.NoError(t, w.Stop(ctx))
	})
}

// TestNoReclaimRightAfterStart: a worker started while a live worker's lease
// looks long expired (idle times survive a Redis restart) waits one lease
// before reclaiming anything, so the live worker can renew it.
func TestNoReclaimRightAfterStart(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := setup(t)
		ctx := t.Context()
		r := b.submitSleep(t)
		_, err := b.store.QueuePop(ctx, &engine.QueuePopParams{WorkerID: "ghost"})
		require.NoError(t, err)
		time.Sleep(10 * time.Second) // idle for ten leases
		w := b.worker(t, "w1", &worker.Config{Lease: time.Second})
		start := time.Now()
		require.NoError(t, w.Start(ctx))
		time.Sleep(900 * time.Millisecond)
		require.Empty(t, w.Running(), "nothing reclaimed within a lease of the start")
		require.Equal(t, engine.RunPending, b.get(t, r.ID).Status)
		b.waitStatus(t, r.ID, engine.RunCompleted)
		require.GreaterOrEqual(t, time.Since(start), time.Second)
		require.NoError(t, w.Stop(ctx))
	})
}

// TestStopHandsBackRunStartingNow: a run a slot took just before Stop's
// context ended, but whose execution had not begun (no stop func yet), is
// handed back without running, and Stop returns. The store started it as
// it handed it out (QueuePopParams.Start), so it goes back RUNNING, as a
// run handed back mid-execution does, and the next worker resumes it.
func TestStopHandsBackRunStartingNow(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := setup(t)
		r := b.submit(t, "test/wait")
		w1 := b.worker(t, "w1", &worker.Config{Concurrency: 1})
		entered, proceed := make(chan struct{}), make(chan struct{})
		worker.SetBeforeExecute(w1, func(*engine.Lease) {
			close(entered)
			<-proceed
		})
		require.NoError(t, w1.Start(t.Context()))
		<-entered
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		stopped := make(chan error, 1)
		go func() { stopped <- w1.Stop(ctx) }()
		time.Sleep(2 * time.Second) // Stop's context ended: it handed back what it could
		synctest.Wait()
		close(proceed)
		select {
		case err := <-stopped:
			require.ErrorIs(t, err, context.DeadlineExceeded)
		case <-time.After(time.Minute):
			close(b.release) // let the run end, so the bubble can
			t.Fatal("Stop did not return: the run started after the hand-back ran on")
		}
		require.Empty(t, w1.Running())
		require.Zero(t, b.calledTimes(r.ID, "a"), "never executed")
		back := b.get(t, r.ID)
		require.Equal(t, engine.RunRunning, back.Status)
		require.Equal(t, 1, back.Attempt, "started once, by the take")

		close(b.release)
		w2 := b.worker(t, "w2", nil)
		require.NoError(t, w2.Start(t.Context()))
		got := b.waitStatus(t, r.ID, engine.RunCompleted)
		require.Equal(t, "w2", got.WorkerID)
		require.Equal(t, 2, got.Attempt)
		require.Equal(t, 1, b.calledTimes(r.ID, "a"))
		require.NoError(t, w2.Stop(t.Context()))
	})
}

// lateReclaim is a memory store whose QueueReclaim returns only once the
// worker stopped taking runs: the reclaimed runs arrive while it stops.
type lateReclaim struct{ *memstore.Store }

func (q lateReclaim) QueueReclaim(ctx context.Context, p *engine.QueueReclaimParams) ([]*engine.Lease, error) {
	<-ctx.Done()
	return q.Store.QueueReclaim(context.WithoutCancel(ctx), p)
}

// TestStopRequeuesLateReclaim: runs reclaimed as the worker stops are
// requeued for another worker, never executed.
func TestStopRequeuesLateReclaim(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := setup(t)
		ctx := t.Context()
		r := b.submit(t, "test/noop")
		_, err := b.store.QueuePop(ctx, &engine.QueuePopParams{WorkerID: "ghost"})
		require.NoError(t, err)
		w1, err := worker.New(b.engine(t, "w1"), lateReclaim{b.store}, &worker.Config{ID: "w1", Lease: time.Second})
		require.NoError(t, err)
		require.NoError(t, w1.Start(ctx))
		time.Sleep(1500 * time.Millisecond) // the reclaimer waits in QueueReclaim
		require.NoError(t, w1.Stop(ctx))
		require.Zero(t, b.calledTimes(r.ID, "a"), "never executed")
		got := b.get(t, r.ID)
		require.Equal(t, engine.RunPending, got.Status)

		w2 := b.worker(t, "w2", nil)
		require.NoError(t, w2.Start(ctx))
		got = b.waitStatus(t, r.ID, engine.RunCompleted)
		require.Equal(t, "w2", got.WorkerID)
		require.NoError(t, w2.Stop(ctx))
	})
}

// TestStopTaking: a worker told to stop taking runs takes no new one but
// finishes the one it executes; Stop then returns at once.
func TestStopTaking(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := setup(t)
		r := b.submit(t, "test/wait")
		w := b.worker(t, "w1", nil)
		require.NoError(t, w.Start(t.Context()))
		for b.calledTimes(r.ID, "b") == 0 {
			time.Sleep(10 * time.Millisecond)
		}
		w.StopTaking()
		w.StopTaking() // idempotent
		r2 := b.submit(t, "test/noop")
		time.Sleep(2 * time.Second)
		require.Equal(t, engine.RunPending, b.get(t, r2.ID).Status, "not taken")
		close(b.release)
		b.waitStatus(t, r.ID, engine.RunCompleted)
		require.NoError(t, w.Stop(t.Context()))
		require.Equal(t, engine.RunPending, b.get(t, r2.ID).Status)
	})
}

// slowFinish is a memory store whose first RunFinish waits for release
// (closing entered as it starts waiting).
type slowFinish struct {
	*memstore.Store
	once             sync.Once
	entered, release chan struct{}
}

func (s *slowFinish) RunFinish(ctx context.Context, p *engine.RunFinishParams) (*engine.Run, error) {
	first := false
	s.once.Do(func() { first = true })
	if first {
		close(s.entered)
		<-s.release
	}
	return s.Store.RunFinish(ctx, p)
}

// A run whose finish is being written gives its slot back: with
// Concurrency 1 the next run executes meanwhile, and a third does not
// (one run executing, one finishing); the finishing run is still held.
func TestSlotFreedWhileFinishIsWritten(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := setup(t)
		st := &slowFinish{Store: b.store, entered: make(chan struct{}), release: make(chan struct{})}
		eng, err := engine.New(st, b.reg, &engine.Config{WorkerID: "w1"})
		require.NoError(t, err)
		w, err := worker.New(eng, st, &worker.Config{ID: "w1", Concurrency: 1})
		require.NoError(t, err)
		first := b.submit(t, "test/noop")
		require.NoError(t, w.Start(t.Context()))
		<-st.entered // first's tasks ended; its finish is being written

		second := b.submit(t, "test/wait")
		for i := 0; b.calledTimes(second.ID, "b") == 0; i++ {
			if i == 1000 {
				close(st.release) // let the bubble end
				close(b.release)
				_ = w.Stop(t.Context())
				t.Fatal("the second run did not execute while the first's finish was written: its slot was not given back")
			}
			time.Sleep(10 * time.Millisecond)
		}
		third := b.submit(t, "test/noop")
		time.Sleep(2 * time.Second)
		synctest.Wait()
		require.Zero(t, b.calledTimes(third.ID, "a"), "Concurrency 1: no run executes beside the second")
		require.ElementsMatch(t, []string{first.ID, second.ID}, w.Running(), "the finishing run is still held")
		require.Equal(t, engine.RunRunning, b.get(t, first.ID).Status)

		close(st.release)
		b.waitStatus(t, first.ID, engine.RunCompleted)
		require.Zero(t, b.calledTimes(third.ID, "a"), "the second still executes")
		close(b.release)
		b.waitStatus(t, second.ID, engine.RunCompleted)
		b.waitStatus(t, third.ID, engine.RunCompleted)
		require.NoError(t, w.Stop(t.Context()))
	})
}
