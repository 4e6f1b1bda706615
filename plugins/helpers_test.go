package plugins_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/builtin"
	"github.com/pyoco/pyoco/plugins"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitTimeout bounds every wait for something that should happen promptly.
const waitTimeout = 10 * time.Second

// writeScript writes an executable /bin/sh script named name into dir.
func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755))
	return path
}

// describeScript is a plug-in script whose describe prints doc and whose
// run is body.
func describeScript(doc, run string) string {
	return "case \"$1\" in\ndescribe)\ncat <<'JSON'\n" + doc + "\nJSON\n;;\nrun)\n" + run + "\n;;\nesac\n"
}

// testConfig loads only exec plug-ins from dirs, with no disk cache and
// short time-outs.
func testConfig(dirs ...string) *plugins.Config {
	return &plugins.Config{
		Path:            dirs,
		GoPlugins:       []engine.Plugin{},
		CacheDir:        plugins.CacheOff,
		DescribeTimeout: 5 * time.Second,
		WaitDelay:       300 * time.Millisecond,
	}
}

// newRegistry returns a registry with the built-in tasks.
func newRegistry(t *testing.T) *engine.Registry {
	t.Helper()
	reg := engine.NewRegistry()
	require.NoError(t, builtin.Register(reg))
	return reg
}

// load runs plugins.Load and fails the test on an error.
func load(t *testing.T, reg *engine.Registry, cfg *plugins.Config) *plugins.Report {
	t.Helper()
	rep, err := plugins.Load(context.Background(), reg, cfg)
	require.NoError(t, err)
	return rep
}

// find returns the report of the plug-in at index i with the given name.
func find(t *testing.T, rep *plugins.Report, name string) []plugins.PluginReport {
	t.Helper()
	var out []plugins.PluginReport
	for _, p := range rep.Plugins {
		if p.Name == name {
			out = append(out, p)
		}
	}
	require.NotEmpty(t, out, "no report for plug-in %s in %+v", name, rep.Plugins)
	return out
}

// lineCollector is an io.Writer that keeps the lines written to it, as the
// engine's stderr writer does. Safe for concurrent use.
type lineCollector struct {
	mu      sync.Mutex
	partial []byte
	lines   []string
	changed chan struct{}
}

func newLineCollector() *lineCollector { return &lineCollector{changed: make(chan struct{})} }

func (c *lineCollector) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.partial = append(c.partial, p...)
	for {
		i := bytes.IndexByte(c.partial, '\n')
		if i < 0 {
			break
		}
		c.lines = append(c.lines, string(c.partial[:i]))
		c.partial = c.partial[i+1:]
		close(c.changed)
		c.changed = make(chan struct{})
	}
	return len(p), nil
}

// waitLine waits until a line containing s has been written.
func (c *lineCollector) waitLine(t *testing.T, s string) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		c.mu.Lock()
		for _, l := range c.lines {
			if strings.Contains(l, s) {
				c.mu.Unlock()
				return
			}
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("no line containing %q within %s", s, waitTimeout)
		}
	}
}

func (c *lineCollector) all() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.lines...)
}

// taskContext is the TaskContext the engine would pass, with stderr
// collected.
func taskContext(stderr *lineCollector) *engine.TaskContext {
	return &engine.TaskContext{
		RunID: "run-1", FlowName: "f", Task: "t", Use: "x/t", Attempt: 2,
		Params:      map[string]any{"p": "v"},
		Stderr:      stderr,
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	}
}

// processGone reports whether pid has exited (no such process, or a zombie
// waiting for a parent that is not us to reap it).
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
		return true
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return os.IsNotExist(err)
	}
	// The state follows the parenthesised command name.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}

// requireGone waits until every pid has exited.
func requireGone(t *testing.T, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for _, pid := range pids {
		for !processGone(pid) {
			if time.Now().After(deadline) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				t.Fatalf("process %d outlived the cancelled plug-in", pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
