package plugins_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/plugins"
)

func noop(context.Context, *engine.TaskContext, map[string]any) (any, error) { return "ok", nil }

func TestLoadGoPlugins(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	cfg := testConfig()
	cfg.GoPlugins = []engine.Plugin{
		{Name: "good", Version: "1.2.3", Register: func(r *engine.Registry) error {
			if err := r.Task("a", noop, engine.WithSummary("A")); err != nil {
				return err
			}
			return r.Add(engine.TaskDef{Name: "good/b", Summary: "B", Run: noop})
		}},
		{Name: "failing", Version: "0.1", Register: func(r *engine.Registry) error {
			_ = r.Task("half", noop)
			return errors.New("needs a GPU")
		}},
		{Name: "panicky", Register: func(*engine.Registry) error { panic("nil map") }},
		{Name: "greedy", Register: func(r *engine.Registry) error { return r.Task("good/c", noop) }},
	}
	rep := load(t, reg, cfg)
	require.Len(t, rep.Plugins, 4)

	good := find(t, rep, "good")[0]
	require.Equal(t, plugins.OriginGo, good.Origin)
	require.Equal(t, "1.2.3", good.Version)
	require.Equal(t, []string{"good/a", "good/b"}, good.Tasks)
	require.True(t, good.OK())
	d, ok := reg.Lookup("good/a")
	require.True(t, ok)
	require.Equal(t, "good", d.Plugin)
	require.Equal(t, "A", d.Summary)

	failing := find(t, rep, "failing")[0]
	require.Empty(t, failing.Tasks)
	require.Len(t, failing.Errors, 1)
	require.Contains(t, failing.Errors[0], "needs a GPU")
	_, ok = reg.Lookup("failing/half")
	require.False(t, ok, "a plug-in whose Register failed adds no tasks")

	panicky := find(t, rep, "panicky")[0]
	require.Len(t, panicky.Errors, 1)
	require.Contains(t, panicky.Errors[0], "Register panicked: nil map")

	greedy := find(t, rep, "greedy")[0]
	require.Contains(t, greedy.Errors[0], "outside its namespace")
	_, ok = reg.Lookup("good/c")
	require.False(t, ok)

	require.Len(t, rep.Problems(), 3)
	require.ErrorIs(t, rep.Err(), plugins.ErrProblems)

	// Strict: the same problems are an error; what loaded stays loaded.
	cfg.Strict = true
	reg2 := newRegistry(t)
	rep2, err := plugins.Load(context.Background(), reg2, cfg)
	require.ErrorIs(t, err, plugins.ErrProblems)
	require.ErrorContains(t, err, "needs a GPU")
	require.NotNil(t, rep2)
	_, ok = reg2.Lookup("good/a")
	require.True(t, ok)
}

func TestLoadDefaultsToRegisteredGoPlugins(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.GoPlugins = nil // engine.Plugins(): none are registered in this test binary
	rep := load(t, newRegistry(t), cfg)
	require.Empty(t, rep.Plugins)
}

func TestDefaultPath(t *testing.T) {
	t.Parallel()
	env := map[string]string{"HOME": "/home/u"}
	getenv := func(k string) string { return env[k] }
	require.Equal(t, []string{"/home/u/.pyoco/plugins"}, plugins.DefaultPath(getenv))
	env[plugins.PathEnv] = "/a" + string(os.PathListSeparator) + string(os.PathListSeparator) + "/b"
	require.Equal(t, []string{"/a", "/b"}, plugins.DefaultPath(getenv))
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]*plugins.Config{
		"describe timeout": {DescribeTimeout: -1},
		"wait delay":       {WaitDelay: -1},
		"output cap":       {OutputMaxBytes: -1},
		"cache dir":        {CacheDir: "relative"},
	} {
		_, err := plugins.Load(context.Background(), newRegistry(t), cfg)
		require.Error(t, err, name)
	}
}

const okDescribe = `{"protocol": 1, "name": "NAME", "version": "2.0.0", "tasks": [
  {"name": "echo", "summary": "Echo the request.", "tags": ["test"], "category": "debug",
   "inputs": [{"name": "x", "type": "string", "required": true, "description": "anything"}],
   "outputs": [{"name": "req", "type": "object"}]}]}`

// okScript is a plug-in "name" whose run echoes its request, TRACEPARENT
// and PYOCO_* variables as its output.
func okScript(name string) string {
	return describeScript(strings.ReplaceAll(okDescribe, "NAME", name),
		`req=$(cat); echo "working on $2" >&2; printf '{"output": {"req": %s, "traceparent": "%s", "task": "%s", "env_task": "%s"}}\n' "$req" "$TRACEPARENT" "$2" "$PYOCO_TASK"`)
}

func TestClashRules(t *testing.T) {
	t.Parallel()
	dir1, dir2 := t.TempDir(), t.TempDir()
	writeScript(t, dir1, "pyoco-plugin-shared", okScript("shared"))
	writeScript(t, dir2, "pyoco-plugin-shared", okScript("shared"))   // shadowed by dir1's
	writeScript(t, dir1, "pyoco-plugin-gofirst", okScript("gofirst")) // shadowed by the Go plug-in
	writeScript(t, dir2, "pyoco-plugin-builtin", okScript("builtin")) // reserved
	writeScript(t, dir2, "pyoco-plugin-taken", okScript("taken"))     // task taken by the caller

	reg := newRegistry(t)
	require.NoError(t, reg.Add(engine.TaskDef{Name: "taken/echo", Plugin: "mine", Run: noop}))
	cfg := testConfig(dir1, dir2, dir1) // a directory listed twice is searched once
	cfg.GoPlugins = []engine.Plugin{{Name: "gofirst", Version: "9", Register: func(r *engine.Registry) error { return r.Task("echo", noop) }}}
	rep := load(t, reg, cfg)

	var order []string
	for _, p := range rep.Plugins {
		order = append(order, p.Origin+":"+p.Name+":"+filepath.Base(filepath.Dir(p.Path)))
	}
	b1, b2 := filepath.Base(dir1), filepath.Base(dir2)
	require.Equal(t, []string{
		"go:gofirst:.",
		"exec:gofirst:" + b1, "exec:shared:" + b1,
		"exec:builtin:" + b2, "exec:shared:" + b2, "exec:taken:" + b2,
	}, order, "Go plug-ins first, then exec plug-ins in path order, by file name within a directory")

	gofirst := find(t, rep, "gofirst")
	require.Equal(t, []string{"gofirst/echo"}, gofirst[0].Tasks)
	require.Empty(t, gofirst[1].Tasks)
	require.Equal(t, []string{`name clash: shadowed by go plug-in "gofirst", not loaded`}, gofirst[1].Warnings)
	d, _ := reg.Lookup("gofirst/echo")
	require.Equal(t, "", d.Summary, "the Go plug-in's task, not the exec one's")

	shared := find(t, rep, "shared")
	require.Equal(t, []string{"shared/echo"}, shared[0].Tasks)
	require.True(t, shared[0].OK())
	require.Equal(t, "2.0.0", shared[0].Version)
	require.Empty(t, shared[1].Tasks)
	require.Contains(t, shared[1].Warnings[0], "shadowed by exec plug-in \"shared\" ("+filepath.Join(dir1, "pyoco-plugin-shared")+")")

	builtinRep := find(t, rep, "builtin")[0]
	require.Contains(t, builtinRep.Errors[0], "reserved")

	taken := find(t, rep, "taken")[0]
	require.Empty(t, taken.Tasks)
	require.Equal(t, []string{`name clash: task taken/echo is already provided by plug-in "mine", not registered`}, taken.Warnings)
	d, _ = reg.Lookup("taken/echo")
	require.Equal(t, "mine", d.Plugin, "what the registry held first wins")
}

func TestBrokenDescribe(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, script string
		noExec       bool
		want         string // in the error
		within       time.Duration
	}{
		{name: "crash", script: "echo 'ImportError: no module named yaml' >&2; exit 3", want: "describe: exit status 3: ImportError: no module named yaml"},
		{name: "killed", script: "kill -9 $$", want: "describe: signal: killed"},
		{name: "invalid-json", script: `echo '{"protocol": 1, "tasks": ['`, want: "describe: invalid JSON on stdout"},
		{name: "two-values", script: `echo '{"protocol": 1} {}'`, want: "describe: invalid JSON on stdout: more than one value"},
		{name: "not-object", script: `echo '[1]'`, want: "describe: invalid JSON on stdout"},
		{name: "hang", script: "sleep 30", want: "describe: timed out after 300ms", within: 4 * time.Second},
		{name: "hang-child-holds-stdout", script: "(sleep 30; echo late) & echo '{\"protocol\": 1,'; wait", want: "describe: timed out after 300ms", within: 4 * time.Second},
		{name: "too-much", script: "yes '{}'", want: "describe: printed more than 4096 bytes on stdout", within: 4 * time.Second},
		{name: "no-protocol", script: `echo '{"name": "x", "tasks": []}'`, want: `describe: "protocol" is missing (want 1)`},
		{name: "protocol-2", script: `echo '{"protocol": 2, "tasks": []}'`, want: "describe: protocol 2 is not supported (want 1)"},
		{name: "bad-task-name", script: `echo '{"protocol": 1, "tasks": [{"name": "a/b"}]}'`, want: `describe: tasks[0]: name "a/b" must match`},
		{name: "dup-task", script: `echo '{"protocol": 1, "tasks": [{"name": "a"}, {"name": "a"}]}'`, want: `describe: task "a" is listed twice`},
		{name: "unnamed-param", script: `echo '{"protocol": 1, "tasks": [{"name": "a", "inputs": [{"type": "string"}]}]}'`, want: `describe: task "a": parameter 0 has no name`},
		{name: "not-executable", script: "exit 0", noExec: true, want: "not executable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := writeScript(t, dir, "pyoco-plugin-"+tc.name, tc.script)
			if tc.noExec {
				require.NoError(t, os.Chmod(path, 0o644))
			}
			cfg := testConfig(dir)
			cfg.DescribeTimeout = 300 * time.Millisecond
			cfg.OutputMaxBytes = 4096
			reg := newRegistry(t)
			before := len(reg.List())
			start := time.Now()
			rep := load(t, reg, cfg)
			if tc.within > 0 {
				require.Less(t, time.Since(start), tc.within)
			}
			p := find(t, rep, tc.name)[0]
			require.Equal(t, plugins.OriginExec, p.Origin)
			require.Equal(t, path, p.Path)
			require.Len(t, p.Errors, 1, "%+v", p)
			require.Contains(t, p.Errors[0], tc.want)
			require.Empty(t, p.Tasks)
			require.Len(t, reg.List(), before, "a broken plug-in registers nothing")

			cfg.Strict = true
			_, err := plugins.Load(context.Background(), newRegistry(t), cfg)
			require.ErrorIs(t, err, plugins.ErrProblems)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestDescribeWarnings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeScript(t, dir, "pyoco-plugin-renamed", okScript("other"))
	writeScript(t, dir, "pyoco-plugin-empty", `echo '{"protocol": 1, "name": "empty", "version": "0", "tasks": []}'`)
	rep := load(t, newRegistry(t), testConfig(dir))
	renamed := find(t, rep, "renamed")[0]
	require.Equal(t, []string{"renamed/echo"}, renamed.Tasks, "tasks are addressed by the file name")
	require.Equal(t, []string{`describe names the plug-in "other"; its tasks are addressed by the file name, as renamed/<task>`}, renamed.Warnings)
	empty := find(t, rep, "empty")[0]
	require.Equal(t, []string{"describe lists no tasks"}, empty.Warnings)
}

func TestDiscovery(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeScript(t, dir, "pyoco-plugin-b", okScript("b"))
	writeScript(t, dir, "pyoco-plugin-a", okScript("a"))
	writeScript(t, dir, "not-a-plugin", "exit 1")
	require.NoError(t, os.Mkdir(filepath.Join(dir, "pyoco-plugin-dir"), 0o755))
	sub := t.TempDir()
	require.NoError(t, os.Symlink(filepath.Join(dir, "pyoco-plugin-a"), filepath.Join(sub, "pyoco-plugin-link")))
	rep := load(t, newRegistry(t), testConfig(filepath.Join(dir, "missing"), dir, sub))
	var names []string
	for _, p := range rep.Plugins {
		names = append(names, p.Name)
	}
	require.Equal(t, []string{"a", "b", "link"}, names)
	require.Equal(t, []string{"link/echo"}, find(t, rep, "link")[0].Tasks)
	require.Equal(t, []string{filepath.Join(dir, "missing"), dir, sub}, rep.Path)

	// A non-nil empty path disables exec plug-ins.
	rep = load(t, newRegistry(t), testConfig())
	require.Empty(t, rep.Plugins)
}
