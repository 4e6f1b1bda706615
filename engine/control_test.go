package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pyoco/pyoco/engine"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
)

// Control flow (docs/flows.md): when, switch, foreach, until/repeat, on the
// memory store. The same constructs run on Redis in redisstore's and
// worker's tests.

func TestWhenSkipsAndPropagates(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	final := b.run(t, `version: 1
flow:
  name: when
  defaults: {n: 2}
  graph: |
    first >> (big & small)
    big >> after_big
    (big | small) >> either
tasks:
  first:     {use: test/record, inputs: {n: $ctx.params.n}}
  big:       {use: test/record, when: "node.first.output.n > 5"}
  small:     {use: test/record, when: "node.first.output.n <= 5 && params.n == 2"}
  after_big: {use: test/record}
  either:    {use: test/record}
`)
	require.Equal(t, engine.RunCompleted, final.Status, final.Error)
	require.Equal(t, map[string]engine.TaskStatus{
		"first": engine.TaskSucceeded, "big": engine.TaskSkipped, "small": engine.TaskSucceeded,
		"after_big": engine.TaskSkipped, "either": engine.TaskSucceeded,
	}, states(final))
	require.Equal(t, `skipped: when "node.first.output.n > 5" is false`, final.Tasks["big"].Error)
	require.Equal(t, "skipped: upstream big SKIPPED", final.Tasks["after_big"].Error)
	require.Zero(t, b.calls["big"])
	require.Empty(t, final.Tasks["big"].Attempts, "a skipped task has no attempt")
}

func TestWhenRuntimeErrorFailsTask(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	final := b.run(t, `version: 1
flow: {name: whenerr, graph: "a >> b >> c"}
tasks:
  a: {use: test/record, inputs: {v: text}}
  b: {use: test/record, when: "node.a.output.v > 3"}
  c: {use: test/record}
`)
	require.Equal(t, engine.RunFailed, final.Status)
	require.Equal(t, engine.TaskFailed, final.Tasks["b"].Status)
	require.Contains(t, final.Tasks["b"].Error, "when: expression")
	require.Equal(t, engine.TaskCancelled, final.Tasks["c"].Status)
	require.Zero(t, b.calls["b"])
}

const switchFlow = `version: 1
flow:
  name: sw
  defaults: {mode: fast}
  graph: |
    pick >> (quick | careful | fallback) >> done
tasks:
  pick:
    switch: params.mode
    cases:
      fast: [quick]
      slow: [careful]
      "3": [careful]
    default: [fallback]
  quick:    {use: test/record}
  careful:  {use: test/record}
  fallback: {use: test/record}
  done:     {use: test/record}
`

func TestSwitchPicksBranch(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		mode any
		ran  string
		dec  map[string]any
	}{
		{"fast", "quick", map[string]any{"value": "fast", "case": "fast", "default": false, "tasks": []any{"quick"}}},
		{"slow", "careful", map[string]any{"value": "slow", "case": "slow", "default": false, "tasks": []any{"careful"}}},
		{3, "careful", map[string]any{"value": float64(3), "case": "3", "default": false, "tasks": []any{"careful"}}},
		{"zzz", "fallback", map[string]any{"value": "zzz", "case": "zzz", "default": true, "tasks": []any{"fallback"}}},
	} {
		t.Run(fmt.Sprint(tc.mode), func(t *testing.T) {
			t.Parallel()
			b := setup(t, nil)
			run := b.submit(t, switchFlow, map[string]any{"mode": tc.mode})
			final, err := b.eng.Execute(context.Background(), &engine.ExecuteParams{RunID: run.ID})
			require.NoError(t, err)
			require.Equal(t, engine.RunCompleted, final.Status, final.Error)
			for _, name := range []string{"quick", "careful", "fallback"} {
				want := engine.TaskSkipped
				if name == tc.ran {
					want = engine.TaskSucceeded
				}
				require.Equal(t, want, final.Tasks[name].Status, name)
			}
			require.Equal(t, engine.TaskSucceeded, final.Tasks["done"].Status, "a join with trigger any runs after the branch taken")
			require.Equal(t, tc.dec, output(t, final, "pick"), "the decision is the switch's output")
			require.Len(t, final.Tasks["pick"].Attempts, 1)
			require.Equal(t, engine.UseSwitch, final.Tasks["pick"].Use)
		})
	}
}

func TestSwitchNoCaseNoDefault(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	final := b.run(t, `version: 1
flow: {name: sw2}
tasks:
  pick: {switch: "1 + 1", cases: {"3": [x]}}
  x: {use: test/record}
  y: {use: test/record, depends_on: [x]}
`)
	require.Equal(t, engine.RunCompleted, final.Status, final.Error)
	require.Equal(t, engine.TaskSkipped, final.Tasks["x"].Status)
	require.Equal(t, `skipped: switch pick took no case (value "2")`, final.Tasks["x"].Error)
	require.Equal(t, engine.TaskSkipped, final.Tasks["y"].Status)
}

func TestSwitchBadValueFails(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	final := b.run(t, `version: 1
flow: {name: sw3}
tasks:
  pick: {switch: "[1, 2]", cases: {"1": [x]}}
  x: {use: test/record}
`)
	require.Equal(t, engine.RunFailed, final.Status)
	require.Contains(t, final.Tasks["pick"].Error, "a switch needs a string, number, boolean or null")
	require.Equal(t, engine.TaskCancelled, final.Tasks["x"].Status)
}

// TestSwitchResumeFollowsRecord: a takeover follows the decision the switch
// recorded, even where evaluating it again would choose otherwise.
func TestSwitchResumeFollowsRecord(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	run := b.submit(t, switchFlow, map[string]any{"mode": "fast"})
	ctx := context.Background()
	_, err := b.store.RunStart(ctx, &engine.RunStartParams{RunID: run.ID, WorkerID: "lost", At: time.Now()})
	require.NoError(t, err)
	now := time.Now()
	require.NoError(t, b.store.TaskUpdate(ctx, &engine.TaskUpdateParams{RunID: run.ID, Task: "pick", Status: engine.TaskSucceeded,
		StartedAt: now, EndedAt: now, Output: json.RawMessage(`{"value":"slow","case":"slow","default":false,"tasks":["careful"]}`),
		Attempt: &engine.Attempt{Number: 1, Status: engine.TaskSucceeded, StartedAt: now, EndedAt: now}}))
	final, err := b.eng.Execute(ctx, &engine.ExecuteParams{RunID: run.ID})
	require.NoError(t, err)
	require.Equal(t, engine.RunCompleted, final.Status, final.Error)
	require.Equal(t, engine.TaskSucceeded, final.Tasks["careful"].Status)
	require.Equal(t, engine.TaskSkipped, final.Tasks["quick"].Status)
	require.Equal(t, `skipped: switch pick took case "slow"`, final.Tasks["quick"].Error)
}

func TestForeachRunsEachItem(t *testing.T) {
	t.Parallel()
	tb := setupTelemetry(t)
	final := tb.run(t, `version: 1
flow:
  name: fe
  defaults: {veg: [rice, carrot, potato]}
  graph: "list >> chop >> after"
tasks:
  list:  {use: test/record, inputs: {extra: [leek]}}
  chop:
    use: test/record
    foreach: concat(params.veg, node.list.output.extra)
    max_parallel: 2
    inputs: {what: $ctx.item, at: $ctx.index, note: "chop ${ctx.item} (#${ctx.index})"}
  after: {use: test/record, inputs: {all: $node.chop.output}}
`)
	require.Equal(t, engine.RunCompleted, final.Status, final.Error)
	veg := []string{"rice", "carrot", "potato", "leek"}
	var want []any
	for i, v := range veg {
		row := fmt.Sprintf("chop[%d]", i)
		st := final.Tasks[row]
		require.NotNil(t, st, row)
		require.Equal(t, engine.TaskSucceeded, st.Status)
		require.Equal(t, "test/record", st.Use)
		require.Len(t, st.Attempts, 1)
		out := map[string]any{"what": v, "at": float64(i), "note": fmt.Sprintf("chop %s (#%d)", v, i)}
		require.Equal(t, out, output(t, final, row))
		want = append(want, out)
	}
	require.Equal(t, want, output(t, final, "chop"), "the task's output is the iterations' outputs in order")
	require.Equal(t, map[string]any{"all": want}, output(t, final, "after"))
	require.Empty(t, final.Tasks["chop"].Attempts, "a foreach task's attempts are its iterations'")

	// One span per iteration, named and indexed.
	var names []string
	for _, s := range tb.spans.Ended() {
		if !strings.HasPrefix(s.Name(), "task chop") {
			continue
		}
		names = append(names, s.Name())
		var idx attribute.Value
		for _, kv := range s.Attributes() {
			if kv.Key == engine.AttrTaskIndex {
				idx = kv.Value
			}
		}
		require.Equal(t, strings.TrimSuffix(strings.TrimPrefix(s.Name(), "task chop["), "]"), fmt.Sprint(idx.AsInt64()))
	}
	slices.Sort(names)
	require.Equal(t, []string{"task chop[0]", "task chop[1]", "task chop[2]", "task chop[3]"}, names)
}

func TestForeachMaxParallel(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	var inside, peak atomic.Int32
	require.NoError(t, b.reg.Add(engine.TaskDef{Name: "test/slowish", Plugin: "test", Run: func(ctx context.Context, tc *engine.TaskContext, in map[string]any) (any, error) {
		n := inside.Add(1)
		defer inside.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
		return nil, nil
	}}))
	final := b.run(t, `version: 1
flow: {name: fepar}
tasks:
  each: {use: test/slowish, foreach: "1..12", max_parallel: 3}
`)
	require.Equal(t, engine.RunCompleted, final.Status, final.Error)
	require.LessOrEqual(t, peak.Load(), int32(3))
	require.Len(t, output(t, final, "each"), 12)
}

func TestForeachFailPolicy(t *testing.T) {
	t.Parallel()
	t.Run("stop", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		final := b.run(t, `version: 1
flow: {name: festop, graph: "each >> after"}
tasks:
  each: {use: test/flaky, foreach: "[1, 1, 99, 1]", max_parallel: 1, inputs: {succeed_on: $ctx.item}}
  after: {use: test/record}
`)
		require.Equal(t, engine.RunFailed, final.Status)
		require.Equal(t, engine.TaskFailed, final.Tasks["each"].Status)
		require.Equal(t, "iteration each[2] failed: flaky attempt 1", final.Tasks["each"].Error)
		require.Equal(t, engine.TaskSucceeded, final.Tasks["each[0]"].Status)
		require.Equal(t, engine.TaskFailed, final.Tasks["each[2]"].Status)
		require.Nil(t, final.Tasks["each[3]"], "no iteration starts after a failure with fail_policy stop")
		require.Equal(t, engine.TaskCancelled, final.Tasks["after"].Status)
	})
	t.Run("isolate", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		final := b.run(t, `version: 1
flow: {name: feiso, graph: "each >> after"}
tasks:
  each: {use: test/flaky, foreach: "[1, 99, 1]", max_parallel: 1, fail_policy: isolate, inputs: {succeed_on: $ctx.item}}
  after: {use: test/record}
  other: {use: test/record}
`)
		require.Equal(t, engine.RunCompleted, final.Status, final.Error)
		require.Equal(t, engine.TaskFailed, final.Tasks["each"].Status)
		require.Equal(t, engine.TaskFailed, final.Tasks["each[1]"].Status)
		require.Equal(t, engine.TaskSucceeded, final.Tasks["each[2]"].Status, "isolate: the other iterations go on")
		require.Equal(t, engine.TaskSkipped, final.Tasks["after"].Status)
		require.Equal(t, engine.TaskSucceeded, final.Tasks["other"].Status)
	})
	t.Run("retries per iteration", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		final := b.run(t, `version: 1
flow: {name: feretry}
tasks:
  each: {use: test/flaky, foreach: "[2, 1]", retries: 2, inputs: {succeed_on: $ctx.item}}
`)
		require.Equal(t, engine.RunCompleted, final.Status, final.Error)
		require.Len(t, final.Tasks["each[0]"].Attempts, 2)
		require.Len(t, final.Tasks["each[1]"].Attempts, 1)
	})
}

func TestForeachBadList(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ expr, msg string }{
		{`"text"`, `gave a string, not a list`},
		{`params.missing`, `gave null, not a list`},
		{`1..10001`, `gave 10001 items: at most 10000`},
		{`int("zz")`, `foreach: expression "int(\"zz\")"`},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			t.Parallel()
			b := setup(t, nil)
			final := b.run(t, fmt.Sprintf("version: 1\nflow: {name: febad}\ntasks:\n  each: {use: test/record, foreach: '%s'}\n", tc.expr))
			require.Equal(t, engine.RunFailed, final.Status)
			require.Contains(t, final.Tasks["each"].Error, tc.msg)
		})
	}
}

func TestForeachEmptyList(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	final := b.run(t, "version: 1\nflow: {name: feempty}\ntasks:\n  each: {use: test/record, foreach: '[]'}\n")
	require.Equal(t, engine.RunCompleted, final.Status, final.Error)
	require.Equal(t, []any{}, output(t, final, "each"))
}

// TestForeachResume plays a takeover in the middle of a foreach: iteration
// 0 succeeded, 1 was running when the worker was lost; the new execution
// runs 1 and 2 only and keeps 0's stored output.
func TestForeachResume(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	run := b.submit(t, `version: 1
flow: {name: feresume}
tasks:
  each: {use: test/record, foreach: '["a", "b", "c"]', inputs: {v: $ctx.item}}
`, nil)
	ctx := context.Background()
	_, err := b.store.RunStart(ctx, &engine.RunStartParams{RunID: run.ID, WorkerID: "lost", At: time.Now()})
	require.NoError(t, err)
	now := time.Now()
	require.NoError(t, b.store.TaskUpdate(ctx, &engine.TaskUpdateParams{RunID: run.ID, Task: "each", Status: engine.TaskRunning, StartedAt: now}))
	require.NoError(t, b.store.TaskUpdate(ctx, &engine.TaskUpdateParams{RunID: run.ID, Task: "each[0]", Use: "test/record", Status: engine.TaskSucceeded,
		StartedAt: now, EndedAt: now, Output: json.RawMessage(`{"v":"stored"}`),
		Attempt: &engine.Attempt{Number: 1, Status: engine.TaskSucceeded, StartedAt: now, EndedAt: now}}))
	require.NoError(t, b.store.TaskUpdate(ctx, &engine.TaskUpdateParams{RunID: run.ID, Task: "each[1]", Use: "test/record", Status: engine.TaskRunning,
		StartedAt: now, Attempt: &engine.Attempt{Number: 1, Status: engine.TaskRunning, StartedAt: now}}))

	final, err := b.eng.Execute(ctx, &engine.ExecuteParams{RunID: run.ID})
	require.NoError(t, err)
	require.Equal(t, engine.RunCompleted, final.Status, final.Error)
	require.Equal(t, []string{"each[1]", "each[2]"}, sorted(b.order), "iteration 0 succeeded before the takeover")
	require.Equal(t, []any{map[string]any{"v": "stored"}, map[string]any{"v": "b"}, map[string]any{"v": "c"}}, output(t, final, "each"))
	at := final.Tasks["each[1]"].Attempts
	require.Len(t, at, 2, "the interrupted attempt stays recorded")
	require.Equal(t, engine.TaskFailed, at[0].Status)
	require.Equal(t, engine.TaskSucceeded, at[1].Status)
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

func TestUntilRepeat(t *testing.T) {
	t.Parallel()
	t.Run("holds", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		final := b.run(t, `version: 1
flow: {name: until, graph: "poll >> after"}
tasks:
  poll:  {use: test/flaky, until: "output.attempt >= 3", repeat: {max: 5, interval: 1ms}}
  after: {use: test/record, inputs: {got: $node.poll.output}}
`)
		require.Equal(t, engine.RunCompleted, final.Status, final.Error)
		require.Len(t, final.Tasks["poll"].Attempts, 3, "each round is an attempt")
		require.Equal(t, map[string]any{"got": map[string]any{"attempt": float64(3)}}, output(t, final, "after"))
	})
	t.Run("max reached", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		final := b.run(t, `version: 1
flow: {name: untilmax}
tasks:
  poll: {use: test/flaky, until: "output.attempt > 10", repeat: {max: 2}}
`)
		require.Equal(t, engine.RunFailed, final.Status)
		require.Equal(t, `until "output.attempt > 10" still false after 2 rounds (repeat.max)`, final.Tasks["poll"].Error)
		require.Len(t, final.Tasks["poll"].Attempts, 2)
		require.Equal(t, engine.TaskSucceeded, final.Tasks["poll"].Attempts[1].Status, "the round itself succeeded")
	})
	t.Run("retries inside a round", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		final := b.run(t, `version: 1
flow: {name: untilretry}
tasks:
  poll: {use: test/flaky, retries: 1, inputs: {succeed_on: 2}, until: "output.attempt >= 3", repeat: {max: 3}}
`)
		require.Equal(t, engine.RunCompleted, final.Status, final.Error)
		require.Len(t, final.Tasks["poll"].Attempts, 3)
		require.Equal(t, engine.TaskFailed, final.Tasks["poll"].Attempts[0].Status)
	})
	t.Run("per iteration", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		final := b.run(t, `version: 1
flow: {name: untilfe}
tasks:
  poll: {use: test/flaky, foreach: "[1, 2]", until: "output.attempt >= item", repeat: {max: 3}}
`)
		require.Equal(t, engine.RunCompleted, final.Status, final.Error)
		require.Len(t, final.Tasks["poll[0]"].Attempts, 1)
		require.Len(t, final.Tasks["poll[1]"].Attempts, 2)
	})
}

// TestForeachCancel: cancelling a run stops its iterations; no row is left
// RUNNING.
func TestForeachCancel(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	var started sync.WaitGroup
	started.Add(2)
	require.NoError(t, b.reg.Add(engine.TaskDef{Name: "test/block", Plugin: "test", Run: func(ctx context.Context, tc *engine.TaskContext, in map[string]any) (any, error) {
		started.Done()
		<-ctx.Done()
		return nil, ctx.Err()
	}}))
	run := b.submit(t, "version: 1\nflow: {name: fecancel}\ntasks:\n  each: {use: test/block, foreach: '[1, 2, 3]', max_parallel: 2}\n", nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan *engine.Run, 1)
	go func() {
		final, _ := b.eng.Execute(ctx, &engine.ExecuteParams{RunID: run.ID})
		done <- final
	}()
	started.Wait()
	cancel()
	final := <-done
	require.Equal(t, engine.RunCancelled, final.Status)
	for name, st := range final.Tasks {
		require.True(t, st.Status.Terminal(), "%s is %s", name, st.Status)
	}
	require.Equal(t, engine.TaskCancelled, final.Tasks["each"].Status)
	require.Nil(t, final.Tasks["each[2]"])
}

func TestIterationNames(t *testing.T) {
	t.Parallel()
	require.Equal(t, "chop[12]", engine.IterationName("chop", 12))
	for _, tc := range []struct {
		row  string
		name string
		i    int
		ok   bool
	}{
		{"chop[0]", "chop", 0, true},
		{"a.b-c[9999]", "a.b-c", 9999, true},
		{"chop", "", 0, false},
		{"chop[]", "", 0, false},
		{"chop[01]", "", 0, false},
		{"chop[-1]", "", 0, false},
		{"[3]", "", 0, false},
		{"chop[x]", "", 0, false},
	} {
		name, i, ok := engine.IterationOf(tc.row)
		require.Equal(t, tc.ok, ok, tc.row)
		require.Equal(t, tc.name, name, tc.row)
		require.Equal(t, tc.i, i, tc.row)
	}
}

func TestIterationRefs(t *testing.T) {
	t.Parallel()
	it := &engine.Iteration{Index: 2, Item: map[string]any{"name": "leek", "n": 3.0}}
	got, err := engine.ResolveInputs(map[string]any{
		"whole": "$ctx.item", "name": "$ctx.item.name", "idx": "$ctx.index",
		"text": "${ctx.item.name} #${ctx.index}, $ctx.items and ${ctx.itemz} stay",
	}, &engine.RefScope{Iteration: it})
	require.NoError(t, err)
	require.Equal(t, map[string]any{
		"whole": it.Item, "name": "leek", "idx": 2.0, "text": "leek #2, $ctx.items and ${ctx.itemz} stay",
	}, got)
	_, err = engine.ResolveInputs(map[string]any{"x": "$ctx.item"}, &engine.RefScope{})
	require.ErrorContains(t, err, "unresolved reference $ctx.item: only set in the iterations of a foreach task")
	_, err = engine.ResolveInputs(map[string]any{"x": "$ctx.index.x"}, &engine.RefScope{Iteration: it})
	require.ErrorContains(t, err, "malformed reference $ctx.index.x")
}
