package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/builtin"
	"github.com/pyoco/pyoco/engine/memstore"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// faultStore is a memory store whose writes can be made to fail.
type faultStore struct {
	*memstore.Store
	down atomic.Bool // writes fail with ErrUnavailable
	// conflict makes TaskUpdate and TaskUpdateMany fail with ErrConflict (another worker owns the run).
	conflict atomic.Bool
	// beforeFinish, if set, runs at the start of RunFinish.
	beforeFinish func(p *engine.RunFinishParams)
	// finishErr, if set, is returned by RunFinish.
	finishErr error
	// finish, if set, replaces the memory store's RunFinish.
	finish   func(ctx context.Context, p *engine.RunFinishParams) (*engine.Run, error)
	finishes atomic.Int32
}

func (s *faultStore) TaskUpdate(ctx context.Context, p *engine.TaskUpdateParams) error {
	if s.down.Load() {
		return fmt.Errorf("task update: %w", engine.ErrUnavailable)
	}
	if s.conflict.Load() {
		return fmt.Errorf("task update: run owned by another worker: %w", engine.ErrConflict)
	}
	return s.Store.TaskUpdate(ctx, p)
}

func (s *faultStore) TaskUpdateMany(ctx context.Context, p *engine.TaskUpdateManyParams) error {
	if s.down.Load() {
		return fmt.Errorf("task update: %w", engine.ErrUnavailable)
	}
	if s.conflict.Load() {
		return fmt.Errorf("task update: run owned by another worker: %w", engine.ErrConflict)
	}
	return s.Store.TaskUpdateMany(ctx, p)
}

func (s *faultStore) RunFinish(ctx context.Context, p *engine.RunFinishParams) (*engine.Run, error) {
	s.finishes.Add(1)
	if s.beforeFinish != nil {
		s.beforeFinish(p)
	}
	if s.down.Load() {
		return nil, fmt.Errorf("finish: %w", engine.ErrUnavailable)
	}
	if s.finishErr != nil {
		return nil, s.finishErr
	}
	if s.finish != nil {
		return s.finish(ctx, p)
	}
	return s.Store.RunFinish(ctx, p)
}

func (s *faultStore) LogAppend(ctx context.Context, id string, e []engine.LogEntry) error {
	if s.down.Load() {
		return fmt.Errorf("log: %w", engine.ErrUnavailable)
	}
	return s.Store.LogAppend(ctx, id, e)
}

// faultBundle is an engine on a faultStore with the built-ins and a few
// test tasks.
type faultBundle struct {
	store    *faultStore
	reg      *engine.Registry
	eng      *engine.Engine
	calls    atomic.Int32
	progress chan engine.Progress
}

func setupFault(t *testing.T, cfg *engine.Config) *faultBundle {
	t.Helper()
	b := &faultBundle{store: &faultStore{Store: memstore.New()}, reg: engine.NewRegistry(), progress: make(chan engine.Progress, 1000)}
	require.NoError(t, builtin.Register(b.reg))
	add := func(name string, fn engine.TaskFunc) {
		require.NoError(t, b.reg.Add(engine.TaskDef{Name: name, Plugin: "test", Run: fn}))
	}
	add("test/count", func(context.Context, *engine.TaskContext, map[string]any) (any, error) {
		b.calls.Add(1)
		return nil, nil
	})
	// down takes the store down; inputs.for (a duration) brings it back.
	add("test/down", func(_ context.Context, _ *engine.TaskContext, in map[string]any) (any, error) {
		b.store.down.Store(true)
		if s, ok := in["for"].(string); ok {
			d, err := time.ParseDuration(s)
			if err != nil {
				return nil, err
			}
			time.AfterFunc(d, func() { b.store.down.Store(false) })
		}
		return nil, nil
	})
	add("test/takeover", func(context.Context, *engine.TaskContext, map[string]any) (any, error) {
		b.store.conflict.Store(true)
		return nil, nil
	})
	var c engine.Config
	if cfg != nil {
		c = *cfg
	}
	c.Observer = func(p engine.Progress) {
		select {
		case b.progress <- p:
		default:
		}
	}
	eng, err := engine.New(b.store, b.reg, &c)
	require.NoError(t, err)
	b.eng = eng
	return b
}

func (b *faultBundle) submit(t *testing.T, src string) *engine.Run {
	t.Helper()
	f, err := engine.LoadFlow("test.yaml", []byte(src), b.reg)
	require.NoError(t, err)
	run, err := b.eng.Submit(context.Background(), &engine.SubmitParams{Flow: f})
	require.NoError(t, err)
	return run
}

func (b *faultBundle) reports() []engine.Progress {
	var out []engine.Progress
	for {
		select {
		case p := <-b.progress:
			out = append(out, p)
		default:
			return out
		}
	}
}

// stubborn ignores its context: it sleeps inputs.sleep, then writes a log
// line, an stdout line and returns an output.
func addStubborn(t *testing.T, reg *engine.Registry) {
	t.Helper()
	require.NoError(t, reg.Add(engine.TaskDef{Name: "test/stubborn", Plugin: "test", Run: func(_ context.Context, tc *engine.TaskContext, in map[string]any) (any, error) {
		d, err := time.ParseDuration(in["sleep"].(string))
		if err != nil {
			return nil, err
		}
		time.Sleep(d)
		tc.Logger.Info("stubborn woke up")
		fmt.Fprintln(tc.Stdout, "stubborn stdout")
		return map[string]any{"late": true}, nil
	}}))
}

// TestExecuteStubbornTask: a task that ignores its context cannot hold the
// run, and what it does once abandoned is dropped.
func TestExecuteStubbornTask(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, flow   string
		elapsed      time.Duration
		run          engine.RunStatus
		runErr, task string
		taskStatus   engine.TaskStatus
	}{
		{
			name: "task timeout, abandoned after the grace period",
			flow: "flow: {name: stub}\ntasks:\n  s: {use: test/stubborn, timeout: 50ms, inputs: {sleep: 1h}}\n",
			// 50ms time-out + 1s grace.
			elapsed: 1050 * time.Millisecond, run: engine.RunFailed, runErr: "task s failed: task timed out after 50ms",
			task: "task timed out after 50ms", taskStatus: engine.TaskFailed,
		},
		{
			name: "task timeout, success returned late",
			flow: "flow: {name: stub}\ntasks:\n  s: {use: test/stubborn, timeout: 50ms, inputs: {sleep: 200ms}}\n",
			// It returned within the grace period: no waiting for the rest of it.
			elapsed: 200 * time.Millisecond, run: engine.RunFailed, runErr: "task s failed: task timed out after 50ms",
			task: "task timed out after 50ms", taskStatus: engine.TaskFailed,
		},
		{
			name:    "run timeout",
			flow:    "flow: {name: stub, timeout: 100ms}\ntasks:\n  s: {use: test/stubborn, inputs: {sleep: 1h}}\n",
			elapsed: 1100 * time.Millisecond, run: engine.RunFailed, runErr: "run timed out after 100ms",
			task: "cancelled: run timed out", taskStatus: engine.TaskCancelled,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				b := setup(t, &engine.Config{TaskGracePeriod: time.Second})
				addStubborn(t, b.reg)
				run := b.submit(t, "version: 1\n"+tc.flow, nil)
				start := time.Now()
				final, err := b.eng.Execute(context.Background(), &engine.ExecuteParams{RunID: run.ID})
				require.NoError(t, err)
				require.Equal(t, tc.elapsed, time.Since(start))
				require.Equal(t, tc.run, final.Status)
				require.Equal(t, tc.runErr, final.Error)
				require.Equal(t, tc.taskStatus, final.Tasks["s"].Status)
				require.Equal(t, tc.task, final.Tasks["s"].Error)

				// Let the abandoned function finish: nothing of it is recorded.
				time.Sleep(2 * time.Hour)
				synctest.Wait()
				stored, err := b.store.RunGet(context.Background(), run.ID)
				require.NoError(t, err)
				require.Equal(t, tc.taskStatus, stored.Tasks["s"].Status)
				require.Empty(t, stored.Tasks["s"].Output)
				logs, err := b.store.LogList(context.Background(), &engine.LogListParams{RunID: run.ID})
				require.NoError(t, err)
				if tc.elapsed > time.Second {
					require.Empty(t, logs, "an abandoned attempt writes no logs")
				}
			})
		})
	}
}

// TestExecuteStoreOutage: the store's outage budget is shared by the whole
// execution; when it runs out the run is handed back, not failed.
func TestExecuteStoreOutage(t *testing.T) {
	t.Parallel()
	t.Run("budget runs out once", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			b := setupFault(t, nil)
			run := b.submit(t, "version: 1\nflow: {name: out, graph: \"d >> a >> c\"}\ntasks:\n  d: {use: test/down}\n  a: {use: test/count}\n  c: {use: test/count}\n")
			start := time.Now()
			_, err := b.eng.Execute(context.Background(), &engine.ExecuteParams{RunID: run.ID})
			require.ErrorIs(t, err, engine.ErrHandBack)
			require.LessOrEqual(t, time.Since(start), 15*time.Minute+10*time.Second, "one budget for the execution, not one per write")
			require.GreaterOrEqual(t, time.Since(start), 15*time.Minute)
			require.Zero(t, b.calls.Load(), "no task starts once the store is lost")
			b.store.down.Store(false)
			stored, err := b.store.RunGet(context.Background(), run.ID)
			require.NoError(t, err)
			require.Equal(t, engine.RunRunning, stored.Status, "handed back: another worker takes it over")
		})
	})
	t.Run("outages add up", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			b := setupFault(t, nil)
			// Two 10-minute outages: 20 minutes in all, over the budget.
			run := b.submit(t, "version: 1\nflow: {name: out2, graph: \"d1 >> d2 >> c\"}\ntasks:\n  d1: {use: test/down, inputs: {for: 10m}}\n  d2: {use: test/down, inputs: {for: 10m}}\n  c: {use: test/count}\n")
			start := time.Now()
			_, err := b.eng.Execute(context.Background(), &engine.ExecuteParams{RunID: run.ID})
			require.ErrorIs(t, err, engine.ErrHandBack)
			require.Less(t, time.Since(start), 16*time.Minute)
			require.Zero(t, b.calls.Load())
		})
	})
	t.Run("short outage is ridden out", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			b := setupFault(t, nil)
			run := b.submit(t, "version: 1\nflow: {name: out3, graph: \"d >> c\"}\ntasks:\n  d: {use: test/down, inputs: {for: 1m}}\n  c: {use: test/count}\n")
			final, err := b.eng.Execute(context.Background(), &engine.ExecuteParams{RunID: run.ID})
			require.NoError(t, err)
			require.Equal(t, engine.RunCompleted, final.Status)
			require.Equal(t, int32(1), b.calls.Load())
		})
	})
	t.Run("waiting ends with the context", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			b := setupFault(t, nil)
			run := b.submit(t, "version: 1\nflow: {name: out4, graph: \"d >> c\"}\ntasks:\n  d: {use: test/down}\n  c: {use: test/count}\n")
			ctx, cancel := context.WithCancelCause(context.Background())
			time.AfterFunc(time.Minute, func() { cancel(engine.ErrHandBack) })
			start := time.Now()
			_, err := b.eng.Execute(ctx, &engine.ExecuteParams{RunID: run.ID})
			require.ErrorIs(t, err, engine.ErrHandBack)
			require.Less(t, time.Since(start), time.Minute+10*time.Second)
		})
	})
}

// TestExecuteFinishStoreError: finish wraps the store's error.
func TestExecuteFinishStoreError(t *testing.T) {
	t.Parallel()
	b := setupFault(t, nil)
	b.store.finishErr = fmt.Errorf("finish: %w", engine.ErrNotFound)
	run := b.submit(t, "version: 1\nflow: {name: fin}\ntasks:\n  a: {use: noop}\n")
	_, err := b.eng.Execute(context.Background(), &engine.ExecuteParams{RunID: run.ID})
	require.ErrorIs(t, err, engine.ErrNotFound)
	require.Contains(t, err.Error(), "finish run "+run.ID)
}

// TestExecuteLateCancel: a cancellation that arrives while the run is being
// finished does not touch it.
func TestExecuteLateCancel(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := setupFault(t, nil)
		ctx, cancel := context.WithCancelCause(context.Background())
		b.store.beforeFinish = func(*engine.RunFinishParams) {
			cancel(engine.ErrRunCancelled)
			time.Sleep(time.Second) // the watcher, were it still running, would act now
		}
		run := b.submit(t, "version: 1\nflow: {name: late}\ntasks:\n  a: {use: noop}\n")
		final, err := b.eng.Execute(ctx, &engine.ExecuteParams{RunID: run.ID})
		require.NoError(t, err)
		require.Equal(t, engine.RunCompleted, final.Status)
		ev, err := b.store.EventList(context.Background(), &engine.EventListParams{})
		require.NoError(t, err)
		var seen []engine.RunStatus
		for _, e := range ev {
			seen = append(seen, e.Status)
		}
		require.Equal(t, []engine.RunStatus{engine.RunPending, engine.RunRunning, engine.RunCompleted}, seen)
		for _, p := range b.reports() {
			require.NotEqual(t, engine.ProgressRunCancelling, p.Kind)
		}
	})
}

// TestExecuteOwnershipLost: a task write refused with ErrConflict means
// another worker took the run over: this execution stops quietly.
func TestExecuteOwnershipLost(t *testing.T) {
	t.Parallel()
	b := setupFault(t, nil)
	run := b.submit(t, "version: 1\nflow: {name: own, graph: \"take >> after\"}\ntasks:\n  take: {use: test/takeover}\n  after: {use: test/count}\n")
	_, err := b.eng.Execute(context.Background(), &engine.ExecuteParams{RunID: run.ID})
	require.ErrorIs(t, err, engine.ErrConflict)
	require.Zero(t, b.calls.Load(), "nothing runs after the run was lost")
	require.Zero(t, b.store.finishes.Load(), "a lost run is not finished here")
	stored, err := b.store.RunGet(context.Background(), run.ID)
	require.NoError(t, err)
	require.Equal(t, engine.RunRunning, stored.Status)
}

// TestExecuteFinishConflict: a run finished elsewhere meanwhile reports the
// stored status.
func TestExecuteFinishConflict(t *testing.T) {
	t.Parallel()
	b := setupFault(t, nil)
	b.store.beforeFinish = func(p *engine.RunFinishParams) {
		_, _ = b.store.Store.RunFinish(context.Background(), &engine.RunFinishParams{RunID: p.RunID, Status: engine.RunFailed, Error: "failed elsewhere"})
	}
	run := b.submit(t, "version: 1\nflow: {name: conf}\ntasks:\n  a: {use: noop}\n")
	final, err := b.eng.Execute(context.Background(), &engine.ExecuteParams{RunID: run.ID})
	require.NoError(t, err)
	require.Equal(t, engine.RunFailed, final.Status)
	var last engine.Progress
	for _, p := range b.reports() {
		last = p
	}
	require.Equal(t, engine.ProgressRunFinished, last.Kind)
	require.Equal(t, string(engine.RunFailed), last.Status)
	require.Equal(t, "failed elsewhere", last.Error)
}

// TestExecuteFinishOwnerLost: a finish refused because another worker took
// the run over (the stored run is still going) stops quietly: no run-end
// metrics or progress from this worker, an error wrapping ErrConflict.
func TestExecuteFinishOwnerLost(t *testing.T) {
	t.Parallel()
	b := setupFault(t, nil)
	b.store.finishErr = fmt.Errorf("finish: owner lost: the run was taken over (attempt 2): %w", engine.ErrConflict)
	run := b.submit(t, "version: 1\nflow: {name: lost}\ntasks:\n  a: {use: noop}\n")
	_, err := b.eng.Execute(context.Background(), &engine.ExecuteParams{RunID: run.ID})
	require.ErrorIs(t, err, engine.ErrConflict)
	for _, p := range b.reports() {
		require.NotEqual(t, engine.ProgressRunFinished, p.Kind, "a run taken over is not reported finished here")
	}
	stored, err := b.store.RunGet(context.Background(), run.ID)
	require.NoError(t, err)
	require.Equal(t, engine.RunRunning, stored.Status)
}

type panicky struct{}

func (panicky) MarshalJSON() ([]byte, error) { panic("marshal boom") }

// TestExecuteOutputMarshalPanic: an output whose encoding panics fails the
// task (without retries) instead of crashing the process.
func TestExecuteOutputMarshalPanic(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	require.NoError(t, b.reg.Add(engine.TaskDef{Name: "test/panicky", Plugin: "test", Run: func(context.Context, *engine.TaskContext, map[string]any) (any, error) {
		return map[string]any{"v": panicky{}}, nil
	}}))
	final := b.run(t, "version: 1\nflow: {name: pm}\ntasks:\n  p: {use: test/panicky, retries: 2}\n")
	require.Equal(t, engine.RunFailed, final.Status)
	require.Equal(t, engine.TaskFailed, final.Tasks["p"].Status)
	require.Contains(t, final.Tasks["p"].Error, "output is not JSON-serialisable")
	require.Contains(t, final.Tasks["p"].Error, "marshal boom")
	require.Len(t, final.Tasks["p"].Attempts, 1)
}

// TestExecuteFailStopMessage: the run's error names the stop task that
// stopped it, not an earlier isolated failure.
func TestExecuteFailStopMessage(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	final := b.run(t, `version: 1
flow: {name: msg, max_parallel: 1}
tasks:
  iso: {use: fail, fail_policy: isolate, inputs: {message: isolated}}
  bad: {use: fail, inputs: {message: stopping}}
  later: {use: noop}
`)
	require.Equal(t, engine.RunFailed, final.Status)
	require.Equal(t, "task bad failed: stopping", final.Error)
	require.Equal(t, engine.TaskCancelled, final.Tasks["later"].Status)
}

// lostWorker plays a worker that took run id and was lost.
func lostWorker(t *testing.T, s engine.Store, id string) {
	t.Helper()
	_, err := s.RunStart(context.Background(), &engine.RunStartParams{RunID: id, WorkerID: "lost", At: time.Now()})
	require.NoError(t, err)
}

// TestExecuteResumeRepairs: a takeover closes the lost worker's attempts
// and runs again the tasks its shutdown cancelled.
func TestExecuteResumeRepairs(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	run := b.submit(t, `version: 1
flow: {name: repair, graph: "a >> b >> c; d"}
tasks:
  a: {use: test/record}
  b: {use: test/record}
  c: {use: test/record}
  d: {use: test/record}
`, nil)
	ctx := context.Background()
	lostWorker(t, b.store, run.ID)
	started, err := b.store.RunGet(ctx, run.ID)
	require.NoError(t, err)
	t0 := time.Now().UTC().Add(-time.Minute)
	require.NoError(t, b.store.TaskUpdate(ctx, &engine.TaskUpdateParams{RunID: run.ID, Task: "a", Status: engine.TaskSucceeded,
		StartedAt: t0, EndedAt: t0, Output: json.RawMessage(`{}`),
		Attempt: &engine.Attempt{Number: 1, Status: engine.TaskSucceeded, StartedAt: t0, EndedAt: t0}}))
	// b was running when the worker died.
	require.NoError(t, b.store.TaskUpdate(ctx, &engine.TaskUpdateParams{RunID: run.ID, Task: "b", Status: engine.TaskRunning,
		StartedAt: t0, Attempt: &engine.Attempt{Number: 1, Status: engine.TaskRunning, StartedAt: t0, WorkerID: "lost"}}))
	// d was cancelled by the lost worker's shutdown.
	require.NoError(t, b.store.TaskUpdate(ctx, &engine.TaskUpdateParams{RunID: run.ID, Task: "d", Status: engine.TaskCancelled,
		StartedAt: t0, EndedAt: t0, Error: "cancelled: run handed back",
		Attempt: &engine.Attempt{Number: 1, Status: engine.TaskCancelled, StartedAt: t0, EndedAt: t0}}))

	final, err := b.eng.Execute(ctx, &engine.ExecuteParams{RunID: run.ID})
	require.NoError(t, err)
	require.Equal(t, engine.RunCompleted, final.Status, final.Error)
	require.Equal(t, started.StartedAt, final.StartedAt, "a takeover keeps the run's start")
	require.Equal(t, map[string]engine.TaskStatus{"a": engine.TaskSucceeded, "b": engine.TaskSucceeded, "c": engine.TaskSucceeded, "d": engine.TaskSucceeded}, states(final))
	require.Zero(t, b.calls["a"])

	bt := final.Tasks["b"]
	require.Len(t, bt.Attempts, 2)
	require.Equal(t, engine.TaskFailed, bt.Attempts[0].Status)
	require.Equal(t, "interrupted: worker lost", bt.Attempts[0].Error)
	require.False(t, bt.Attempts[0].EndedAt.IsZero())
	require.Equal(t, engine.TaskSucceeded, bt.Attempts[1].Status)
	require.True(t, bt.StartedAt.Equal(t0), "the task keeps its first attempt's start")
	require.Len(t, final.Tasks["d"].Attempts, 2)
	require.Equal(t, 1, b.calls["d"])
}

// TestExecuteResumeAfterStopFailure: a run whose stop task failed before
// the takeover fails without running anything more.
func TestExecuteResumeAfterStopFailure(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	run := b.submit(t, "version: 1\nflow: {name: sf, graph: \"a; b\"}\ntasks:\n  a: {use: test/record}\n  b: {use: test/record}\n", nil)
	ctx := context.Background()
	lostWorker(t, b.store, run.ID)
	now := time.Now().UTC()
	require.NoError(t, b.store.TaskUpdate(ctx, &engine.TaskUpdateParams{RunID: run.ID, Task: "a", Status: engine.TaskFailed, StartedAt: now, EndedAt: now, Error: "broken"}))
	final, err := b.eng.Execute(ctx, &engine.ExecuteParams{RunID: run.ID})
	require.NoError(t, err)
	require.Equal(t, engine.RunFailed, final.Status)
	require.Equal(t, "task a failed: broken", final.Error)
	require.Equal(t, engine.TaskCancelled, final.Tasks["b"].Status)
	require.Zero(t, b.calls["b"])
}

// TestExecuteBrokenSnapshot: a run whose snapshot does not load, or whose
// stored output does not decode, fails with no task left PENDING.
func TestExecuteBrokenSnapshot(t *testing.T) {
	t.Parallel()
	t.Run("flow", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		run := &engine.Run{ID: engine.NewRunID(), FlowName: "broken", FlowSource: "version: 1\nflow: {name: broken}\ntasks:\n  a: {use: nosuchtask}\n",
			Status: engine.RunPending, TraceID: engine.NewTraceID().String(),
			Tasks: map[string]*engine.TaskState{"a": {Name: "a", Use: "nosuchtask", Status: engine.TaskPending}, "b": {Name: "b", Use: "noop", Status: engine.TaskPending}}}
		require.NoError(t, b.store.RunCreate(context.Background(), run))
		final, err := b.eng.Execute(context.Background(), &engine.ExecuteParams{RunID: run.ID})
		require.NoError(t, err)
		require.Equal(t, engine.RunFailed, final.Status)
		require.Contains(t, final.Error, "load flow snapshot")
		require.Equal(t, map[string]engine.TaskStatus{"a": engine.TaskCancelled, "b": engine.TaskCancelled}, states(final))
	})
	t.Run("output", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		run := b.submit(t, "version: 1\nflow: {name: out, graph: \"a >> b\"}\ntasks:\n  a: {use: noop}\n  b: {use: test/record}\n", nil)
		ctx := context.Background()
		lostWorker(t, b.store, run.ID)
		now := time.Now().UTC()
		require.NoError(t, b.store.TaskUpdate(ctx, &engine.TaskUpdateParams{RunID: run.ID, Task: "a", Status: engine.TaskSucceeded, StartedAt: now, EndedAt: now, Output: json.RawMessage(`{broken`)}))
		require.NoError(t, b.store.TaskUpdate(ctx, &engine.TaskUpdateParams{RunID: run.ID, Task: "b", Status: engine.TaskRunning, StartedAt: now,
			Attempt: &engine.Attempt{Number: 1, Status: engine.TaskRunning, StartedAt: now}}))
		final, err := b.eng.Execute(ctx, &engine.ExecuteParams{RunID: run.ID})
		require.NoError(t, err)
		require.Equal(t, engine.RunFailed, final.Status)
		require.Contains(t, final.Error, "decode stored output of a")
		require.Equal(t, engine.TaskCancelled, final.Tasks["b"].Status)
		require.Equal(t, engine.TaskFailed, final.Tasks["b"].Attempts[0].Status)
		require.False(t, final.Tasks["b"].Attempts[0].EndedAt.IsZero())
	})
}

// TestExecuteLogCapPerRun: the entry cap counts the entries of earlier
// executions of the run.
func TestExecuteLogCapPerRun(t *testing.T) {
	t.Parallel()
	b := setup(t, &engine.Config{LogMaxEntries: 4})
	run := b.submit(t, "version: 1\nflow: {name: capped}\ntasks:\n  talk: {use: test/chatty}\n", nil)
	ctx := context.Background()
	lostWorker(t, b.store, run.ID)
	// The lost worker had stored two entries.
	require.NoError(t, b.store.LogAppend(ctx, run.ID, []engine.LogEntry{{Task: "talk", Text: "one"}, {Task: "talk", Text: "two"}}))
	final, err := b.eng.Execute(ctx, &engine.ExecuteParams{RunID: run.ID})
	require.NoError(t, err)
	require.Equal(t, engine.RunCompleted, final.Status)
	logs, err := b.store.LogList(ctx, &engine.LogListParams{RunID: run.ID})
	require.NoError(t, err)
	require.Len(t, logs, 4)
	require.Equal(t, engine.LogTruncatedMarker, logs[3].Text)
}

// TestExecuteLongLinesKeepRunes: output cut into entries never splits a rune.
func TestExecuteLongLinesKeepRunes(t *testing.T) {
	t.Parallel()
	b := setup(t, &engine.Config{LogMaxEntryBytes: 16})
	require.NoError(t, b.reg.Add(engine.TaskDef{Name: "test/runes", Plugin: "test", Run: func(_ context.Context, tc *engine.TaskContext, _ map[string]any) (any, error) {
		fmt.Fprint(tc.Stdout, "a"+strings.Repeat("é", 40))
		return nil, nil
	}}))
	final := b.run(t, "version: 1\nflow: {name: runes}\ntasks:\n  r: {use: test/runes}\n")
	require.Equal(t, engine.RunCompleted, final.Status)
	logs, err := b.store.LogList(context.Background(), &engine.LogListParams{RunID: final.ID})
	require.NoError(t, err)
	var all strings.Builder
	for _, l := range logs {
		require.True(t, utf8.ValidString(l.Text))
		require.NotContains(t, l.Text, "\uFFFD")
		require.LessOrEqual(t, len(l.Text), 16)
		all.WriteString(l.Text)
	}
	require.Equal(t, "a"+strings.Repeat("é", 40), all.String())
}

// TestExecuteUnsampledParent: a traceparent without the sampled flag keeps
// the run unsampled (parent-based sampling records nothing).
func TestExecuteUnsampledParent(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
	t.Cleanup(func() { require.NoError(t, tp.Shutdown(context.Background())) })
	b := setup(t, &engine.Config{TracerProvider: tp})
	f, err := engine.LoadFlow("t.yaml", []byte(tracedFlow), b.reg)
	require.NoError(t, err)
	for _, tc := range []struct {
		flags string
		spans int
	}{{"00", 0}, {"01", 4}} {
		before := len(rec.Ended())
		run, err := b.eng.Submit(context.Background(), &engine.SubmitParams{Flow: f, TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-" + tc.flags})
		require.NoError(t, err)
		require.Equal(t, tc.flags == "00", run.ParentUnsampled)
		final, err := b.eng.Execute(context.Background(), &engine.ExecuteParams{RunID: run.ID})
		require.NoError(t, err)
		require.Equal(t, engine.RunCompleted, final.Status)
		require.Len(t, rec.Ended()[before:], tc.spans, "flags %s", tc.flags)
	}
}

func TestExecuteGraceConfig(t *testing.T) {
	t.Parallel()
	_, err := engine.New(memstore.New(), engine.NewRegistry(), &engine.Config{TaskGracePeriod: -time.Second})
	require.Error(t, err)
	require.True(t, errors.Is(fmt.Errorf("w: %w", engine.ErrHandBack), engine.ErrHandBack))
}

// TestFailClosesAttempts: Engine.Fail ends the attempts a lost worker left
// RUNNING, and no task stays unfinished.
func TestFailClosesAttempts(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	run := b.submit(t, "version: 1\nflow: {name: gaveup, graph: \"a >> b\"}\ntasks:\n  a: {use: noop}\n  b: {use: noop}\n", nil)
	ctx := context.Background()
	lostWorker(t, b.store, run.ID)
	now := time.Now().UTC()
	require.NoError(t, b.store.TaskUpdate(ctx, &engine.TaskUpdateParams{RunID: run.ID, Task: "a", Status: engine.TaskRunning, StartedAt: now,
		Attempt: &engine.Attempt{Number: 1, Status: engine.TaskRunning, StartedAt: now}}))
	final, err := b.eng.Fail(ctx, run.ID, "too many takeovers")
	require.NoError(t, err)
	require.Equal(t, engine.RunFailed, final.Status)
	require.Equal(t, map[string]engine.TaskStatus{"a": engine.TaskCancelled, "b": engine.TaskCancelled}, states(final))
	a := final.Tasks["a"].Attempts
	require.Len(t, a, 1)
	require.Equal(t, engine.TaskFailed, a[0].Status)
	require.Equal(t, "interrupted: worker lost", a[0].Error)
	require.False(t, a[0].EndedAt.IsZero())
}

// TestRunCloneIndependent: a clone shares nothing writable with the
// original, nor one task's slices with another's.
func TestRunCloneIndependent(t *testing.T) {
	t.Parallel()
	now := time.Now()
	r := &engine.Run{ID: "r", Tasks: map[string]*engine.TaskState{
		"a": {Name: "a", Attempts: []engine.Attempt{{Number: 1, StartedAt: now}}, Output: json.RawMessage(`{"x":1}`)},
		"b": {Name: "b", Attempts: []engine.Attempt{{Number: 1}, {Number: 2}}, Output: json.RawMessage(`[2]`)},
		"c": {Name: "c"},
	}}
	c := r.Clone()
	require.Equal(t, r, c)
	c.Tasks["a"].Attempts = append(c.Tasks["a"].Attempts, engine.Attempt{Number: 99})
	c.Tasks["a"].Output = append(c.Tasks["a"].Output, 'z')
	c.Tasks["a"].Attempts[0].Number = 7
	c.Tasks["b"].Output[0] = '{'
	require.Equal(t, 1, c.Tasks["b"].Attempts[0].Number)
	require.Equal(t, `[2]`, string(r.Tasks["b"].Output))
	require.Equal(t, 1, r.Tasks["a"].Attempts[0].Number)
	require.Len(t, r.Tasks["a"].Attempts, 1)
	require.Nil(t, c.Tasks["c"].Attempts)
	require.Nil(t, c.Tasks["c"].Output)
}

// TestExecuteResumeAfterTimeout: a run taken over after its flow timeout
// passed fails without starting anything.
func TestExecuteResumeAfterTimeout(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := setup(t, nil)
		run := b.submit(t, "version: 1\nflow: {name: late, timeout: 1s, graph: \"a >> b\"}\ntasks:\n  a: {use: test/record}\n  b: {use: test/record}\n", nil)
		lostWorker(t, b.store, run.ID)
		time.Sleep(2 * time.Second)
		final, err := b.eng.Execute(context.Background(), &engine.ExecuteParams{RunID: run.ID})
		require.NoError(t, err)
		require.Equal(t, engine.RunFailed, final.Status)
		require.Equal(t, "run timed out after 1s", final.Error)
		require.Empty(t, b.order, "nothing started")
		require.Equal(t, map[string]engine.TaskStatus{"a": engine.TaskCancelled, "b": engine.TaskCancelled}, states(final))
	})
}
