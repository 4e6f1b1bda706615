package builtin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/internal/procgroup"
)

// shellWaitDelay is how long a shell task's process group gets after SIGTERM
// (and how long stray holders of its stdout/stderr are waited for after it
// exits) before it is killed and its pipes closed.
const shellWaitDelay = 5 * time.Second

type shellInputs struct {
	Cmd string            `json:"cmd"`
	Env map[string]string `json:"env"`
	Dir string            `json:"dir"`
}

func shellDef() engine.TaskDef {
	return engine.TaskDef{
		Name:     "shell",
		Summary:  "Run a command with /bin/sh -c, streaming its stdout and stderr into the run's logs.",
		Tags:     []string{"shell", "process", "command"},
		Category: categorySystem,
		Inputs: []engine.Param{
			{Name: "cmd", Type: "string", Required: true, Description: "Command line, run with /bin/sh -c."},
			{Name: "env", Type: "object", Items: "string", Description: "Environment variables (string values) added to pyoco's environment."},
			{Name: "dir", Type: "string", Description: "Working directory; defaults to pyoco's."},
		},
		Outputs: []engine.Param{
			{Name: "exit_code", Type: "integer", Description: "Exit status of the command."},
			{Name: "stdout", Type: "string", Description: "Standard output, capped at 64 KiB (a cut output ends with \"[output truncated]\")."},
		},
		StrictInputs: true,
		Run:          engine.Typed("shell", runShell),
	}
}

// runShell runs in.Cmd in its own process group. Cancelling ctx sends
// SIGTERM to the whole group; whatever is left after shellWaitDelay is
// killed, so children and grandchildren never outlive the attempt.
func runShell(ctx context.Context, tc *engine.TaskContext, in shellInputs) (any, error) {
	if in.Cmd == "" {
		return nil, required("shell", "cmd")
	}
	for k := range in.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return nil, &engine.InputError{Task: "shell", Input: "env", Msg: fmt.Sprintf("bad variable name %q", k)}
		}
	}
	stdout := &cappedBuffer{}
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", in.Cmd)
	cmd.Dir = in.Dir
	cmd.Env = shellEnv(in.Env, tc)
	cmd.Stdout = io.MultiWriter(orDiscard(tc.Stdout), stdout)
	tail := &tailBuffer{}
	cmd.Stderr = io.MultiWriter(orDiscard(tc.Stderr), tail)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = shellWaitDelay

	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start shell: %w", err)
	}
	// Recorded for a second Ctrl+C, which kills every task's group at once.
	defer procgroup.Add(cmd.Process.Pid)()
	err := cmd.Wait()
	if ctx.Err() != nil {
		// The group leader is reaped; members that ignored SIGTERM may remain.
		// The group id cannot be reused while any member lives.
		_ = killGroup(cmd.Process.Pid, syscall.SIGKILL)
		return nil, fmt.Errorf("shell interrupted: %w", context.Cause(ctx))
	}
	if cmd.ProcessState == nil { // the wait itself failed
		return nil, fmt.Errorf("shell: %w", err)
	}
	code := cmd.ProcessState.ExitCode()
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		if code < 0 {
			return nil, fmt.Errorf("shell: %s", exitErr.ProcessState)
		}
		return nil, exitError(code, tail.lines())
	case errors.Is(err, exec.ErrWaitDelay):
		// The shell exited 0 but something it started in the background still
		// held stdout or stderr; what it wrote until then is kept.
		if tc.Logger != nil {
			tc.Logger.WarnContext(ctx, "shell: background process kept output open; stopped reading it", "wait_delay", shellWaitDelay.String())
		}
	case err != nil:
		return nil, fmt.Errorf("shell: %w", err)
	}
	return map[string]any{"exit_code": code, "stdout": stdout.String()}, nil
}

// Stderr kept for a failing shell task's error: its last stderrTailLines
// lines, at most stderrTailBytes.
const (
	stderrTailLines = 10
	stderrTailBytes = 2048
)

// exitError is a non-zero exit: "exit status N", then ": " and the last
// stderr line, then (when there are more) the tail of stderr on the lines
// below, so that a summary's first line says why and the whole error shows
// what led there.
func exitError(code int, tail []string) error {
	msg := fmt.Sprintf("exit status %d", code)
	if len(tail) == 0 {
		return errors.New(msg)
	}
	msg += ": " + tail[len(tail)-1]
	if len(tail) > 1 {
		msg += "\nstderr (last " + strconv.Itoa(len(tail)) + " lines):\n" + strings.Join(tail, "\n")
	}
	return errors.New(msg)
}

// tailBuffer keeps the last stderrTailBytes written to it. Not safe for
// concurrent use (exec copies one stream from one goroutine).
type tailBuffer struct{ buf []byte }

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - 2*stderrTailBytes; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

// lines returns the non-blank last lines of what was written, valid UTF-8,
// at most stderrTailLines and stderrTailBytes in all.
func (b *tailBuffer) lines() []string {
	text := strings.ToValidUTF8(string(b.buf), "\uFFFD")
	var out []string
	size := 0
	all := strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n")
	for i := len(all) - 1; i >= 0 && len(out) < stderrTailLines; i-- {
		l := strings.TrimRight(all[i], " \t\r")
		if l == "" {
			continue
		}
		if size+len(l) > stderrTailBytes {
			if len(out) > 0 {
				break
			}
			l = "…" + l[len(l)-stderrTailBytes:]
			l = strings.ToValidUTF8(l, "")
		}
		size += len(l)
		out = append(out, l)
	}
	slices.Reverse(out)
	return out
}

// shellEnv returns pyoco's environment, then PYOCO_RUN_ID, PYOCO_TASK and
// PYOCO_ATTEMPT, then extra (in sorted order, so that duplicates resolve
// the same way every time), then TRACEPARENT if set.
func shellEnv(extra map[string]string, tc *engine.TaskContext) []string {
	traceParent := tc.TraceParent
	env := append(os.Environ(),
		"PYOCO_RUN_ID="+tc.RunID, "PYOCO_TASK="+tc.Task, "PYOCO_ATTEMPT="+strconv.Itoa(tc.Attempt))
	keys := make([]string, 0, len(extra))
	for k := range extra {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		env = append(env, k+"="+extra[k])
	}
	if traceParent != "" {
		env = append(env, "TRACEPARENT="+traceParent)
	}
	return env
}

// killGroup sends sig to the process group led by pid. A group that is
// already gone is not an error.
func killGroup(pid int, sig syscall.Signal) error {
	err := syscall.Kill(-pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}
