package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/builtin"
	"github.com/pyoco/pyoco/engine/memstore"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testBundle is one engine on a fresh memory store with the built-in tasks
// and test tasks.
type testBundle struct {
	store *memstore.Store
	reg   *engine.Registry
	eng   *engine.Engine

	mu       sync.Mutex
	order    []string       // names in the order "record" tasks ran
	calls    map[string]int // calls per task name
	progress []engine.Progress
}

func setup(t *testing.T, cfg *engine.Config) *testBundle {
	t.Helper()
	b := &testBundle{store: memstore.New(), reg: engine.NewRegistry(), calls: map[string]int{}}
	require.NoError(t, builtin.Register(b.reg))
	add := func(d engine.TaskDef) { require.NoError(t, b.reg.Add(d)) }
	// record appends the task's name to b.order and returns its inputs.
	add(engine.TaskDef{Name: "test/record", Plugin: "test", Run: func(ctx context.Context, tc *engine.TaskContext, in map[string]any) (any, error) {
		b.mu.Lock()
		b.order = append(b.order, tc.Task)
		b.calls[tc.Task]++
		b.mu.Unlock()
		return in, nil
	}})
	// flaky fails until its attempt number reaches inputs.succeed_on.
	add(engine.TaskDef{Name: "test/flaky", Plugin: "test", Run: func(ctx context.Context, tc *engine.TaskContext, in map[string]any) (any, error) {
		b.mu.Lock()
		b.calls[tc.Task]++
		b.mu.Unlock()
		if n, _ := in["succeed_on"].(float64); tc.Attempt < int(n) {
			return nil, fmt.Errorf("flaky attempt %d", tc.Attempt)
		}
		return map[string]any{"attempt": tc.Attempt}, nil
	}})
	add(engine.TaskDef{Name: "test/panic", Plugin: "test", Run: func(context.Context, *engine.TaskContext, map[string]any) (any, error) {
		panic("boom")
	}})
	add(engine.TaskDef{Name: "test/badoutput", Plugin: "test", Run: func(context.Context, *engine.TaskContext, map[string]any) (any, error) {
		return map[string]any{"ch": make(chan int)}, nil
	}})
	add(engine.TaskDef{Name: "test/chatty", Plugin: "test", Run: func(ctx context.Context, tc *engine.TaskContext, in map[string]any) (any, error) {
		tc.Logger.InfoContext(ctx, "hello from the logger", "k", "v")
		fmt.Fprint(tc.Stdout, "line one\nline two\npartial")
		fmt.Fprintln(tc.Stderr, "oops")
		return nil, nil
	}})
	var c engine.Config
	if cfg != nil {
		c = *cfg
	}
	c.Observer = func(p engine.Progress) {
		b.mu.Lock()
		b.progress = append(b.progress, p)
		b.mu.Unlock()
	}
	eng, err := engine.New(b.store, b.reg, &c)
	require.NoError(t, err)
	b.eng = eng
	return b
}

func (b *testBundle) submit(t *testing.T, src string, params map[string]any) *engine.Run {
	t.Helper()
	f, err := engine.LoadFlow("test.yaml", []byte(src), b.reg)
	require.NoError(t, err)
	run, err := b.eng.Submit(context.Background(), &engine.SubmitParams{Flow: f, Params: params})
	require.NoError(t, err)
	return run
}

func (b *testBundle) run(t *testing.T, src string) *engine.Run {
	t.Helper()
	run := b.submit(t, src, nil)
	final, err := b.eng.Execute(context.Background(), &engine.ExecuteParams{RunID: run.ID})
	require.NoError(t, err)
	return final
}

func states(r *engine.Run) map[string]engine.TaskStatus {
	out := map[string]engine.TaskStatus{}
	for n, t := range r.Tasks {
		out[n] = t.Status
	}
	return out
}

func output(t *testing.T, r *engine.Run, task string) any {
	t.Helper()
	var v any
	require.NoError(t, json.Unmarshal(r.Tasks[task].Output, &v))
	return v
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func TestExecuteDiamondOrderAndReferences(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	final := b.run(t, `version: 1
flow:
  name: diamond
  defaults: {spice: hot}
  graph: |
    gather >> (chop & boil) >> curry
tasks:
  gather: {use: test/record, inputs: {items: [rice, carrot]}}
  chop:   {use: test/record, inputs: {what: "$node.gather.output.items.1", spice: "$ctx.params.spice"}}
  boil:   {use: test/record, inputs: {n: 2}}
  curry:  {use: test/record, inputs: {got: "$node.chop.output", note: "boiled ${node.boil.output.n} with ${ctx.params.spice}"}}
`)
	require.Equal(t, engine.RunCompleted, final.Status, final.Error)
	for _, s := range states(final) {
		require.Equal(t, engine.TaskSucceeded, s)
	}
	require.Len(t, b.order, 4)
	require.Equal(t, "gather", b.order[0])
	require.Equal(t, "curry", b.order[3])
	require.ElementsMatch(t, []string{"chop", "boil"}, b.order[1:3])
	require.Equal(t, map[string]any{
		"got":  map[string]any{"what": "carrot", "spice": "hot"},
		"note": "boiled 2 with hot",
	}, output(t, final, "curry"))
	require.Equal(t, 1, final.Attempt)
	require.False(t, final.StartedAt.IsZero())
	require.False(t, final.EndedAt.IsZero())
}

// TestExecuteParallelism shows tasks really run at once (a barrier that
// only opens when max_parallel tasks are inside it) and never more than
// max_parallel.
func TestExecuteParallelism(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	const maxPar = 3
	var inside, peak atomic.Int32
	var mu sync.Mutex
	arrived := 0
	open := make(chan struct{})
	require.NoError(t, b.reg.Add(engine.TaskDef{Name: "test/barrier", Plugin: "test", Run: func(ctx context.Context, tc *engine.TaskContext, in map[string]any) (any, error) {
		n := inside.Add(1)
		defer inside.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		mu.Lock()
		arrived++
		if arrived == maxPar {
			close(open)
		}
		mu.Unlock()
		select {
		case <-open:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}}))
	var tasks strings.Builder
	for i := range 9 {
		fmt.Fprintf(&tasks, "  t%d: {use: test/barrier, timeout: 1m}\n", i)
	}
	final := b.run(t, fmt.Sprintf("version: 1\nflow: {name: par, max_parallel: %d}\ntasks:\n%s", maxPar, tasks.String()))
	require.Equal(t, engine.RunCompleted, final.Status, final.Error)
	require.Equal(t, int32(maxPar), peak.Load())
}

func TestExecuteRetriesWithBackoff(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		retries   int
		succeedOn int
		want      engine.TaskStatus
		attempts  int
		elapsed   time.Duration
	}{
		{"succeeds on third", 2, 3, engine.TaskSucceeded, 3, 3 * time.Second},          // 1s + 2s
		{"out of retries", 1, 3, engine.TaskFailed, 2, 1 * time.Second},                // 1s
		{"first try", 3, 1, engine.TaskSucceeded, 1, 0},                                //
		{"capped delay", 4, 5, engine.TaskSucceeded, 5, (1 + 2 + 3 + 3) * time.Second}, // cap 3s
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				b := setup(t, nil)
				start := time.Now()
				final := b.run(t, fmt.Sprintf(`version: 1
flow: {name: retry}
tasks:
  f: {use: test/flaky, retries: %d, retry_delay: 1s, retry_max_delay: 3s, inputs: {succeed_on: %d}}
`, tc.retries, tc.succeedOn))
				require.Equal(t, tc.elapsed, time.Since(start))
				require.Equal(t, tc.want, final.Tasks["f"].Status)
				require.Len(t, final.Tasks["f"].Attempts, tc.attempts)
				require.Equal(t, tc.attempts, b.calls["f"])
				for i, a := range final.Tasks["f"].Attempts {
					require.Equal(t, i+1, a.Number)
					if i < tc.attempts-1 || tc.want == engine.TaskFailed {
						require.Equal(t, engine.TaskFailed, a.Status)
						require.Contains(t, a.Error, "flaky attempt")
					}
				}
				if tc.want == engine.TaskFailed {
					require.Equal(t, engine.RunFailed, final.Status)
					require.Contains(t, final.Error, "task f failed")
				}
			})
		})
	}
}

func TestExecuteTaskTimeoutInterrupts(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := setup(t, nil)
		start := time.Now()
		final := b.run(t, `version: 1
flow: {name: timeout}
tasks:
  nap: {use: sleep, timeout: 50ms, retries: 1, retry_delay: 10ms, inputs: {duration: 1h}}
`)
		// Two attempts of 50ms and a 10ms back-off: the 1h sleep was interrupted.
		require.Equal(t, 110*time.Millisecond, time.Since(start))
		require.Equal(t, engine.RunFailed, final.Status)
		nap := final.Tasks["nap"]
		require.Equal(t, engine.TaskFailed, nap.Status)
		require.Len(t, nap.Attempts, 2)
		require.Equal(t, "task timed out after 50ms", nap.Error)
	})
}

func TestExecuteRunTimeout(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := setup(t, nil)
		start := time.Now()
		final := b.run(t, `version: 1
flow: {name: slow, timeout: 200ms}
tasks:
  nap: {use: sleep, inputs: {duration: 1h}}
  after: {use: noop, depends_on: [nap]}
`)
		require.Equal(t, 200*time.Millisecond, time.Since(start))
		require.Equal(t, engine.RunFailed, final.Status)
		require.Equal(t, "run timed out after 200ms", final.Error)
		require.Equal(t, map[string]engine.TaskStatus{"nap": engine.TaskCancelled, "after": engine.TaskCancelled}, states(final))
	})
}

func TestExecuteIsolateSkipsDownstream(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	final := b.run(t, `version: 1
flow:
  name: iso
  graph: |
    bad >> child >> grandchild
    good >> other
    (bad | good) >> either
tasks:
  bad: {use: fail, fail_policy: isolate, inputs: {message: nope}}
  child: {use: test/record}
  grandchild: {use: test/record}
  good: {use: test/record}
  other: {use: test/record}
  either: {use: test/record}
`)
	require.Equal(t, engine.RunCompleted, final.Status, final.Error)
	require.Equal(t, map[string]engine.TaskStatus{
		"bad": engine.TaskFailed, "child": engine.TaskSkipped, "grandchild": engine.TaskSkipped,
		"good": engine.TaskSucceeded, "other": engine.TaskSucceeded, "either": engine.TaskSucceeded,
	}, states(final))
	require.Equal(t, "nope", final.Tasks["bad"].Error)
	require.Contains(t, final.Tasks["child"].Error, "upstream bad FAILED")
	require.Zero(t, b.calls["child"])
}

func TestExecuteAnyTrigger(t *testing.T) {
	t.Parallel()
	t.Run("one upstream succeeds", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		final := b.run(t, `version: 1
flow: {name: anyok, graph: "(a | b) >> c"}
tasks:
  a: {use: fail, fail_policy: isolate}
  b: {use: test/record}
  c: {use: test/record, inputs: {from: "$node.b.output"}}
`)
		require.Equal(t, engine.RunCompleted, final.Status)
		require.Equal(t, engine.TaskSucceeded, final.Tasks["c"].Status)
	})
	t.Run("starts before slow upstream ends", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			b := setup(t, nil)
			final := b.run(t, `version: 1
flow: {name: anyfast, graph: "(fast | slow) >> c"}
tasks:
  fast: {use: test/record}
  slow: {use: sleep, inputs: {duration: 1s}}
  c: {use: test/record}
`)
			require.Equal(t, engine.RunCompleted, final.Status)
			require.True(t, final.Tasks["c"].EndedAt.Before(final.Tasks["slow"].EndedAt))
		})
	})
	t.Run("no upstream succeeds", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		final := b.run(t, `version: 1
flow: {name: anynone, graph: "(a | b) >> c"}
tasks:
  a: {use: fail, fail_policy: isolate}
  b: {use: fail, fail_policy: isolate}
  c: {use: test/record}
`)
		require.Equal(t, engine.RunCompleted, final.Status)
		require.Equal(t, engine.TaskSkipped, final.Tasks["c"].Status)
	})
}

func TestExecuteFailStopCancelsTheRest(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := setup(t, nil)
		final := b.run(t, `version: 1
flow: {name: stop, graph: "bad >> after; slow"}
tasks:
  bad: {use: fail, inputs: {message: broken}}
  after: {use: test/record}
  slow: {use: sleep, inputs: {duration: 1h}}
`)
		require.Equal(t, engine.RunFailed, final.Status)
		require.Equal(t, "task bad failed: broken", final.Error)
		require.Equal(t, map[string]engine.TaskStatus{"bad": engine.TaskFailed, "after": engine.TaskCancelled, "slow": engine.TaskCancelled}, states(final))
	})
}

func TestExecuteCancel(t *testing.T) {
	t.Parallel()
	src := `version: 1
flow: {name: cancel, graph: "nap >> next"}
tasks:
  nap: {use: sleep, inputs: {duration: 1h}}
  next: {use: noop}
  side: {use: sleep, inputs: {duration: 1h}}
`
	check := func(t *testing.T, b *testBundle, final *engine.Run) {
		require.Equal(t, engine.RunCancelled, final.Status)
		for name, s := range states(final) {
			require.Equal(t, engine.TaskCancelled, s, name)
		}
		stored, err := b.store.RunGet(context.Background(), final.ID)
		require.NoError(t, err)
		for name, ts := range stored.Tasks {
			require.NotEqual(t, engine.TaskRunning, ts.Status, name)
		}
		ev, err := b.store.EventList(context.Background(), &engine.EventListParams{})
		require.NoError(t, err)
		var seen []engine.RunStatus
		for _, e := range ev {
			seen = append(seen, e.Status)
		}
		require.Equal(t, []engine.RunStatus{engine.RunPending, engine.RunRunning, engine.RunCancelling, engine.RunCancelled}, seen)
	}
	t.Run("context", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			b := setup(t, nil)
			run := b.submit(t, src, nil)
			ctx, cancel := context.WithCancelCause(context.Background())
			time.AfterFunc(time.Second, func() { cancel(engine.ErrRunCancelled) })
			final, err := b.eng.Execute(ctx, &engine.ExecuteParams{RunID: run.ID})
			require.NoError(t, err)
			check(t, b, final)
		})
	})
	t.Run("store request", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			b := setup(t, nil)
			run := b.submit(t, src, nil)
			time.AfterFunc(time.Second, func() {
				st, err := b.eng.Cancel(context.Background(), run.ID)
				if err != nil || st != engine.RunCancelling {
					panic(fmt.Sprint(st, err))
				}
			})
			final, err := b.eng.Execute(context.Background(), &engine.ExecuteParams{RunID: run.ID})
			require.NoError(t, err)
			check(t, b, final)
			_, err = b.eng.Cancel(context.Background(), run.ID)
			require.ErrorIs(t, err, engine.ErrConflict)
		})
	})
	t.Run("pending", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		run := b.submit(t, src, nil)
		st, err := b.eng.Cancel(context.Background(), run.ID)
		require.NoError(t, err)
		require.Equal(t, engine.RunCancelled, st)
		_, err = b.eng.Execute(context.Background(), &engine.ExecuteParams{RunID: run.ID})
		require.ErrorIs(t, err, engine.ErrConflict)
	})
}

// TestExecuteResume plays a takeover: the first worker finished "a" and was
// lost while running "b"; the second does not run "a" again and feeds its
// stored output downstream.
func TestExecuteResume(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	run := b.submit(t, `version: 1
flow: {name: resume, graph: "a >> b >> c"}
tasks:
  a: {use: test/record, inputs: {v: 1}}
  b: {use: test/record, inputs: {from_a: "$node.a.output.v"}}
  c: {use: test/record, inputs: {from_b: "$node.b.output"}}
`, nil)
	ctx := context.Background()
	_, err := b.store.RunStart(ctx, &engine.RunStartParams{RunID: run.ID, WorkerID: "lost", At: time.Now()})
	require.NoError(t, err)
	now := time.Now()
	require.NoError(t, b.store.TaskUpdate(ctx, &engine.TaskUpdateParams{RunID: run.ID, Task: "a", Status: engine.TaskSucceeded,
		StartedAt: now, EndedAt: now, Output: json.RawMessage(`{"v":41}`),
		Attempt: &engine.Attempt{Number: 1, Status: engine.TaskSucceeded, StartedAt: now, EndedAt: now}}))
	require.NoError(t, b.store.TaskUpdate(ctx, &engine.TaskUpdateParams{RunID: run.ID, Task: "b", Status: engine.TaskRunning,
		StartedAt: now, Attempt: &engine.Attempt{Number: 1, Status: engine.TaskRunning, StartedAt: now}}))

	final, err := b.eng.Execute(ctx, &engine.ExecuteParams{RunID: run.ID})
	require.NoError(t, err)
	require.Equal(t, engine.RunCompleted, final.Status, final.Error)
	require.Equal(t, 2, final.Attempt)
	require.Zero(t, b.calls["a"], "a SUCCEEDED before the takeover and must not run again")
	require.Equal(t, 1, b.calls["b"])
	require.Equal(t, map[string]any{"from_b": map[string]any{"from_a": float64(41)}}, output(t, final, "c"))
	require.Len(t, final.Tasks["b"].Attempts, 2, "the interrupted attempt stays recorded")
	require.Equal(t, 2, final.Tasks["b"].Attempts[1].Number)
}

func TestExecuteHandBack(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := setup(t, nil)
		run := b.submit(t, `version: 1
flow: {name: handback, graph: "first >> nap"}
tasks:
  first: {use: test/record}
  nap: {use: sleep, inputs: {duration: 10s}}
`, nil)
		ctx, cancel := context.WithCancelCause(context.Background())
		time.AfterFunc(time.Second, func() { cancel(engine.ErrHandBack) })
		_, err := b.eng.Execute(ctx, &engine.ExecuteParams{RunID: run.ID})
		require.ErrorIs(t, err, engine.ErrHandBack)
		stored, err := b.store.RunGet(context.Background(), run.ID)
		require.NoError(t, err)
		require.Equal(t, engine.RunRunning, stored.Status)
		require.Equal(t, engine.TaskSucceeded, stored.Tasks["first"].Status)
		require.Equal(t, engine.TaskPending, stored.Tasks["nap"].Status)

		final, err := b.eng.Execute(context.Background(), &engine.ExecuteParams{RunID: run.ID})
		require.NoError(t, err)
		require.Equal(t, engine.RunCompleted, final.Status)
		require.Equal(t, 1, b.calls["first"])
	})
}

func TestExecuteTaskErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, task, want string
		attempts         int
	}{
		{"panic", `{use: test/panic, retries: 1, retry_delay: 1ms}`, "task panicked: boom", 2},
		{"not json", `{use: test/badoutput, retries: 3}`, "output is not JSON-serialisable", 1},
		// A param given at run time (a literal of the wrong type is a load
		// error); retrying cannot help.
		{"input type", `{use: sleep, retries: 3, inputs: {duration: "$ctx.params.d"}}`, `input "duration" of sleep`, 1},
		{"unresolved ref", `{use: test/record, retries: 3, inputs: {x: "$env.PYOCO_TEST_SURELY_UNSET_VAR"}}`, "PYOCO_TEST_SURELY_UNSET_VAR", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, nil)
			run := b.submit(t, "version: 1\nflow: {name: errs}\ntasks:\n  t: "+tc.task+"\n", map[string]any{"d": true})
			final, err := b.eng.Execute(context.Background(), &engine.ExecuteParams{RunID: run.ID})
			require.NoError(t, err)
			require.Equal(t, engine.RunFailed, final.Status)
			require.Contains(t, final.Tasks["t"].Error, tc.want)
			require.Len(t, final.Tasks["t"].Attempts, tc.attempts)
		})
	}
}

func TestExecuteLogs(t *testing.T) {
	t.Parallel()
	b := setupTelemetry(t)
	final := b.run(t, `version: 1
flow: {name: logs}
tasks:
  talk: {use: test/chatty}
`)
	require.Equal(t, engine.RunCompleted, final.Status)
	logs, err := b.store.LogList(context.Background(), &engine.LogListParams{RunID: final.ID})
	require.NoError(t, err)
	var got []string
	for i, l := range logs {
		require.Equal(t, int64(i+1), l.Seq)
		require.Equal(t, "talk", l.Task)
		require.Equal(t, final.TraceID, l.TraceID)
		require.Equal(t, final.Tasks["talk"].Attempts[0].SpanID, l.SpanID)
		require.NotEmpty(t, l.SpanID)
		got = append(got, l.Stream+": "+l.Text)
	}
	require.ElementsMatch(t, []string{
		"log: hello from the logger k=v", "stdout: line one", "stdout: line two", "stdout: partial", "stderr: oops",
	}, got)

	t.Run("caps", func(t *testing.T) {
		t.Parallel()
		b := setup(t, &engine.Config{LogMaxEntries: 3, LogMaxEntryBytes: 16})
		final := b.run(t, `version: 1
flow: {name: capped}
tasks:
  talk: {use: shell, inputs: {cmd: "for i in 1 2 3 4 5 6; do echo line-$i-0123456789abcdef; done"}}
`)
		require.Equal(t, engine.RunCompleted, final.Status)
		logs, err := b.store.LogList(context.Background(), &engine.LogListParams{RunID: final.ID})
		require.NoError(t, err)
		// The marker takes the last of the 3 slots.
		require.Len(t, logs, 3)
		require.Equal(t, "line-1-012345678 "+engine.LogTruncatedMarker, logs[0].Text)
		require.Equal(t, engine.LogTruncatedMarker, logs[2].Text)
	})
}

func TestExecuteProgressReports(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	final := b.run(t, `version: 1
flow: {name: prog, graph: "a >> b"}
tasks:
  a: {use: noop}
  b: {use: noop}
`)
	require.Equal(t, engine.RunCompleted, final.Status)
	var kinds []engine.ProgressKind
	for _, p := range b.progress {
		kinds = append(kinds, p.Kind)
		require.Equal(t, final.ID, p.RunID)
	}
	require.Equal(t, []engine.ProgressKind{
		engine.ProgressRunStarted,
		engine.ProgressTaskStarted, engine.ProgressTaskFinished,
		engine.ProgressTaskStarted, engine.ProgressTaskFinished,
		engine.ProgressRunFinished,
	}, kinds)
}

func TestEngineConfigErrors(t *testing.T) {
	t.Parallel()
	_, err := engine.New(nil, engine.NewRegistry(), nil)
	require.Error(t, err)
	for _, c := range []engine.Config{{LogMaxEntries: -5}, {LogMaxEntryBytes: 3}, {OutputMaxBytes: -1}, {CancelPollInterval: -time.Second}} {
		_, err := engine.New(memstore.New(), engine.NewRegistry(), &c)
		require.Error(t, err)
	}
	_, err = (&engine.Engine{}).Submit(context.Background(), nil)
	require.Error(t, err)
	require.True(t, errors.Is(fmt.Errorf("x: %w", engine.ErrNotFound), engine.ErrNotFound))
}

// FinishingFunc is called once, after every task ended and before the
// finish is stored; a run handed back never calls it.
func TestExecuteFinishingFunc(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	run := b.submit(t, `version: 1
flow: {name: finishing, graph: "a >> b"}
tasks:
  a: {use: test/record}
  b: {use: test/record}
`, nil)
	calls := 0
	final, err := b.eng.Execute(context.Background(), &engine.ExecuteParams{RunID: run.ID, FinishingFunc: func() {
		calls++
		stored, err := b.store.RunGet(context.Background(), run.ID)
		require.NoError(t, err)
		require.Equal(t, engine.RunRunning, stored.Status, "called before the finish is stored")
		b.mu.Lock()
		require.Equal(t, 2, len(b.order), "called after every task ran")
		b.mu.Unlock()
	}})
	require.NoError(t, err)
	require.Equal(t, engine.RunCompleted, final.Status)
	require.Equal(t, 1, calls)

	synctest.Test(t, func(t *testing.T) {
		b := setup(t, nil)
		run := b.submit(t, `version: 1
flow: {name: handback, graph: "nap"}
tasks:
  nap: {use: sleep, inputs: {duration: 10s}}
`, nil)
		ctx, cancel := context.WithCancelCause(context.Background())
		time.AfterFunc(time.Second, func() { cancel(engine.ErrHandBack) })
		_, err := b.eng.Execute(ctx, &engine.ExecuteParams{RunID: run.ID, FinishingFunc: func() { t.Error("FinishingFunc on a hand-back") }})
		require.ErrorIs(t, err, engine.ErrHandBack)
	})
}
