package builtin_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
)

func TestShell(t *testing.T) {
	t.Parallel()

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "marker"), []byte("in dir\n"), 0o600))

	tests := []struct {
		name       string
		inputs     map[string]any
		want       func(b *testBundle) map[string]any // nil: the task must fail
		wantErr    string
		wantStdout []string
		wantStderr []string
	}{
		{
			name:       "stdout",
			inputs:     map[string]any{"cmd": "echo hello; echo world"},
			want:       func(*testBundle) map[string]any { return map[string]any{"exit_code": 0, "stdout": "hello\nworld\n"} },
			wantStdout: []string{"hello", "world"},
		},
		{
			name:       "stderr is not in the output",
			inputs:     map[string]any{"cmd": "echo out; echo err1 >&2; echo err2 >&2"},
			want:       func(*testBundle) map[string]any { return map[string]any{"exit_code": 0, "stdout": "out\n"} },
			wantStdout: []string{"out"},
			wantStderr: []string{"err1", "err2"},
		},
		{
			name:       "non-zero exit fails",
			inputs:     map[string]any{"cmd": "echo partial; echo oops >&2; exit 3"},
			wantErr:    "exit status 3: oops",
			wantStdout: []string{"partial"},
			wantStderr: []string{"oops"},
		},
		{
			name:    "non-zero exit carries the stderr tail",
			inputs:  map[string]any{"cmd": "for i in $(seq 1 15); do echo line$i >&2; done; echo >&2; exit 4"},
			wantErr: "exit status 4: line15\nstderr (last 10 lines):\nline6\nline7\nline8\nline9\nline10\nline11\nline12\nline13\nline14\nline15",
		},
		{
			name:    "command not found",
			inputs:  map[string]any{"cmd": "pyoco-no-such-command-xyz"},
			wantErr: "exit status 127",
		},
		{
			name:   "env",
			inputs: map[string]any{"cmd": `printf '%s|%s' "$FOO" "$BAR"`, "env": map[string]any{"FOO": "foo value", "BAR": ""}},
			want:   func(*testBundle) map[string]any { return map[string]any{"exit_code": 0, "stdout": "foo value|"} },
		},
		{
			name:   "env overrides inherited",
			inputs: map[string]any{"cmd": `printf '%s' "$HOME"`, "env": map[string]any{"HOME": "/nowhere"}},
			want:   func(*testBundle) map[string]any { return map[string]any{"exit_code": 0, "stdout": "/nowhere"} },
		},
		{
			name:       "dir",
			inputs:     map[string]any{"cmd": "cat marker", "dir": dir},
			want:       func(*testBundle) map[string]any { return map[string]any{"exit_code": 0, "stdout": "in dir\n"} },
			wantStdout: []string{"in dir"},
		},
		{
			name:    "missing dir",
			inputs:  map[string]any{"cmd": "true", "dir": filepath.Join(dir, "missing")},
			wantErr: "start shell",
		},
		{
			name:   "run identity",
			inputs: map[string]any{"cmd": `printf '%s|%s|%s' "$PYOCO_RUN_ID" "$PYOCO_TASK" "$PYOCO_ATTEMPT"`},
			want: func(b *testBundle) map[string]any {
				return map[string]any{"exit_code": 0, "stdout": fmt.Sprintf("%s|%s|%d", b.tc.RunID, b.tc.Task, b.tc.Attempt)}
			},
		},
		{
			name:   "TRACEPARENT",
			inputs: map[string]any{"cmd": `printf '%s' "$TRACEPARENT"`},
			want:   func(b *testBundle) map[string]any { return map[string]any{"exit_code": 0, "stdout": b.tc.TraceParent} },
		},
		{
			name:   "stdout capped",
			inputs: map[string]any{"cmd": "head -c 70000 /dev/zero | tr '\\000' a"},
			want: func(*testBundle) map[string]any {
				return map[string]any{"exit_code": 0, "stdout": strings.Repeat("a", 64<<10) + "\n[output truncated]"}
			},
		},
		{
			name: "cap keeps runes whole",
			// 3-byte runes: 64 KiB is not a multiple of 3.
			inputs: map[string]any{"cmd": "i=0; while [ $i -lt 22000 ]; do printf '€'; i=$((i+1)); done"},
			want: func(*testBundle) map[string]any {
				return map[string]any{"exit_code": 0, "stdout": strings.Repeat("€", (64<<10)/3) + "\n[output truncated]"}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			out, err := b.run(t, t.Context(), "shell", tt.inputs)
			if tt.want == nil {
				require.ErrorContains(t, err, tt.wantErr)
				require.Nil(t, out)
			} else {
				require.NoError(t, err)
				require.Equal(t, tt.want(b), out)
			}
			if tt.wantStdout != nil {
				require.Equal(t, tt.wantStdout, b.stdout.Lines())
			}
			if tt.wantStderr != nil {
				require.Equal(t, tt.wantStderr, b.stderr.Lines())
			}
		})
	}
}

// TestShellStreams checks that output lines reach the task's writers while
// the command is still running: the script blocks on a FIFO that the test
// feeds only after it has seen the first lines.
func TestShellStreams(t *testing.T) {
	t.Parallel()
	b := setup(t)

	fifo := filepath.Join(t.TempDir(), "go")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	done := b.start(t, t.Context(), "shell", map[string]any{
		"cmd": `echo out1; echo err1 >&2; echo out2; read x < "$FIFO"; echo "got $x"; echo err2 >&2`,
		"env": map[string]any{"FIFO": fifo},
	})

	b.stdout.waitFor(t, "out2")
	b.stderr.waitFor(t, "err1")
	require.Equal(t, []string{"out1", "out2"}, b.stdout.Lines())
	require.Equal(t, []string{"err1"}, b.stderr.Lines())

	// O_RDWR never blocks on a FIFO, and holding it open until the task ends
	// keeps the written line in the pipe however late the shell opens it.
	f, err := os.OpenFile(fifo, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	_, err = f.WriteString("go\n")
	require.NoError(t, err)

	r := await(t, done)
	require.NoError(t, r.err)
	require.Equal(t, map[string]any{"exit_code": 0, "stdout": "out1\nout2\ngot go\n"}, r.out)
	require.Equal(t, []string{"out1", "out2", "got go"}, b.stdout.Lines())
	require.Equal(t, []string{"err1", "err2"}, b.stderr.Lines())
}

// TestShellStopKillsProcessGroup checks that cancelling or timing out a
// shell task ends its children and grandchildren, not just the shell.
func TestShellStopKillsProcessGroup(t *testing.T) {
	t.Parallel()

	// A background sleep, and a nested shell with its own background sleep:
	// three processes besides the top shell, whose pids go to $PIDS before
	// "started" is printed.
	const script = `sleep 60 & echo $! >> "$PIDS"
sh -c 'sleep 60 & echo $! >> "$PIDS"; echo $$ >> "$PIDS"; echo started; wait' &
wait`

	tests := []struct {
		name    string
		prefix  string // prepended to the script
		timeout time.Duration
		cause   error
		within  time.Duration // the task must return this soon after the stop
	}{
		{name: "cancel", cause: errTestCancel, within: 3 * time.Second},
		{name: "timeout", timeout: 1500 * time.Millisecond, cause: engine.ErrTaskTimeout, within: 3 * time.Second},
		// Processes that ignore SIGTERM are killed once the wait delay is over.
		{name: "SIGTERM ignored", prefix: "trap '' TERM\n", cause: errTestCancel, within: 8 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			pidFile := filepath.Join(t.TempDir(), "pids")

			ctx, cancel := context.WithCancelCause(t.Context())
			defer cancel(nil)
			if tt.timeout > 0 {
				var stop context.CancelFunc
				ctx, stop = context.WithTimeoutCause(ctx, tt.timeout, tt.cause)
				defer stop()
			}
			done := b.start(t, ctx, "shell", map[string]any{
				"cmd": tt.prefix + script,
				"env": map[string]any{"PIDS": pidFile},
			})
			b.stdout.waitFor(t, "started")
			pids := readPIDs(t, pidFile)
			require.Len(t, pids, 3)
			for _, pid := range pids {
				require.True(t, alive(pid), "pid %d should be running", pid)
			}

			if tt.timeout == 0 {
				cancel(tt.cause)
			}
			<-ctx.Done()
			stopped := time.Now()
			r := await(t, done)
			require.Less(t, time.Since(stopped), tt.within)
			require.Nil(t, r.out)
			require.ErrorIs(t, r.err, tt.cause)

			for _, pid := range pids {
				requireGone(t, pid)
			}
		})
	}
}

func readPIDs(t *testing.T, path string) []int {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		pid, err := strconv.Atoi(f)
		require.NoError(t, err)
		pids = append(pids, pid)
	}
	return pids
}

// alive reports whether pid is a running process. A zombie counts as dead:
// orphans are re-parented to a pid 1 that may never reap them.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// Fields after "(comm)": the first is the state.
	i := strings.LastIndexByte(string(stat), ')')
	fields := strings.Fields(string(stat[i+1:]))
	return len(fields) == 0 || (fields[0] != "Z" && fields[0] != "X")
}

// requireGone polls until pid has exited.
func requireGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still running %s after the task stopped", pid, waitTimeout)
		}
		<-tick.C
	}
}

// TestShellBackgroundHoldsOutput checks that a background process still
// holding stdout after the shell exits does not hang the task: output is read
// for the wait delay, then the task succeeds with a warning.
func TestShellBackgroundHoldsOutput(t *testing.T) {
	t.Parallel()
	b := setup(t)
	out, err := b.run(t, t.Context(), "shell", map[string]any{"cmd": "sleep 6 & echo done"})
	require.NoError(t, err)
	require.Equal(t, map[string]any{"exit_code": 0, "stdout": "done\n"}, out)
	recs := b.logs.Records()
	require.Len(t, recs, 1)
	require.Equal(t, slog.LevelWarn, recs[0].Level)
}
