package engine_test

import (
	"context"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pyoco/pyoco/engine"
	"github.com/stretchr/testify/require"
)

// The -update flag rewrites golden files (go test ./engine -run Load -update).
// Other test files of the package may define -update too; it is shared.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files in testdata")
	}
}

// updateGolden reports whether -update was given.
func updateGolden() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

// loaderRegistry is a registry of stub tasks for loader tests.
func loaderRegistry(t testing.TB) *engine.Registry {
	t.Helper()
	noop := func(context.Context, *engine.TaskContext, map[string]any) (any, error) { return nil, nil }
	reg := engine.NewRegistry()
	for _, def := range []engine.TaskDef{
		{Name: "shell", Inputs: []engine.Param{{Name: "cmd", Type: "string", Required: true}, {Name: "env", Type: "object"}, {Name: "dir", Type: "string"}}},
		{Name: "sleep", Inputs: []engine.Param{{Name: "duration", Type: "duration", Required: true}}},
		{Name: "log", Inputs: []engine.Param{{Name: "message", Type: "any", Required: true}}},
		{Name: "fail", Inputs: []engine.Param{{Name: "message", Type: "string"}}},
		{Name: "noop"},
		{Name: "examples/chop", Plugin: "examples", Inputs: []engine.Param{
			{Name: "ingredients", Type: "any", Required: true},
			{Name: "note", Type: "string"},
			{Name: "count", Type: "integer"},
		}},
	} {
		def.Run = noop
		require.NoError(t, reg.Add(def))
	}
	return reg
}

func TestLoadFlowBadFixtures(t *testing.T) {
	t.Parallel()

	// Each fixture's full error text is in the .err golden file next to it;
	// the table pins the parts that matter so that -update cannot silently
	// accept a wrong message.
	tests := map[string][]string{
		"alias": {
			"alias.yaml:6:23: alias *a refers to a value that contains it",
			"alias.yaml:7:30: unknown alias *nosuch",
		},
		"bad_durations": {
			`bad_durations.yaml:4:12: bad duration "10 minutes" for timeout`,
			`bad_durations.yaml:8:14: bad duration "-1s" for timeout: must not be negative`,
			`bad_durations.yaml:9:18: bad duration "5" for retry_delay`,
			`bad_durations.yaml:10:22: retry_max_delay must be positive`,
		},
		"bad_enums": {
			`bad_enums.yaml:4:31: bad fail_policy "ignore" (want stop or isolate)`,
			`bad_enums.yaml:5:27: bad trigger "some" (want all or any)`,
		},
		"bad_ints": {
			"bad_ints.yaml:4:17: max_parallel must be between 1 and 10000, got 0",
			"bad_ints.yaml:6:27: retries must be an integer, got a string",
			"bad_ints.yaml:7:27: retries must be between 0 and 100, got 1000",
			"bad_ints.yaml:8:27: retries must be an integer, got a number",
		},
		"bad_values": {
			"bad_values.yaml:4:19: .inf cannot be represented in JSON",
			"bad_values.yaml:6:26: inputs of task a must be a mapping, got a list",
			"bad_values.yaml:7:30: .nan cannot be represented in JSON",
		},
		"cycle": {"cycle.yaml:8:3: cycle: a -> b -> c -> a"},
		"depends_on": {
			"depends_on.yaml:4:31: task a cannot depend on itself",
			`depends_on.yaml:5:31: task b depends on unknown task "nosuch"`,
			"depends_on.yaml:6:30: depends_on must be a list of task names, got a mapping",
		},
		"duplicate_key": {
			`duplicate_key.yaml:4:3: duplicate key "name" (first at 3:3)`,
			`duplicate_key.yaml:7:3: duplicate key "a" (first at 6:3)`,
		},
		"empty":     {"empty.yaml:1:1: empty flow file"},
		"multi_doc": {"multi_doc.yaml:5:1: a flow file holds one YAML document"},
		"graph_block": {
			"graph_block.yaml:6:5: graph: unclosed '('",
		},
		"graph_mix": {
			"graph_mix.yaml:7:14: graph: cannot mix '&' and '|' in one group; use parentheses",
		},
		"graph_plain": {"graph_plain.yaml:4:15: graph: unexpected '>>' after '>>'"},
		"graph_quoted": {
			"graph_quoted.yaml:4:24: graph: expected task name, got ')'",
		},
		"graph_self": {"graph_self.yaml:5:10: graph: task a cannot depend on itself"},
		"graph_unknown": {
			`graph_unknown.yaml:5:10: graph names unknown task "chop" (not a key of tasks)`,
			`graph_unknown.yaml:6:13: graph names unknown task "a2"`,
		},
		"invalid_names": {
			`invalid_names.yaml:3:9: invalid flow name "curry party"`,
			`invalid_names.yaml:5:3: invalid task name "a b"`,
		},
		"missing_name":     {"missing_name.yaml:2:1: missing flow.name"},
		"missing_sections": {"missing_sections.yaml:1:1: missing flow", "missing_sections.yaml:1:1: missing tasks"},
		"missing_use": {
			"missing_use.yaml:4:3: task a has no use",
			"missing_use.yaml:5:3: task b has no use",
		},
		"missing_version": {"missing_version.yaml:1:1: missing version (want version: 1)"},
		"not_mapping":     {"not_mapping.yaml:1:1: a flow file must be a mapping, got a list"},
		"ref_malformed": {
			"ref_malformed.yaml:9:16: task b: malformed reference $node.a.result: want $node.<task>.output[.<path>]",
			"ref_malformed.yaml:10:14: task b: malformed reference ${ctx.params.k: missing '}'",
		},
		"ref_not_upstream": {
			"ref_not_upstream.yaml:14:16: task curry references $node.chop.output but does not depend on chop",
			"ref_not_upstream.yaml:15:13: task curry references its own output (${node.curry.output})",
		},
		"ref_unknown_node": {
			`ref_unknown_node.yaml:7:16: task a references ${node.nosuch.output}: no task "nosuch"`,
			`ref_unknown_node.yaml:8:23: task a references $node.ghost.output.x: no task "ghost"`,
		},
		"required_input": {
			`required_input.yaml:6:5: task chop: missing required input "ingredients" of examples/chop`,
			`required_input.yaml:7:3: task chop2: missing required input "ingredients" of examples/chop`,
		},
		"trigger_conflict": {
			"trigger_conflict.yaml:8:27: task c has trigger: all, but the graph joins its upstream with '|' (trigger any) at 4:21",
		},
		"unknown_keys": {
			`unknown_keys.yaml:4:3: unknown key "nmae" in flow (did you mean "name"?)`,
			`unknown_keys.yaml:5:3: unknown key "when" in flow (known: name, description, defaults, graph, max_parallel, timeout, schedule)`,
			`unknown_keys.yaml:9:5: unknown key "retires" in task a (did you mean "retries"?)`,
			`unknown_keys.yaml:10:5: unknown key "swich" in task a (did you mean "switch"?)`,
			`unknown_keys.yaml:11:1: unknown key "extra" in the flow file`,
		},
		"control_flow": {
			`control_flow.yaml:6:34: when: bad expression: unexpected token EOF`,
			`control_flow.yaml:7:24: when: expression must give a boolean: expected bool, but got int`,
			`control_flow.yaml:8:25: when: bad expression: unknown name zz`,
			`control_flow.yaml:10:24: task e: when reads node.a but the task does not depend on a`,
			`control_flow.yaml:13:27: task h: foreach cannot read item`,
			`control_flow.yaml:14:30: task i references ${ctx.index} but has no foreach`,
			`control_flow.yaml:24:19: switch p: a case names unknown task "nope"`,
			`control_flow.yaml:27:39: task q is on the branches of two switches (p and s)`,
		},
		"switch_cycle": {"switch_cycle.yaml:6:3: cycle: pick -> b -> c -> pick"},
		"unknown_use": {
			`unknown_use.yaml:4:12: task a: unknown use "nosuch"`,
			`unknown_use.yaml:6:10: task b: unknown use "examples/nosuch"`,
		},
		"wrong_version": {"wrong_version.yaml:1:10: unsupported version 2 (want 1)"},
		"yaml_syntax":   {"yaml_syntax.yaml:5:31: invalid YAML:"},
	}

	reg := loaderRegistry(t)
	files, err := filepath.Glob("testdata/flows/bad/*.yaml")
	require.NoError(t, err)
	require.Len(t, files, len(tests), "every bad fixture needs a table entry and vice versa")

	for name, wants := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join("testdata", "flows", "bad", name+".yaml")
			f, err := engine.LoadFlowFile(path, reg)
			require.Error(t, err)
			require.Nil(t, f)

			var les engine.LoadErrors
			require.ErrorAs(t, err, &les)
			prev := engine.Position{}
			for _, le := range les {
				require.Equal(t, path, le.Pos.File)
				require.Positive(t, le.Pos.Line, le.Error())
				require.Positive(t, le.Pos.Col, le.Error())
				require.False(t, le.Pos.Line < prev.Line || le.Pos.Line == prev.Line && le.Pos.Col < prev.Col, "errors not sorted: %v", err)
				prev = le.Pos
			}
			got := filepath.ToSlash(err.Error()) + "\n"
			for _, want := range wants {
				require.Contains(t, got, want)
			}

			golden := strings.TrimSuffix(path, ".yaml") + ".err"
			if updateGolden() {
				require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "run with -update to create %s", golden)
			require.Equal(t, string(want), got)
		})
	}
}

func TestLoadFlowCycleIsErrCycle(t *testing.T) {
	t.Parallel()
	_, err := engine.LoadFlowFile("testdata/flows/bad/cycle.yaml", nil)
	require.ErrorIs(t, err, engine.ErrCycle)
	var le *engine.LoadError
	require.ErrorAs(t, err, &le)
	require.Equal(t, 8, le.Pos.Line)
}

func TestLoadFlowGood(t *testing.T) {
	t.Parallel()
	reg := loaderRegistry(t)

	t.Run("diamond", func(t *testing.T) {
		t.Parallel()
		f, err := engine.LoadFlowFile("testdata/flows/good/diamond.yaml", reg)
		require.NoError(t, err)
		require.Equal(t, "curry_party", f.Name)
		require.Equal(t, "diamond with references", f.Description)
		require.Equal(t, map[string]any{
			"spice_level": "hot",
			"items":       []any{"a", "b"},
			"portions":    int64(4),
			"ratio":       1.5,
		}, f.Defaults)
		require.Equal(t, 3, f.MaxParallel)
		require.Equal(t, 10*time.Minute, f.Timeout)
		require.Contains(t, f.Graph, "gather >> (chop & boil)")
		require.Equal(t, []string{"gather", "chop", "boil", "curry"}, f.Order)
		require.Equal(t, "testdata/flows/good/diamond.yaml", f.File)
		src, err := os.ReadFile("testdata/flows/good/diamond.yaml")
		require.NoError(t, err)
		require.Equal(t, string(src), f.Source)

		chop := f.Tasks["chop"]
		require.Equal(t, &engine.TaskSpec{
			Name: "chop",
			Use:  "examples/chop",
			Inputs: map[string]any{
				"ingredients": "$node.gather.output",
				"note":        "spice is ${ctx.params.spice_level}",
				"count":       "$ctx.params.portions",
			},
			Retries:       2,
			RetryDelay:    time.Second,
			RetryMaxDelay: engine.DefaultRetryMaxDelay,
			Timeout:       30 * time.Second,
			FailPolicy:    engine.FailStop,
			Trigger:       engine.TriggerAll,
			Upstream:      []string{"gather"},
			Pos:           engine.Position{File: "testdata/flows/good/diamond.yaml", Line: 14, Col: 3},
		}, chop)
		require.Equal(t, 5*time.Second, f.Tasks["boil"].RetryMaxDelay)
		require.Equal(t, []string{"boil", "chop"}, f.Tasks["curry"].Upstream)
		require.Empty(t, f.Tasks["gather"].Upstream)
		require.Equal(t, []any{int64(1), 2.5, true, nil, map[string]any{"k": "$ctx.params.items"}}, f.Tasks["curry"].Inputs["extra"])
		require.Equal(t, map[string][]string{"gather": {"chop", "boil"}, "chop": {"curry"}, "boil": {"curry"}}, f.Downstream())
		require.Len(t, f.Warnings, 1)
		require.Equal(t, `testdata/flows/good/diamond.yaml:28:7: task curry: input "extra" is not declared by log`, f.Warnings[0].Error())
	})

	t.Run("spec example", func(t *testing.T) {
		t.Parallel()
		f, err := engine.LoadFlowFile("testdata/flows/good/spec.yaml", reg)
		require.NoError(t, err)
		require.Equal(t, "curry_party", f.Name)
		require.Equal(t, 8, f.MaxParallel)
		require.Equal(t, []string{"gather"}, f.Tasks["chop"].Upstream)
		require.Equal(t, []string{"boil", "chop"}, f.Tasks["curry"].Upstream)
		require.Empty(t, f.Tasks["boil"].Upstream)
		require.Equal(t, engine.TriggerAll, f.Tasks["chop"].Trigger)
		require.Len(t, f.Warnings, 1)
		require.Equal(t, `testdata/flows/good/spec.yaml:5:32: param "items" has a default but is never referenced ($ctx.params.items)`, f.Warnings[0].Error())
	})

	t.Run("any", func(t *testing.T) {
		t.Parallel()
		f, err := engine.LoadFlowFile("testdata/flows/good/any.yaml", reg)
		require.NoError(t, err)
		require.Equal(t, "first-wins", f.Name)
		require.Equal(t, engine.DefaultMaxParallel, f.MaxParallel)
		require.Equal(t, engine.TriggerAny, f.Tasks["done"].Trigger)
		require.Equal(t, []string{"fast", "slow"}, f.Tasks["done"].Upstream)
		require.Equal(t, engine.TriggerAll, f.Tasks["fast"].Trigger)
		require.Equal(t, []string{"start"}, f.Tasks["fast"].Upstream)
	})

	t.Run("isolate", func(t *testing.T) {
		t.Parallel()
		f, err := engine.LoadFlowFile("testdata/flows/good/isolate.yaml", reg)
		require.NoError(t, err)
		require.Equal(t, engine.FailIsolate, f.Tasks["flaky"].FailPolicy)
		require.Equal(t, engine.FailStop, f.Tasks["a"].FailPolicy)
		require.Equal(t, []string{"a"}, f.Tasks["flaky"].Upstream)
		require.Equal(t, []string{"flaky"}, f.Tasks["after_flaky"].Upstream)
		require.Equal(t, []string{"a"}, f.Tasks["b"].Upstream)
		require.Equal(t, engine.TriggerAny, f.Tasks["lonely"].Trigger)
		require.Empty(t, f.Tasks["lonely"].Upstream)
		require.Empty(t, f.Graph)
	})

	t.Run("control_flow", func(t *testing.T) {
		t.Parallel()
		f, err := engine.LoadFlowFile("testdata/flows/good/control_flow.yaml", reg)
		require.NoError(t, err)
		require.Empty(t, f.Warnings)
		pick := f.Tasks["pick"]
		require.Equal(t, engine.UseSwitch, pick.Use)
		require.Equal(t, "params.mode", pick.Switch.Expr.Text)
		require.Equal(t, engine.Position{File: "testdata/flows/good/control_flow.yaml", Line: 9, Col: 13}, pick.Switch.Expr.Pos)
		require.Equal(t, []string{"fast", "slow"}, pick.Switch.CaseKeys)
		require.Equal(t, map[string][]string{"fast": {"quick"}, "slow": {"careful"}}, pick.Switch.Cases)
		require.Equal(t, []string{"careful"}, pick.Switch.Default)
		require.Equal(t, []string{"quick"}, pick.Switch.Taken("fast"))
		require.Equal(t, []string{"careful"}, pick.Switch.Taken("other"))
		require.Equal(t, "pick", f.Tasks["quick"].Branch)
		require.Equal(t, "pick", f.Tasks["careful"].Branch)
		require.Equal(t, []string{"pick"}, f.Tasks["careful"].Upstream)
		require.Equal(t, "params.n > 1", f.Tasks["careful"].When.Text)
		chop := f.Tasks["chop"]
		require.Equal(t, "params.veg", chop.Foreach.Text)
		require.Equal(t, 2, chop.ForeachParallel)
		require.Equal(t, engine.Repeat{Max: 2, Interval: 10 * time.Millisecond}, chop.Repeat)
		require.Equal(t, engine.TriggerAny, chop.Trigger)
		require.Equal(t, "output == nil", f.Tasks["poll"].Until.Text)
		require.Empty(t, f.Tasks["poll"].Branch)
	})

	t.Run("anchors", func(t *testing.T) {
		t.Parallel()
		f, err := engine.LoadFlowFile("testdata/flows/good/anchors.yaml", reg)
		require.NoError(t, err)
		require.Equal(t, "shell", f.Tasks["b"].Use)
		require.Equal(t, 1, f.Tasks["b"].Retries)
		require.Equal(t, map[string]any{"cmd": "echo b", "env": map[string]any{"X": "1"}}, f.Tasks["b"].Inputs)
		require.Equal(t, map[string]any{"cmd": "echo hi", "env": map[string]any{"X": "1"}}, f.Tasks["a"].Inputs)
		require.Equal(t, []string{"a"}, f.Tasks["b"].Upstream)
	})
}

func TestLoadFlowWarnings(t *testing.T) {
	t.Parallel()
	src := `version: 1
flow:
  name: warn
  defaults: {unused: 1, used: 2}
tasks:
  a:
    use: shell
    inputs:
      cmd: "echo ${ctx.params.used} $ctx.params.missing"
      shell_opts: -e
`
	f, err := engine.LoadFlow("w.yaml", []byte(src), loaderRegistry(t))
	require.NoError(t, err)
	var got []string
	for _, w := range f.Warnings {
		got = append(got, w.Error())
	}
	require.Equal(t, []string{
		`w.yaml:4:14: param "unused" has a default but is never referenced ($ctx.params.unused)`,
		`w.yaml:9:12: task a references param "missing", which has no default: it must be given at run time`,
		`w.yaml:10:7: task a: input "shell_opts" is not declared by shell`,
	}, got)
}

func TestLoadFlowNilTasks(t *testing.T) {
	t.Parallel()
	src := "version: 1\nflow: {name: x}\ntasks: {a: {use: whatever/thing, inputs: {y: 1}}}\n"
	f, err := engine.LoadFlow("", []byte(src), nil)
	require.NoError(t, err)
	require.Equal(t, "whatever/thing", f.Tasks["a"].Use)
	require.Empty(t, f.File)

	var nilReg *engine.Registry
	_, err = engine.LoadFlow("", []byte(src), nilReg)
	require.NoError(t, err)

	_, err = engine.LoadFlow("", []byte(src), loaderRegistry(t))
	require.EqualError(t, err, `3:18: task a: unknown use "whatever/thing" (not a registered task)`)
}

func TestLoadFlowGraphPositions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, graph string
		want        string
	}{
		{"plain", "graph: a >> nope", `2:15: graph names unknown task "nope"`},
		{"double quoted", `graph: "a >> nope"`, `2:16: graph names unknown task "nope"`},
		{"single quoted", `graph: 'a >> nope'`, `2:16: graph names unknown task "nope"`},
		{"literal", "graph: |\n    a >> b\n    b >> nope", `4:12: graph names unknown task "nope"`},
		{"literal with deeper line", "graph: |\n    a >> b\n      b >> nope", `4:14: graph names unknown task "nope"`},
		{"literal strip", "graph: |-\n    # first\n\n    a >> (b", `5:12: graph: unclosed '('`},
		{"folded", "graph: >\n    a >> b\n    b >> nope", `3:7: graph: unexpected task name "b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := "flow:\n  " + strings.ReplaceAll(tt.graph, "\n", "\n  ") + "\n  name: g\nversion: 1\ntasks: {a: {use: noop}, b: {use: noop}}\n"
			_, err := engine.LoadFlow("", []byte(src), nil)
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.want, "source:\n%s", src)
		})
	}
}

func TestLoadFlowFileMissing(t *testing.T) {
	t.Parallel()
	_, err := engine.LoadFlowFile(filepath.Join(t.TempDir(), "nope.yaml"), nil)
	require.ErrorIs(t, err, fs.ErrNotExist)
	var le *engine.LoadError
	require.False(t, errors.As(err, &le))
}

func TestLoadFlowAliasBomb(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("version: 1\nflow:\n  name: bomb\n  defaults:\n    l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 10; i++ {
		b.WriteString("    l" + string(rune('0'+i)) + ": &l" + string(rune('0'+i)) + " [")
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*l" + string(rune('0'+i-1)))
		}
		b.WriteString("]\n")
	}
	b.WriteString("tasks: {a: {use: noop}}\n")
	_, err := engine.LoadFlow("bomb.yaml", []byte(b.String()), nil)
	require.ErrorContains(t, err, "too many values")
}
