package plugins_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
)

// loadTask loads the single plug-in "x" whose run is body and returns its
// task "x/t".
func loadTask(t *testing.T, body string, maxOut int) (*engine.TaskDef, string) {
	t.Helper()
	dir := t.TempDir()
	writeScript(t, dir, "pyoco-plugin-x", describeScript(`{"protocol": 1, "name": "x", "version": "1", "tasks": [{"name": "t", "summary": "T"}]}`, body))
	cfg := testConfig(dir)
	cfg.OutputMaxBytes = maxOut
	reg := newRegistry(t)
	rep := load(t, reg, cfg)
	require.Equal(t, []string{"x/t"}, rep.Plugins[0].Tasks, "%+v", rep)
	def, ok := reg.Lookup("x/t")
	require.True(t, ok)
	return def, dir
}

func TestRunRequestAndEnvironment(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeScript(t, dir, "pyoco-plugin-echo", okScript("echo"))
	reg := newRegistry(t)
	load(t, reg, testConfig(dir))
	def, ok := reg.Lookup("echo/echo")
	require.True(t, ok)
	require.Equal(t, "echo", def.Plugin)
	require.Equal(t, "Echo the request.", def.Summary)
	require.Equal(t, []engine.Param{{Name: "x", Type: "string", Required: true, Description: "anything"}}, def.Inputs)

	stderr := newLineCollector()
	out, err := def.Run(context.Background(), taskContext(stderr), map[string]any{"x": "hi", "n": 2.5})
	require.NoError(t, err)
	require.Equal(t, map[string]any{
		"req": map[string]any{
			"protocol": 1.0, "run_id": "run-1", "task": "echo", "attempt": 2.0,
			"inputs": map[string]any{"x": "hi", "n": 2.5}, "params": map[string]any{"p": "v"},
		},
		"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"task":        "echo",
		"env_task":    "t",
	}, out)
	require.Equal(t, []string{"working on echo"}, stderr.all())
}

func TestRunResults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, body string
		maxOut     int
		want       any    // output, when wantErr is ""
		wantErr    string // exact error
		within     time.Duration
	}{
		{name: "output", body: `cat >/dev/null; echo '{"output": {"n": 1}}'`, want: map[string]any{"n": 1.0}},
		{name: "null output", body: `echo '{"output": null}'`, want: nil},
		{name: "error", body: `echo 'about to fail' >&2; echo '{"error": "bucket not found"}'`, wantErr: "bucket not found"},
		{name: "non-zero exit", body: `echo 'Traceback: ZeroDivisionError' >&2; exit 3`, wantErr: "plug-in x: task t: exit status 3: Traceback: ZeroDivisionError"},
		{name: "non-zero exit with error", body: `echo '{"error": "quota exceeded"}'; exit 1`, wantErr: "plug-in x: task t: exit status 1: quota exceeded"},
		{name: "non-zero exit with output", body: `echo '{"output": 1}'; exit 1`, wantErr: "plug-in x: task t: exit status 1"},
		{name: "killed", body: `kill -9 $$`, wantErr: "plug-in x: task t: signal: killed"},
		{name: "invalid json", body: `echo 'done!'`, wantErr: "plug-in x: task t: invalid JSON on stdout: invalid character 'd' looking for beginning of value"},
		{name: "nothing", body: `true`, wantErr: `plug-in x: task t: printed nothing on stdout (want {"output": ...} or {"error": "..."})`},
		{name: "neither", body: `echo '{"result": 1}'`, wantErr: `plug-in x: task t: stdout has neither "output" nor "error"`},
		{name: "bad error", body: `echo '{"error": 42}'`, wantErr: `plug-in x: task t: "error" must be a non-empty string`},
		{name: "too much", body: `head -c 5000 /dev/zero | tr '\0' a; echo`, maxOut: 1024, wantErr: "plug-in x: task t printed more than 1024 bytes on stdout (the output cap); output rejected"},
		{name: "endless", body: `yes aaaaaaaaaaaaaaaa`, maxOut: 1024, wantErr: "plug-in x: task t printed more than 1024 bytes on stdout (the output cap); output rejected", within: 5 * time.Second},
		{name: "stdin unread", body: `echo '{"output": "fine"}'`, want: "fine"},
		{name: "child holds stderr", body: `echo '{"output": "kept"}'; (sleep 30 >&2) &`, want: "kept", within: 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			def, _ := loadTask(t, tc.body, tc.maxOut)
			start := time.Now()
			out, err := def.Run(context.Background(), taskContext(newLineCollector()), map[string]any{"big": strings.Repeat("x", 1<<17)})
			if tc.within > 0 {
				require.Less(t, time.Since(start), tc.within)
			}
			if tc.wantErr != "" {
				require.EqualError(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, out)
		})
	}
}

// hangScript starts a grandchild, records both pids in pids, says
// "started" on stderr and waits. With ignoreTerm, it and its child ignore
// SIGTERM, so only the SIGKILL after the grace period stops them.
func hangScript(ignoreTerm bool) string {
	trap := ""
	if ignoreTerm {
		trap = "trap '' TERM\n"
	}
	return trap + `sleep 1000 &
echo "$$ $!" > "$(dirname "$0")/pids.tmp" && mv "$(dirname "$0")/pids.tmp" "$(dirname "$0")/pids"
echo started >&2
wait`
}

func readPids(t *testing.T, dir string) []int {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "pids"))
	require.NoError(t, err)
	var pids []int
	for _, f := range strings.Fields(string(raw)) {
		pid, err := strconv.Atoi(f)
		require.NoError(t, err)
		pids = append(pids, pid)
	}
	require.Len(t, pids, 2)
	return pids
}

func TestRunCancellationKillsProcessGroup(t *testing.T) {
	t.Parallel()
	for _, ignoreTerm := range []bool{false, true} {
		t.Run("ignore SIGTERM="+strconv.FormatBool(ignoreTerm), func(t *testing.T) {
			t.Parallel()
			def, dir := loadTask(t, hangScript(ignoreTerm), 0)
			stderr := newLineCollector()
			cause := errors.New("user pressed Ctrl+C")
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			type result struct {
				out any
				err error
			}
			done := make(chan result, 1)
			go func() {
				out, err := def.Run(ctx, taskContext(stderr), nil)
				done <- result{out, err}
			}()
			stderr.waitLine(t, "started")
			pids := readPids(t, dir)
			start := time.Now()
			cancel(cause)
			var r result
			select {
			case r = <-done:
			case <-time.After(waitTimeout):
				t.Fatal("the cancelled task did not return")
			}
			require.ErrorIs(t, r.err, cause)
			require.ErrorContains(t, r.err, "plug-in x: task t interrupted: user pressed Ctrl+C")
			if ignoreTerm {
				require.GreaterOrEqual(t, time.Since(start), 250*time.Millisecond, "SIGKILL only after the grace period")
			}
			requireGone(t, pids...)
		})
	}
}

func TestRunTaskTimeout(t *testing.T) {
	t.Parallel()
	def, dir := loadTask(t, hangScript(true), 0)
	ctx, cancel := context.WithTimeoutCause(context.Background(), 300*time.Millisecond, engine.ErrTaskTimeout)
	defer cancel()
	_, err := def.Run(ctx, taskContext(newLineCollector()), nil)
	require.ErrorIs(t, err, engine.ErrTaskTimeout)
	requireGone(t, readPids(t, dir)...)
}

func TestDescribeCachedInMemory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	count := filepath.Join(dir, "count")
	path := writeScript(t, dir, "pyoco-plugin-counted", `echo x >> "$(dirname "$0")/count"
echo '{"protocol": 1, "name": "counted", "version": "1", "tasks": [{"name": "a"}]}'`)
	describes := func() int {
		raw, err := os.ReadFile(count)
		require.NoError(t, err)
		return strings.Count(string(raw), "x")
	}
	rep := load(t, newRegistry(t), testConfig(dir))
	require.Equal(t, []string{"counted/a"}, rep.Plugins[0].Tasks)
	load(t, newRegistry(t), testConfig(dir))
	require.Equal(t, 1, describes(), "the second load uses the cached describe")

	// A new binary (another modification time) is described again.
	later := time.Now().Add(time.Minute)
	require.NoError(t, os.Chtimes(path, later, later))
	load(t, newRegistry(t), testConfig(dir))
	require.Equal(t, 2, describes())
}
