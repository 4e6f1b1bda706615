package engine_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/pyoco/pyoco/engine"
	"github.com/stretchr/testify/require"
)

// pluginSeq makes the names of the plug-ins these tests register with the
// process-wide RegisterPlugin unique, so that -count=N runs again.
var pluginSeq atomic.Int64

func uniquePluginName(base string) string {
	return fmt.Sprintf("zz-enginetest-%s-%d", base, pluginSeq.Add(1))
}

func noopTask(context.Context, *engine.TaskContext, map[string]any) (any, error) { return nil, nil }

func TestRegisterPluginPanics(t *testing.T) {
	t.Parallel()
	ok := func(*engine.Registry) error { return nil }
	dup := uniquePluginName("dup")
	engine.RegisterPlugin(engine.Plugin{Name: dup, Version: "1", Register: ok})
	for name, p := range map[string]engine.Plugin{
		"empty name":    {Register: ok},
		"reserved name": {Name: engine.BuiltinPlugin, Register: ok},
		"bad name":      {Name: "a/b", Register: ok},
		"nil register":  {Name: "zz-enginetest-nil"},
		"duplicate":     {Name: dup, Register: ok},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			require.Panics(t, func() { engine.RegisterPlugin(p) })
		})
	}
}

func TestPluginsSorted(t *testing.T) {
	t.Parallel()
	ok := func(*engine.Registry) error { return nil }
	a, b := uniquePluginName("a"), uniquePluginName("b")
	engine.RegisterPlugin(engine.Plugin{Name: b, Register: ok})
	engine.RegisterPlugin(engine.Plugin{Name: a, Version: "0.1.0", Register: ok})
	ps := engine.Plugins()
	names := make([]string, 0, len(ps))
	for _, p := range ps {
		names = append(names, p.Name)
	}
	require.True(t, slices.IsSorted(names), names)
	require.Contains(t, names, a)
	require.Contains(t, names, b)
}

func TestRegistryTask(t *testing.T) {
	t.Parallel()
	reg := engine.NewRegistry()
	in := []engine.Param{{Name: "image", Type: "string", Required: true}}
	require.NoError(t, reg.Task("p/t", noopTask,
		engine.WithSummary("does t"), engine.WithTags("a", "b"), engine.WithCategory("cat"),
		engine.WithInputs(in...), engine.WithOutputs(engine.Param{Name: "n", Type: "integer"})))
	d, ok := reg.Lookup("p/t")
	require.True(t, ok)
	require.Equal(t, "does t", d.Summary)
	require.Equal(t, []string{"a", "b"}, d.Tags)
	require.Equal(t, "cat", d.Category)
	require.Equal(t, in, d.Inputs)
	require.Equal(t, []engine.Param{{Name: "n", Type: "integer"}}, d.Outputs)

	require.ErrorIs(t, reg.Task("p/t", noopTask), engine.ErrDuplicateTask)
	require.Error(t, reg.Task("bad name", noopTask))
	require.Error(t, reg.Task("p/nil", nil))
}

func TestPluginTasks(t *testing.T) {
	t.Parallel()
	t.Run("prefixes and sorts", func(t *testing.T) {
		t.Parallel()
		p := engine.Plugin{Name: "vision", Register: func(r *engine.Registry) error {
			if err := r.Task("zoom", noopTask, engine.WithSummary("z")); err != nil {
				return err
			}
			return r.Add(engine.TaskDef{Name: "vision/classify", Run: noopTask})
		}}
		defs, err := p.Tasks()
		require.NoError(t, err)
		require.Len(t, defs, 2)
		require.Equal(t, "vision/classify", defs[0].Name)
		require.Equal(t, "vision/zoom", defs[1].Name)
		require.Equal(t, "z", defs[1].Summary)
		for _, d := range defs {
			require.Equal(t, "vision", d.Plugin)
		}
		// Register runs again on each call: a second registry gets the same tasks.
		again, err := p.Tasks()
		require.NoError(t, err)
		require.Len(t, again, 2)
	})
	t.Run("register error", func(t *testing.T) {
		t.Parallel()
		sentinel := errors.New("no GPU")
		p := engine.Plugin{Name: "gpu", Register: func(r *engine.Registry) error {
			_ = r.Task("half", noopTask)
			return sentinel
		}}
		defs, err := p.Tasks()
		require.ErrorIs(t, err, sentinel)
		require.ErrorContains(t, err, "plug-in gpu: register: no GPU")
		require.Empty(t, defs)
	})
	t.Run("panic", func(t *testing.T) {
		t.Parallel()
		p := engine.Plugin{Name: "boom", Register: func(*engine.Registry) error { panic("kaboom") }}
		defs, err := p.Tasks()
		require.ErrorContains(t, err, "plug-in boom: Register panicked: kaboom")
		require.Empty(t, defs)
	})
	t.Run("outside namespace", func(t *testing.T) {
		t.Parallel()
		p := engine.Plugin{Name: "a", Register: func(r *engine.Registry) error { return r.Task("b/x", noopTask) }}
		_, err := p.Tasks()
		require.ErrorContains(t, err, `task "b/x" is outside its namespace "a/"`)
	})
	t.Run("invalid plug-in", func(t *testing.T) {
		t.Parallel()
		_, err := engine.Plugin{Name: "x"}.Tasks()
		require.Error(t, err)
		_, err = engine.Plugin{Name: "", Register: func(*engine.Registry) error { return nil }}.Tasks()
		require.Error(t, err)
	})
}

func TestValidPluginName(t *testing.T) {
	t.Parallel()
	require.NoError(t, engine.ValidPluginName("my-plugin_2.x"))
	for _, bad := range []string{"", "builtin", "a/b", "a b", "é"} {
		require.Error(t, engine.ValidPluginName(bad), bad)
	}
}
