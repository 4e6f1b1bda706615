package engine_test

import (
	"encoding/json"
	"testing"

	"github.com/pyoco/pyoco/engine"
	"github.com/stretchr/testify/require"
)

func refTestScope() *engine.RefScope {
	return &engine.RefScope{
		Outputs: map[string]any{
			"gather": map[string]any{
				"stdout":    "rice",
				"exit_code": float64(0),
				"items":     []any{"a", map[string]any{"deep": true}, float64(3)},
			},
			"count":   float64(42),
			"nothing": nil,
			"typed":   struct{ Name string }{Name: "go"},
			"raw":     json.RawMessage(`{"x":[1,2]}`),
			"a.b":     "dotted task",
		},
		Params: map[string]any{
			"spice_level": "hot",
			"n":           int64(3),
			"items":       []any{"x", "y"},
			"cfg":         map[string]any{"depth": 2.5, "on": false},
		},
		Env: func(k string) (string, bool) {
			if k == "HOME" {
				return "/home/cook", true
			}
			return "", false
		},
	}
}

func TestResolveInputs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   any
		want any
	}{
		{"plain text", "echo rice", "echo rice"},
		{"non-string", float64(7), float64(7)},
		{"whole output keeps type", "$node.gather.output", refTestScope().Outputs["gather"]},
		{"braced whole output", "${node.gather.output}", refTestScope().Outputs["gather"]},
		{"whole number", "$node.count.output", float64(42)},
		{"whole null", "$node.nothing.output", nil},
		{"path into map", "$node.gather.output.stdout", "rice"},
		{"path into array", "$node.gather.output.items.1.deep", true},
		{"braced path into array", "${node.gather.output.items.2}", float64(3)},
		{"path into struct", "$node.typed.output.Name", "go"},
		{"path into raw json", "$node.raw.output.x.1", json.Number("2")},
		{"dotted task name", "$node.a.b.output", "dotted task"},
		{"param", "$ctx.params.n", int64(3)},
		{"param path", "${ctx.params.cfg.on}", false},
		{"env", "$env.HOME", "/home/cook"},
		{"braced env", "${env.HOME}", "/home/cook"},
		{"interpolate string", "spice is ${ctx.params.spice_level}!", "spice is hot!"},
		{"interpolate json", "items=${ctx.params.items} cfg=${ctx.params.cfg} n=${ctx.params.n}", `items=["x","y"] cfg={"depth":2.5,"on":false} n=3`},
		{"interpolate bare", "done with $node.gather.output.stdout.", "done with rice."},
		{"interpolate several", "${env.HOME}/$node.gather.output.stdout/${node.count.output}", "/home/cook/rice/42"},
		{"interpolate null", "got ${node.nothing.output}", "got null"},
		{"shell vars survive", "echo $HOME ${HOME} $1 $$ $ ${x} $ctx.run_id ${ctx.params}", "echo $HOME ${HOME} $1 $$ $ ${x} $ctx.run_id ${ctx.params}"},
		{"nested", map[string]any{"list": []any{"$ctx.params.n", map[string]any{"s": "x${ctx.params.n}"}}}, map[string]any{"list": []any{int64(3), map[string]any{"s": "x3"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := engine.ResolveInputs(map[string]any{"v": tt.in}, refTestScope())
			require.NoError(t, err)
			require.Equal(t, map[string]any{"v": tt.want}, got)
		})
	}
}

func TestResolveInputsDoesNotModify(t *testing.T) {
	t.Parallel()
	in := map[string]any{"a": []any{"$ctx.params.n"}, "b": map[string]any{"c": "$env.HOME"}}
	_, err := engine.ResolveInputs(in, refTestScope())
	require.NoError(t, err)
	require.Equal(t, map[string]any{"a": []any{"$ctx.params.n"}, "b": map[string]any{"c": "$env.HOME"}}, in)

	got, err := engine.ResolveInputs(nil, nil)
	require.NoError(t, err)
	require.Empty(t, got)
}

func TestResolveInputsErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		{"no task output", "$node.chop.output", `input "v": unresolved reference $node.chop.output: no output of task "chop"`},
		{"no key", "$node.gather.output.x", `input "v": unresolved reference $node.gather.output.x: no key "x"`},
		{"index out of range", "${node.gather.output.items.9}", `input "v": unresolved reference ${node.gather.output.items.9}: index 9 out of range (length 3)`},
		{"bad index", "$node.gather.output.items.first", `input "v": unresolved reference $node.gather.output.items.first: cannot index an array with "first"`},
		{"into scalar", "$node.gather.output.stdout.len", `input "v": unresolved reference $node.gather.output.stdout.len: cannot look up "len" in a string`},
		{"into null", "$node.nothing.output.x", `input "v": unresolved reference $node.nothing.output.x: cannot look up "x" in null`},
		{"no param", "x ${ctx.params.nope} y", `input "v": unresolved reference ${ctx.params.nope}: no param "nope"`},
		{"no env", "$env.NOPE", `input "v": unresolved reference $env.NOPE: environment variable NOPE is not set`},
		{"no output segment", "$node.gather", `input "v": malformed reference $node.gather: want $node.<task>.output[.<path>]`},
		{"empty segment", "${node.gather.output..x}", `input "v": malformed reference ${node.gather.output..x}: want $node.<task>.output[.<path>]`},
		{"unclosed brace", "a ${env.HOME", `input "v": malformed reference ${env.HOME: missing '}'`},
		{"env path", "${env.HOME.x}", `input "v": malformed reference ${env.HOME.x}: want $env.<NAME>`},
		{"bare prefix only", "$ctx.params.", `input "v": malformed reference $ctx.params.: want $ctx.params.<name>[.<path>]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := engine.ResolveInputs(map[string]any{"v": tt.in}, refTestScope())
			require.Nil(t, got)
			require.EqualError(t, err, tt.want)
			var re *engine.RefError
			require.ErrorAs(t, err, &re)
		})
	}
}

func TestRefsIn(t *testing.T) {
	t.Parallel()
	v := map[string]any{
		"b": []any{"${node.chop.output.items.0} and $ctx.params.level.x", float64(1)},
		"a": "echo $HOME $env.USER ${node.bad} ${env.A}",
		"c": map[string]any{"d": "$node.x.y.output"},
	}
	require.Equal(t, []engine.Ref{
		{Kind: engine.RefEnv, Name: "USER", Text: "$env.USER"},
		{Kind: engine.RefEnv, Name: "A", Text: "${env.A}"},
		{Kind: engine.RefNode, Name: "chop", Path: []string{"items", "0"}, Text: "${node.chop.output.items.0}"},
		{Kind: engine.RefParams, Name: "level", Path: []string{"x"}, Text: "$ctx.params.level.x"},
		{Kind: engine.RefNode, Name: "x.y", Text: "$node.x.y.output"},
	}, engine.RefsIn(v))
	require.Empty(t, engine.RefsIn(float64(3)))
	require.Empty(t, engine.RefsIn(nil))
}
