//go:build linux

package e2e_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
)

// controlFlow branches, fans out, polls and skips; each shell task appends
// "<run> <task row> <attempt>" to file.
func controlFlow(file string) string {
	mark := fmt.Sprintf(`echo "$PYOCO_RUN_ID $PYOCO_TASK $PYOCO_ATTEMPT" >> %s`, file)
	return fmt.Sprintf(`version: 1
flow:
  name: e2e_control
  defaults: {mode: fast, veg: [rice, carrot, leek, kale]}
  graph: |
    pick >> (quick | careful) >> chop >> poll >> late
tasks:
  pick: {switch: params.mode, cases: {fast: [quick], slow: [careful]}}
  quick: {use: shell, inputs: {cmd: '%[1]s'}}
  careful: {use: shell, inputs: {cmd: '%[1]s'}}
  chop: {use: shell, foreach: params.veg, max_parallel: 2, inputs: {cmd: '%[1]s; echo ${ctx.item}'}}
  poll: {use: shell, inputs: {cmd: '%[1]s; echo $PYOCO_ATTEMPT'}, until: "trim(output.stdout) == '3'", repeat: {max: 5, interval: 10ms}}
  late: {use: shell, when: "len(node.chop.output) > 10", inputs: {cmd: '%[1]s'}}
`, mark)
}

// TestControlFlowOnWorkers runs switch, foreach, until and when on two
// worker processes sharing one Redis: each construct ends as on the
// memory store, and every iteration and round ran exactly once.
func TestControlFlowOnWorkers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	file := filepath.Join(b.dir, "lines")
	f := b.flow(controlFlow(file))
	b.startWorker()
	b.startWorker()
	var ids []string
	for i := range 6 {
		mode := "fast"
		if i%2 == 1 {
			mode = "slow"
		}
		r, err := b.eng.Submit(t.Context(), &engine.SubmitParams{Flow: f, Params: map[string]any{"mode": mode}})
		require.NoError(t, err)
		ids = append(ids, r.ID)
	}
	runs := b.waitAll(ids, 60*time.Second)
	lines := readLines(t, file)
	for i, id := range ids {
		r := runs[id]
		require.Equal(t, engine.RunCompleted, r.Status, r.Error)
		taken, skipped := "quick", "careful"
		if i%2 == 1 {
			taken, skipped = skipped, taken
		}
		require.Equal(t, engine.TaskSucceeded, r.Tasks[taken].Status)
		require.Equal(t, engine.TaskSkipped, r.Tasks[skipped].Status)
		require.Equal(t, engine.TaskSkipped, r.Tasks["late"].Status)
		require.Contains(t, r.Tasks["late"].Error, "skipped: when")
		require.Len(t, r.Tasks["poll"].Attempts, 3)
		var outs []map[string]any
		require.NoError(t, json.Unmarshal(r.Tasks["chop"].Output, &outs))
		require.Len(t, outs, 4)
		for k, veg := range []string{"rice", "carrot", "leek", "kale"} {
			row := engine.IterationName("chop", k)
			require.Equal(t, engine.TaskSucceeded, r.Tasks[row].Status, row)
			require.Equal(t, veg+"\n", outs[k]["stdout"])
			require.Equal(t, []string{"1"}, lines[id+" "+row], "%s ran once", row)
		}
		require.Equal(t, []string{"1", "2", "3"}, lines[id+" poll"])
		require.Empty(t, lines[id+" late"])
	}
}

// TestForeachWorkerKilled kills the worker in the middle of a foreach: the
// worker that takes the run over runs only the iterations that had not
// succeeded, and the interrupted one keeps its attempt.
func TestForeachWorkerKilled(t *testing.T) {
	t.Parallel()
	b := setup(t)
	file := filepath.Join(b.dir, "lines")
	f := b.flow(fmt.Sprintf(`version: 1
flow: {name: e2e_foreach_kill}
tasks:
  each:
    use: shell
    foreach: "0..5"
    max_parallel: 1
    inputs: {cmd: 'echo "$PYOCO_RUN_ID $PYOCO_TASK $PYOCO_ATTEMPT" >> %s; sleep 0.4; echo ${ctx.item}'}
`, file))
	first := b.startWorker("--lease", "2s")
	id := b.submit(f)
	waitFor(t, 30*time.Second, "iteration 2 done and 3 running", func() bool {
		r := b.get(id)
		two, three := r.Tasks["each[2]"], r.Tasks["each[3]"]
		return two != nil && two.Status == engine.TaskSucceeded && three != nil && three.Status == engine.TaskRunning
	})
	first.kill()
	b.startWorker("--lease", "2s")
	r := b.waitAll([]string{id}, 60*time.Second)[id]
	require.Equal(t, engine.RunCompleted, r.Status, r.Error)
	require.Equal(t, 2, r.Attempt, "taken over once")

	var outs []map[string]any
	require.NoError(t, json.Unmarshal(r.Tasks["each"].Output, &outs))
	require.Len(t, outs, 6)
	lines := readLines(t, file)
	for k := range 6 {
		row := engine.IterationName("each", k)
		require.Equal(t, fmt.Sprintf("%d\n", k), outs[k]["stdout"], row)
		got := lines[id+" "+row]
		switch {
		case k < 3:
			require.Equal(t, []string{"1"}, got, "%s succeeded before the kill and did not run again", row)
		case k == 3:
			require.Equal(t, []string{"1", "2"}, got, "%s was interrupted and ran again", row)
			at := r.Tasks[row].Attempts
			require.Len(t, at, 2)
			require.Equal(t, engine.TaskFailed, at[0].Status)
			require.Equal(t, "interrupted: worker lost", at[0].Error)
			require.Equal(t, engine.TaskSucceeded, at[1].Status)
		default:
			require.Equal(t, []string{"1"}, got, row)
		}
	}
	rows := engine.TaskRows(r.Tasks, []string{"each"})
	require.True(t, slices.Equal([]string{"each", "each[0]", "each[1]", "each[2]", "each[3]", "each[4]", "each[5]"}, rows), "%v", rows)
}

// TestSubFlowWorkerKilled kills the worker while a sub-flow's run is in
// the middle of its tasks: the worker that takes the parent over resumes
// that same child (its finished task does not run again), and the parent
// completes with the child's outputs. A sub-flow's run is never queued.
func TestSubFlowWorkerKilled(t *testing.T) {
	t.Parallel()
	b := setup(t)
	file := filepath.Join(b.dir, "lines")
	mark := fmt.Sprintf(`echo "$PYOCO_RUN_ID $PYOCO_TASK $PYOCO_ATTEMPT" >> %s`, file)
	f := b.flow(fmt.Sprintf(`version: 1
flow: {name: e2e_sub_parent}
tasks:
  sub:
    inputs: {n: 7}
    flow_yaml: |
      version: 1
      flow: {name: e2e_sub_child, defaults: {n: 0}, graph: "one >> two"}
      tasks:
        one: {use: shell, inputs: {cmd: '%[1]s; echo first'}}
        two: {use: shell, inputs: {cmd: '%[1]s; sleep 1; echo ${ctx.params.n}'}}
`, mark))
	first := b.startWorker("--lease", "2s")
	id := b.submit(f)
	var childID string
	waitFor(t, 30*time.Second, "the child's second task running", func() bool {
		r := b.get(id)
		at := r.Tasks["sub"].Attempts
		if len(at) == 0 || at[0].ChildRunID == "" {
			return false
		}
		childID = at[0].ChildRunID
		c, err := b.store.RunGet(t.Context(), childID)
		if err != nil || c.Tasks["two"].Status != engine.TaskRunning {
			return false
		}
		// RUNNING is stored before the task's process starts: wait
		// until its first line is written too.
		data, _ := os.ReadFile(file)
		return strings.Contains(string(data), childID+" two 1\n")
	})
	first.kill()
	b.startWorker("--lease", "2s")
	r := b.waitAll([]string{id}, 60*time.Second)[id]
	require.Equal(t, engine.RunCompleted, r.Status, r.Error)
	var out map[string]map[string]any
	require.NoError(t, json.Unmarshal(r.Tasks["sub"].Output, &out))
	require.Equal(t, "first\n", out["one"]["stdout"])
	require.Equal(t, "7\n", out["two"]["stdout"])

	at := r.Tasks["sub"].Attempts
	require.Len(t, at, 2)
	require.Equal(t, childID, at[1].ChildRunID, "the child is resumed, not started again")
	c := b.get(childID)
	require.Equal(t, engine.RunCompleted, c.Status)
	require.Equal(t, id, c.ParentRunID)
	require.Equal(t, r.TraceID, c.TraceID)
	require.Equal(t, 2, c.Attempt)
	lines := readLines(t, file)
	require.Equal(t, []string{"1"}, lines[childID+" one"], "the child's finished task ran once")
	require.Equal(t, []string{"1", "2"}, lines[childID+" two"])
}
