package engine_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/trace"

	"github.com/pyoco/pyoco/api/apidoc"
	"github.com/pyoco/pyoco/engine"
)

const inlineParent = `version: 1
flow: {name: parent, graph: "prep >> cook >> serve"}
tasks:
  prep: {use: test/record, inputs: {veg: leek}}
  cook:
    inputs: {veg: $node.prep.output.veg, n: 2}
    flow_yaml: |
      version: 1
      flow: {name: kitchen, defaults: {veg: none, n: 1}, graph: "chop >> boil"}
      tasks:
        chop: {use: test/record, inputs: {what: $ctx.params.veg}}
        boil: {use: test/record, inputs: {times: $ctx.params.n, after: $node.chop.output.what}}
  serve: {use: test/record, inputs: {got: $node.cook.output.boil}}
`

func TestSubFlowInline(t *testing.T) {
	t.Parallel()
	tb := setupTelemetry(t)
	final := tb.run(t, inlineParent)
	require.Equal(t, engine.RunCompleted, final.Status, final.Error)
	require.Equal(t, map[string]any{
		"chop": map[string]any{"what": "leek"},
		"boil": map[string]any{"times": float64(2), "after": "leek"},
	}, output(t, final, "cook"), "the task's output is the child's task outputs")
	require.Equal(t, map[string]any{"got": map[string]any{"times": float64(2), "after": "leek"}}, output(t, final, "serve"))

	at := final.Tasks["cook"].Attempts
	require.Len(t, at, 1)
	childID := at[0].ChildRunID
	require.NotEmpty(t, childID)
	child, err := tb.store.RunGet(context.Background(), childID)
	require.NoError(t, err)
	require.Equal(t, engine.RunCompleted, child.Status)
	require.Equal(t, final.ID, child.ParentRunID)
	require.Equal(t, "kitchen", child.FlowName)
	require.Equal(t, engine.InlineFlowFile, child.FlowFile)
	require.Equal(t, final.TraceID, child.TraceID, "one trace")
	require.Equal(t, at[0].SpanID, child.ParentSpanID, "the child's run span is a child of the task's span")
	require.Equal(t, map[string]any{"veg": "leek", "n": float64(2)}, child.Params)
	require.Contains(t, child.Tags, "parent:"+final.ID)

	doc := apidoc.NewRunDoc(final, 0)
	require.Equal(t, []string{childID}, doc.Children)
	require.Nil(t, doc.ParentRunID)
	cdoc := apidoc.NewRunDoc(child, 0)
	require.Equal(t, final.ID, *cdoc.ParentRunID)
	require.Equal(t, []string{}, cdoc.Children)

	// Spans: the child's run span hangs under the cook attempt's span.
	var cookSpan, childRun trace.ReadOnlySpan
	for _, s := range tb.spans.Ended() {
		switch s.Name() {
		case "task cook":
			cookSpan = s
		case "run kitchen":
			childRun = s
		}
	}
	require.NotNil(t, cookSpan)
	require.NotNil(t, childRun)
	require.Equal(t, cookSpan.SpanContext().SpanID(), childRun.Parent().SpanID())
	require.Equal(t, cookSpan.SpanContext().TraceID(), childRun.SpanContext().TraceID())

	// A sub-flow's run is not queued: nothing is left for a worker.
	n, err := tb.store.QueueDepth(context.Background())
	require.NoError(t, err)
	require.Empty(t, n)
}

func writeFlows(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, src := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644))
	}
	return dir
}

func TestSubFlowUseFlowFile(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	dir := writeFlows(t, map[string]string{
		"main.yaml":  "version: 1\nflow: {name: main}\ntasks:\n  step: {use: flow/inner, inputs: {x: 5}}\n  each: {use: flow/inner, foreach: '[1, 2]', inputs: {x: $ctx.item}}\n",
		"inner.yaml": "version: 1\nflow: {name: inner, defaults: {x: 0}}\ntasks:\n  deeper: {use: flow/leaf, inputs: {y: $ctx.params.x}}\n",
		"leaf.yml":   "version: 1\nflow: {name: leaf}\ntasks:\n  r: {use: test/record, inputs: {y: $ctx.params.y}}\n",
	})
	f, err := engine.LoadFlowFile(filepath.Join(dir, "main.yaml"), b.reg)
	require.NoError(t, err)
	require.Equal(t, "inner", f.Tasks["step"].SubFlowName)
	incs := f.Includes()
	require.Len(t, incs, 2)
	require.Equal(t, "inner", incs[0].Name)
	require.Equal(t, "leaf", incs[1].Name)

	run, err := b.eng.Submit(context.Background(), &engine.SubmitParams{Flow: f})
	require.NoError(t, err)
	require.Equal(t, incs, run.FlowIncludes, "the snapshot carries the flows it uses")
	// The files are gone: a worker loads the snapshot from the run alone.
	require.NoError(t, os.RemoveAll(dir))
	final, err := b.eng.Execute(context.Background(), &engine.ExecuteParams{RunID: run.ID})
	require.NoError(t, err)
	require.Equal(t, engine.RunCompleted, final.Status, final.Error)
	require.Equal(t, map[string]any{"deeper": map[string]any{"r": map[string]any{"y": float64(5)}}}, output(t, final, "step"))
	require.Len(t, output(t, final, "each"), 2)
	require.Len(t, apidoc.NewRunDoc(final, 0).Children, 3)
}

func TestSubFlowFailureAndRetry(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	final := b.run(t, `version: 1
flow: {name: subfail}
tasks:
  sub:
    retries: 1
    flow_yaml: |
      version: 1
      flow: {name: failing}
      tasks:
        boom: {use: fail, inputs: {message: no curry}}
`)
	require.Equal(t, engine.RunFailed, final.Status)
	at := final.Tasks["sub"].Attempts
	require.Len(t, at, 2, "a retry runs a new child")
	require.NotEqual(t, at[0].ChildRunID, at[1].ChildRunID)
	require.Contains(t, final.Tasks["sub"].Error, "sub-flow run "+at[1].ChildRunID+" FAILED: task boom failed: no curry")
	for _, a := range at {
		c, err := b.store.RunGet(context.Background(), a.ChildRunID)
		require.NoError(t, err)
		require.Equal(t, engine.RunFailed, c.Status)
	}
}

func TestSubFlowCancelPropagates(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	started := make(chan struct{})
	require.NoError(t, b.reg.Add(engine.TaskDef{Name: "test/hold", Plugin: "test", Run: func(ctx context.Context, tc *engine.TaskContext, in map[string]any) (any, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	}}))
	run := b.submit(t, "version: 1\nflow: {name: subcancel}\ntasks:\n  sub:\n    flow_yaml: |\n      version: 1\n      flow: {name: holder}\n      tasks:\n        hold: {use: test/hold}\n", nil)
	done := make(chan *engine.Run, 1)
	go func() {
		final, _ := b.eng.Execute(context.Background(), &engine.ExecuteParams{RunID: run.ID})
		done <- final
	}()
	<-started
	st, err := b.eng.Cancel(context.Background(), run.ID)
	require.NoError(t, err)
	require.Equal(t, engine.RunCancelling, st)
	final := <-done
	require.Equal(t, engine.RunCancelled, final.Status)
	child, err := b.store.RunGet(context.Background(), final.Tasks["sub"].Attempts[0].ChildRunID)
	require.NoError(t, err)
	require.Equal(t, engine.RunCancelled, child.Status, "cancel propagates down")
	require.Equal(t, engine.TaskCancelled, child.Tasks["hold"].Status)
}

// TestSubFlowResume plays a takeover while a child ran: the first worker
// was lost with the child RUNNING and its first task done; the new
// execution resumes that child instead of starting another.
func TestSubFlowResume(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	run := b.submit(t, inlineParent, nil)
	ctx := context.Background()
	_, err := b.store.RunStart(ctx, &engine.RunStartParams{RunID: run.ID, WorkerID: "lost", At: time.Now()})
	require.NoError(t, err)
	now := time.Now()
	require.NoError(t, b.store.TaskUpdate(ctx, &engine.TaskUpdateParams{RunID: run.ID, Task: "prep", Status: engine.TaskSucceeded,
		StartedAt: now, EndedAt: now, Output: json.RawMessage(`{"veg":"kale"}`),
		Attempt: &engine.Attempt{Number: 1, Status: engine.TaskSucceeded, StartedAt: now, EndedAt: now}}))
	// The child as the lost worker left it: chop done, boil running.
	childID := lostChild(t, b, run.ID, map[string]any{"veg": "kale", "n": 2})
	require.NoError(t, b.store.TaskUpdate(ctx, &engine.TaskUpdateParams{RunID: childID, Task: "chop", Status: engine.TaskSucceeded,
		StartedAt: now, EndedAt: now, Output: json.RawMessage(`{"what":"kale (first worker)"}`),
		Attempt: &engine.Attempt{Number: 1, Status: engine.TaskSucceeded, StartedAt: now, EndedAt: now}}))

	final, err := b.eng.Execute(ctx, &engine.ExecuteParams{RunID: run.ID})
	require.NoError(t, err)
	require.Equal(t, engine.RunCompleted, final.Status, final.Error)
	at := final.Tasks["cook"].Attempts
	require.Len(t, at, 2)
	require.Equal(t, childID, at[1].ChildRunID, "the interrupted child is resumed")
	require.Equal(t, []string{childID}, apidoc.NewRunDoc(final, 0).Children)
	require.Zero(t, b.calls["chop"], "the child's finished task is not run again")
	require.Equal(t, map[string]any{"times": float64(2), "after": "kale (first worker)"}, output(t, final, "cook").(map[string]any)["boil"])
	child, err := b.store.RunGet(ctx, childID)
	require.NoError(t, err)
	require.Equal(t, 2, child.Attempt)
}

// TestSubFlowOrphanFailed: a run cancelled before its interrupted sub-flow
// task ran again fails the child left RUNNING.
func TestSubFlowOrphanFailed(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	run := b.submit(t, inlineParent, nil)
	ctx := context.Background()
	_, err := b.store.RunStart(ctx, &engine.RunStartParams{RunID: run.ID, WorkerID: "lost", At: time.Now()})
	require.NoError(t, err)
	childID := lostChild(t, b, run.ID, nil)
	_, err = b.eng.Cancel(ctx, run.ID)
	require.NoError(t, err)
	final, err := b.eng.Execute(ctx, &engine.ExecuteParams{RunID: run.ID})
	require.NoError(t, err)
	require.Equal(t, engine.RunCancelled, final.Status)
	child, err := b.store.RunGet(ctx, childID)
	require.NoError(t, err)
	require.Equal(t, engine.RunFailed, child.Status)
	require.Equal(t, "its parent run "+run.ID+" ended", child.Error)
}

// lostChild plays a worker lost while the cook task of run parent (of
// inlineParent, started by that worker) ran its child: the task's attempt 1
// is RUNNING with the child, which is RUNNING too. It returns the child's ID.
func lostChild(t *testing.T, b *testBundle, parent string, params map[string]any) string {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	childID := engine.ChildRunID(parent, "cook", 1)
	require.NoError(t, b.store.TaskUpdate(ctx, &engine.TaskUpdateParams{RunID: parent, Task: "cook", Status: engine.TaskRunning,
		StartedAt: now, Attempt: &engine.Attempt{Number: 1, Status: engine.TaskRunning, StartedAt: now, ChildRunID: childID}}))
	run, err := b.store.RunGet(ctx, parent)
	require.NoError(t, err)
	f, err := engine.LoadFlow(run.FlowFile, []byte(run.FlowSource), b.reg)
	require.NoError(t, err)
	_, err = b.eng.Submit(ctx, &engine.SubmitParams{RunID: childID, Flow: f.Tasks["cook"].SubFlow, Params: params, ParentRunID: parent})
	require.NoError(t, err)
	_, err = b.store.RunStart(ctx, &engine.RunStartParams{RunID: childID, WorkerID: "lost", At: now})
	require.NoError(t, err)
	return childID
}

type flowSet map[string]*engine.Flow

func (fs flowSet) LookupFlow(name string) (*engine.Flow, bool) { f, ok := fs[name]; return f, ok }

type lookupWithFlows struct {
	engine.TaskLookup
	flowSet
}

func TestSubFlowLookup(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	inner, err := engine.LoadFlow("inner.yaml", []byte("version: 1\nflow: {name: inner}\ntasks:\n  r: {use: test/record}\n"), b.reg)
	require.NoError(t, err)
	tasks := lookupWithFlows{b.reg, flowSet{"inner": inner}}
	f, err := engine.LoadFlow(engine.InlineFlowFile, []byte("version: 1\nflow: {name: outer}\ntasks:\n  s: {use: flow/inner}\n"), tasks)
	require.NoError(t, err)
	require.Same(t, inner, f.Tasks["s"].SubFlow)
	_, err = engine.LoadFlow(engine.InlineFlowFile, []byte("version: 1\nflow: {name: outer}\ntasks:\n  s: {use: flow/nope}\n"), tasks)
	require.ErrorContains(t, err, `flow_yaml:4:12: task s: unknown flow "nope" (use: flow/<name> names a flow of the server)`)
	_, err = engine.LoadFlow(engine.InlineFlowFile, []byte("version: 1\nflow: {name: outer}\ntasks:\n  s: {use: flow/inner}\n"), b.reg)
	require.ErrorContains(t, err, "needs the server's flows")
}

func TestSubFlowLoadErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	dir := writeFlows(t, map[string]string{
		"a.yaml":     "version: 1\nflow: {name: a}\ntasks:\n  x: {use: flow/b}\n",
		"b.yaml":     "version: 1\nflow: {name: b}\ntasks:\n  y: {use: flow/a}\n",
		"named.yaml": "version: 1\nflow: {name: other}\ntasks:\n  z: {use: noop}\n",
		"main.yaml": `version: 1
flow: {name: main}
tasks:
  u: {use: flow/missing}
  v: {use: flow/named}
  w: {use: flow/bad name}
  both: {use: noop, flow_yaml: "version: 1"}
  inline:
    flow_yaml: |
      version: 1
      flow: {name: in}
      tasks:
        t: {use: nosuch}
  notext: {flow_yaml: [1]}
`,
	})
	_, err := engine.LoadFlowFile(filepath.Join(dir, "a.yaml"), b.reg)
	require.ErrorContains(t, err, "task y: sub-flow cycle: a -> b -> a")
	_, err = engine.LoadFlowFile(filepath.Join(dir, "main.yaml"), b.reg)
	require.Error(t, err)
	msg := err.Error()
	main := filepath.Join(dir, "main.yaml")
	for _, want := range []string{
		main + `:4:12: task u: unknown flow "missing": no missing.yaml next to main.yaml`,
		main + `:5:12: task v: ` + filepath.Join(dir, "named.yaml") + ` holds flow "other", not "named"`,
		main + `:6:12: task w: bad use "flow/bad name": want flow/<flow name>`,
		main + `:7:21: task both: flow_yaml runs an inline flow: it cannot have use too`,
		main + `:13:18: task inline: flow_yaml: task t: unknown use "nosuch"`,
		main + `:14:23: task notext: flow_yaml must be the flow's YAML text`,
	} {
		require.Contains(t, msg, want)
	}
}
