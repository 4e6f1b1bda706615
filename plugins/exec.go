package plugins

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/internal/procgroup"
)

// ExecPrefix starts the file name of every exec plug-in: "pyoco-plugin-<name>".
const ExecPrefix = "pyoco-plugin-"

// Protocol is the exec plug-in protocol version this package speaks.
const Protocol = 1

// describeWaitDelay is how long a describe that timed out, or whose
// children hold its pipes, is waited for after SIGKILL.
const describeWaitDelay = time.Second

var taskNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// candidate is an executable found in the plug-in path.
type candidate struct {
	name, path string
}

// discover lists the files named pyoco-plugin-<name> in dirs, in order:
// directories as given, files by name within one. Missing or unreadable
// directories are skipped.
func discover(dirs []string) []candidate {
	var out []candidate
	seen := make(map[string]bool)
	for _, dir := range dirs {
		abs, err := filepath.Abs(dir)
		if err != nil || seen[abs] {
			continue
		}
		seen[abs] = true
		entries, err := os.ReadDir(abs)
		if err != nil {
			continue
		}
		var names []string
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ExecPrefix) && !e.IsDir() {
				names = append(names, e.Name())
			}
		}
		sort.Strings(names)
		for _, n := range names {
			name := strings.TrimPrefix(n, ExecPrefix)
			if runtime.GOOS == "windows" {
				name = strings.TrimSuffix(name, ".exe")
			}
			out = append(out, candidate{name: name, path: filepath.Join(abs, n)})
		}
	}
	return out
}

// describeDoc is the output of `pyoco-plugin-x describe`, protocol 1.
type describeDoc struct {
	Protocol int            `json:"protocol"`
	Name     string         `json:"name"`
	Version  string         `json:"version"`
	Tasks    []describeTask `json:"tasks"`
}

type describeTask struct {
	Name     string         `json:"name"`
	Summary  string         `json:"summary"`
	Tags     []string       `json:"tags"`
	Category string         `json:"category"`
	Inputs   []engine.Param `json:"inputs"`
	Outputs  []engine.Param `json:"outputs"`
}

func (l *loader) loadExec(ctx context.Context, cand candidate) PluginReport {
	rep := PluginReport{Name: cand.name, Origin: OriginExec, Path: cand.path}
	if !l.claim(&rep) {
		return rep
	}
	fi, err := os.Stat(cand.path)
	switch {
	case err != nil:
		rep.Errors = append(rep.Errors, err.Error())
		return rep
	case !fi.Mode().IsRegular():
		rep.Errors = append(rep.Errors, "not a regular file")
		return rep
	case runtime.GOOS != "windows" && fi.Mode().Perm()&0o111 == 0:
		rep.Errors = append(rep.Errors, "not executable (chmod +x it)")
		return rep
	}
	doc, err := l.describeCached(ctx, cand.path, fi)
	if err != nil {
		rep.Errors = append(rep.Errors, err.Error())
		return rep
	}
	rep.Version = doc.Version
	if err := doc.validate(); err != nil {
		rep.Errors = append(rep.Errors, err.Error())
		return rep
	}
	if doc.Name != cand.name {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("describe names the plug-in %q; its tasks are addressed by the file name, as %s/<task>", doc.Name, cand.name))
	}
	if len(doc.Tasks) == 0 {
		rep.Warnings = append(rep.Warnings, "describe lists no tasks")
	}
	p := &execPlugin{name: cand.name, path: cand.path, waitDelay: l.cfg.WaitDelay, maxOut: l.cfg.OutputMaxBytes}
	defs := make([]engine.TaskDef, 0, len(doc.Tasks))
	for _, t := range doc.Tasks {
		defs = append(defs, engine.TaskDef{
			Name: cand.name + "/" + t.Name, Plugin: cand.name,
			Summary: t.Summary, Tags: t.Tags, Category: t.Category, Inputs: t.Inputs, Outputs: t.Outputs,
			Run: p.taskFunc(t.Name),
		})
	}
	sort.Slice(defs, func(i, j int) bool { return defs[i].Name < defs[j].Name })
	l.add(&rep, defs)
	return rep
}

// validate checks what protocol 1 requires of a describe document.
func (d *describeDoc) validate() error {
	if d.Protocol != Protocol {
		if d.Protocol == 0 {
			return errors.New(`describe: "protocol" is missing (want 1)`)
		}
		return fmt.Errorf("describe: protocol %d is not supported (want %d)", d.Protocol, Protocol)
	}
	seen := make(map[string]bool, len(d.Tasks))
	for i, t := range d.Tasks {
		if !taskNameRE.MatchString(t.Name) {
			return fmt.Errorf("describe: tasks[%d]: name %q must match %s", i, t.Name, taskNameRE)
		}
		if seen[t.Name] {
			return fmt.Errorf("describe: task %q is listed twice", t.Name)
		}
		seen[t.Name] = true
		for _, ps := range [][]engine.Param{t.Inputs, t.Outputs} {
			for j, p := range ps {
				if p.Name == "" {
					return fmt.Errorf("describe: task %q: parameter %d has no name", t.Name, j)
				}
			}
		}
	}
	return nil
}

// cacheKey identifies one version of a plug-in binary.
type cacheKey struct {
	path  string
	mtime int64
	size  int64
}

// memCache holds the describe documents of this process, by cacheKey.
var memCache sync.Map

// diskEntry is the on-disk form of a cached describe.
type diskEntry struct {
	Path     string          `json:"path"`
	MTime    int64           `json:"mtime_ns"`
	Size     int64           `json:"size"`
	Describe json.RawMessage `json:"describe"`
}

// describeCached returns the describe document of path, from the memory
// cache, the disk cache, or by running it. Only documents that parsed are
// cached; a failing describe runs again next time.
func (l *loader) describeCached(ctx context.Context, path string, fi os.FileInfo) (*describeDoc, error) {
	key := cacheKey{path: path, mtime: fi.ModTime().UnixNano(), size: fi.Size()}
	if v, ok := memCache.Load(key); ok {
		return v.(*describeDoc), nil
	}
	file := ""
	if l.cfg.CacheDir != CacheOff {
		sum := sha256.Sum256([]byte(key.path + "\x00" + strconv.FormatInt(key.mtime, 10) + "\x00" + strconv.FormatInt(key.size, 10)))
		file = filepath.Join(l.cfg.CacheDir, "describe-"+hex.EncodeToString(sum[:16])+".json")
		if raw, err := os.ReadFile(file); err == nil {
			var e diskEntry
			if json.Unmarshal(raw, &e) == nil && e.Path == key.path && e.MTime == key.mtime && e.Size == key.size {
				if doc, err := parseDescribe(e.Describe); err == nil {
					memCache.Store(key, doc)
					return doc, nil
				}
			}
		}
	}
	raw, err := l.describe(ctx, path)
	if err != nil {
		return nil, err
	}
	doc, err := parseDescribe(raw)
	if err != nil {
		return nil, err
	}
	memCache.Store(key, doc)
	if file != "" {
		// The disk cache is an optimisation: failing to write it is not a problem to report.
		if b, err := json.Marshal(diskEntry{Path: key.path, MTime: key.mtime, Size: key.size, Describe: raw}); err == nil {
			if os.MkdirAll(l.cfg.CacheDir, 0o755) == nil {
				tmp := file + ".tmp" + strconv.Itoa(os.Getpid())
				if os.WriteFile(tmp, b, 0o644) == nil {
					_ = os.Rename(tmp, file)
				}
			}
		}
	}
	return doc, nil
}

func parseDescribe(raw []byte) (*describeDoc, error) {
	var doc describeDoc
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("describe: invalid JSON on stdout: %v", err)
	}
	if dec.More() {
		return nil, errors.New("describe: invalid JSON on stdout: more than one value")
	}
	return &doc, nil
}

// errDescribeTimeout is the cause of a describe that took too long.
var errDescribeTimeout = errors.New("describe timed out")

// describe runs `path describe` and returns its stdout.
func (l *loader) describe(ctx context.Context, path string) ([]byte, error) {
	tctx, cancel := context.WithTimeoutCause(ctx, l.cfg.DescribeTimeout, errDescribeTimeout)
	defer cancel()
	dctx, stop := context.WithCancelCause(tctx)
	defer stop(nil)
	stdout := &cappedBuffer{max: l.cfg.OutputMaxBytes, onOver: func() { stop(errOutputTooLarge) }}
	stderr := &tailBuffer{}
	cmd, err := start(dctx, func() *exec.Cmd {
		cmd := exec.CommandContext(dctx, path, "describe")
		cmd.Env = pluginEnv(nil, "")
		cmd.Stdout = stdout
		cmd.Stderr = stderr
		setGroup(cmd)
		cmd.Cancel = func() error { return killGroup(cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = describeWaitDelay
		return cmd
	})
	if err == nil {
		err = cmd.Wait()
	}
	if cmd.Process != nil {
		_ = killGroup(cmd.Process.Pid, syscall.SIGKILL) // children left behind
	}
	if errors.Is(err, exec.ErrWaitDelay) && dctx.Err() == nil {
		err = nil // describe exited 0; a child held its output open
	}
	switch {
	case ctx.Err() != nil:
		return nil, fmt.Errorf("describe: %w", context.Cause(ctx))
	case stdout.over:
		return nil, fmt.Errorf("describe: printed more than %d bytes on stdout", l.cfg.OutputMaxBytes)
	case errors.Is(context.Cause(dctx), errDescribeTimeout):
		return nil, fmt.Errorf("describe: timed out after %s", l.cfg.DescribeTimeout)
	case err != nil:
		return nil, fmt.Errorf("describe: %s", exitReason(err, stderr.last()))
	}
	return stdout.buf.Bytes(), nil
}

// start starts the command newCmd returns. A binary that is still open for
// writing (ETXTBSY: being installed, or its file descriptor inherited by a
// process another goroutine is forking) is retried a few times.
func start(ctx context.Context, newCmd func() *exec.Cmd) (*exec.Cmd, error) {
	for attempt := 1; ; attempt++ {
		cmd := newCmd()
		err := cmd.Start()
		if err == nil || !errors.Is(err, syscall.ETXTBSY) || attempt == 5 {
			return cmd, err
		}
		t := time.NewTimer(time.Duration(attempt) * 20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return cmd, err
		case <-t.C:
		}
	}
}

// exitReason describes a failed command: its exit status and the last
// line it wrote on stderr.
func exitReason(err error, lastLine string) string {
	msg := err.Error()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		msg = ee.ProcessState.String() // "exit status 3", "signal: killed"
	}
	if lastLine != "" {
		msg += ": " + lastLine
	}
	return msg
}

// execPlugin runs the tasks of one exec plug-in.
type execPlugin struct {
	name, path string
	waitDelay  time.Duration
	maxOut     int
}

// runRequest is what `run <task>` reads on stdin, protocol 1.
type runRequest struct {
	Protocol int            `json:"protocol"`
	RunID    string         `json:"run_id"`
	Task     string         `json:"task"`
	Attempt  int            `json:"attempt"`
	Inputs   map[string]any `json:"inputs"`
	Params   map[string]any `json:"params"`
}

// errOutputTooLarge stops a plug-in that printed more than the cap.
var errOutputTooLarge = errors.New("output too large")

// taskFunc returns the engine.TaskFunc of task: one `run <task>` per attempt.
func (p *execPlugin) taskFunc(task string) engine.TaskFunc {
	return func(ctx context.Context, tc *engine.TaskContext, inputs map[string]any) (any, error) {
		if inputs == nil {
			inputs = map[string]any{}
		}
		params := tc.Params
		if params == nil {
			params = map[string]any{}
		}
		req, err := json.Marshal(runRequest{Protocol: Protocol, RunID: tc.RunID, Task: task, Attempt: tc.Attempt, Inputs: inputs, Params: params})
		if err != nil {
			return nil, fmt.Errorf("plug-in %s: encode request: %w", p.name, err)
		}
		rctx, stop := context.WithCancelCause(ctx)
		defer stop(nil)
		stdout := &cappedBuffer{max: p.maxOut, onOver: func() { stop(errOutputTooLarge) }}
		stderr := &tailBuffer{}
		cmd, err := start(rctx, func() *exec.Cmd {
			cmd := exec.CommandContext(rctx, p.path, "run", task)
			cmd.Env = pluginEnv(tc, tc.TraceParent)
			cmd.Stdin = bytes.NewReader(req)
			cmd.Stdout = stdout
			cmd.Stderr = io.MultiWriter(orDiscard(tc.Stderr), stderr)
			setGroup(cmd)
			cmd.Cancel = func() error { return killGroup(cmd.Process.Pid, syscall.SIGTERM) }
			cmd.WaitDelay = p.waitDelay
			return cmd
		})
		if err == nil {
			// Recorded for a second Ctrl+C, which kills every task's group.
			defer procgroup.Add(cmd.Process.Pid)()
			err = cmd.Wait()
		}
		if errors.Is(err, exec.ErrWaitDelay) {
			// The plug-in exited but something it started still held
			// stdout or stderr: stop that and keep what the plug-in said.
			_ = killGroup(cmd.Process.Pid, syscall.SIGKILL)
			if tc.Logger != nil {
				tc.Logger.WarnContext(ctx, "plug-in left a process holding its output; killed it", "plugin", p.name, "wait_delay", p.waitDelay.String())
			}
			err = nil
		}
		if cmd.Process != nil && rctx.Err() != nil {
			// The leader is reaped; members that ignored SIGTERM may remain,
			// and the group id cannot be reused while any member lives.
			_ = killGroup(cmd.Process.Pid, syscall.SIGKILL)
		}
		switch {
		case ctx.Err() != nil:
			return nil, fmt.Errorf("plug-in %s: task %s interrupted: %w", p.name, task, context.Cause(ctx))
		case stdout.over:
			return nil, fmt.Errorf("plug-in %s: task %s printed more than %d bytes on stdout (the output cap); output rejected", p.name, task, p.maxOut)
		}
		res, perr := parseResult(stdout.buf.Bytes())
		if err != nil {
			reason := exitReason(err, stderr.last())
			if perr == nil && res.isError {
				reason = exitReason(err, res.errMsg)
			}
			return nil, fmt.Errorf("plug-in %s: task %s: %s", p.name, task, reason)
		}
		if perr != nil {
			return nil, fmt.Errorf("plug-in %s: task %s: %w", p.name, task, perr)
		}
		if res.isError {
			return nil, errors.New(res.errMsg)
		}
		return res.output, nil
	}
}

type runResult struct {
	output  any
	isError bool
	errMsg  string
}

// parseResult reads `{"output": ...}` or `{"error": "..."}`.
func parseResult(raw []byte) (runResult, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return runResult{}, errors.New(`printed nothing on stdout (want {"output": ...} or {"error": "..."})`)
	}
	var m map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&m); err != nil {
		return runResult{}, fmt.Errorf("invalid JSON on stdout: %v", err)
	}
	if dec.More() {
		return runResult{}, errors.New("invalid JSON on stdout: more than one value")
	}
	if e, ok := m["error"]; ok && string(e) != "null" {
		var msg string
		if err := json.Unmarshal(e, &msg); err != nil || msg == "" {
			return runResult{}, errors.New(`"error" must be a non-empty string`)
		}
		return runResult{isError: true, errMsg: msg}, nil
	}
	o, ok := m["output"]
	if !ok {
		return runResult{}, errors.New(`stdout has neither "output" nor "error"`)
	}
	var out any
	if err := json.Unmarshal(o, &out); err != nil {
		return runResult{}, fmt.Errorf("invalid JSON on stdout: %v", err)
	}
	return runResult{output: out}, nil
}

// pluginEnv is pyoco's environment without TRACEPARENT, then the task's
// identity and the attempt's TRACEPARENT when tc is set.
func pluginEnv(tc *engine.TaskContext, traceParent string) []string {
	env := make([]string, 0, len(os.Environ())+5)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TRACEPARENT=") {
			env = append(env, kv)
		}
	}
	env = append(env, "PYOCO_PLUGIN_PROTOCOL="+strconv.Itoa(Protocol))
	if tc != nil {
		env = append(env, "PYOCO_RUN_ID="+tc.RunID, "PYOCO_TASK="+tc.Task, "PYOCO_ATTEMPT="+strconv.Itoa(tc.Attempt))
	}
	if traceParent != "" {
		env = append(env, "TRACEPARENT="+traceParent)
	}
	return env
}

// setGroup starts cmd in its own process group, so that signals reach its
// children too.
func setGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
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

// cappedBuffer keeps up to max bytes; past that it sets over, calls onOver
// once and drops the rest. Writes never fail, so the process is stopped by
// onOver rather than by a broken pipe. Used by one goroutine of os/exec at
// a time; read after Wait.
type cappedBuffer struct {
	max    int
	onOver func()
	buf    bytes.Buffer
	over   bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if b.over {
		return len(p), nil
	}
	if b.buf.Len()+len(p) > b.max {
		b.over = true
		if b.onOver != nil {
			b.onOver()
		}
		return len(p), nil
	}
	b.buf.Write(p)
	return len(p), nil
}

// tailBuffer keeps the last few KiB written, to quote the last stderr
// line in errors.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const tailMax = 4 << 10

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > tailMax {
		b.buf = append([]byte(nil), b.buf[len(b.buf)-tailMax:]...)
	}
	return len(p), nil
}

// last returns the last non-empty line, at most 200 bytes of it.
func (b *tailBuffer) last() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(string(b.buf)), "\n")
	s := strings.TrimSpace(lines[len(lines)-1])
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
