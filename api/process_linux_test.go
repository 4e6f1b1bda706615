package api_test

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/api"
	"github.com/pyoco/pyoco/internal/redistest"
)

// TestProcessRedis runs the API suite over HTTP against real `pyoco server`
// processes on a real Redis, with the runs executed by a separate `pyoco
// worker` process: the same table-driven tests as TestMemstore and
// TestRedisstore, across process boundaries.
func TestProcessRedis(t *testing.T) {
	t.Parallel()
	runSuite(t, processServer)
}

// The pyoco binary, built once per test binary on first use.
var pyocoBuild struct {
	once sync.Once
	bin  string
	err  error
}

func pyocoBinary(t *testing.T) string {
	t.Helper()
	pyocoBuild.once.Do(func() {
		dir, err := os.MkdirTemp("", "pyoco-api-test-")
		if err != nil {
			pyocoBuild.err = err
			return
		}
		addCleanup(func() { _ = os.RemoveAll(dir) })
		bin := filepath.Join(dir, "pyoco")
		out, err := exec.Command("go", "build", "-o", bin, "github.com/pyoco/pyoco/cmd/pyoco").CombinedOutput()
		if err != nil {
			pyocoBuild.err = fmt.Errorf("go build cmd/pyoco: %v\n%s", err, out)
			return
		}
		pyocoBuild.bin = bin
	})
	require.NoError(t, pyocoBuild.err)
	return pyocoBuild.bin
}

// redisURL is the URL of the Redis behind c (the test's private server).
func redisURL(t *testing.T, c redis.UniversalClient) string {
	t.Helper()
	if u := os.Getenv(redistest.EnvURL); u != "" {
		return u
	}
	cl, ok := c.(*redis.Client)
	require.True(t, ok, "redistest.Client: want a *redis.Client, got %T", c)
	opt := cl.Options()
	return fmt.Sprintf("redis://%s/%d", opt.Addr, opt.DB)
}

// processServer starts `pyoco server --redis` (no in-process workers) on a
// free loopback port and one `pyoco worker` process, both on a fresh Redis
// namespace with the test flows, and stops both (SIGTERM, then SIGKILL; each
// is reaped) when the test ends. Of edit, only Token is honoured (as
// PYOCO_API_TOKEN); other changes fail the test.
func processServer(t *testing.T, edit ...func(*api.Config)) *bundle {
	t.Helper()
	var cfg api.Config
	for _, e := range edit {
		e(&cfg)
	}
	require.Equal(t, api.Config{Token: cfg.Token}, cfg, "a process server honours Config.Token only")

	bin := pyocoBinary(t)
	c := redistest.Client(t)
	ns := redistest.Namespace(t, c) // its key cleanup runs after the processes stop
	url := redisURL(t, c)
	dir := t.TempDir()
	flowDir := writeFlows(t, dir)
	env := []string{"OTEL_TRACES_EXPORTER=none", "PYOCO_PLUGIN_PATH=/nowhere"}
	if cfg.Token != "" {
		env = append(env, "PYOCO_API_TOKEN="+cfg.Token)
	}

	srv := startProc(t, bin, env, "server", "--redis", url, "--namespace", ns, "--flows", flowDir,
		"--addr", "127.0.0.1:0", "--workers", "0", "--shutdown-timeout", "5s")
	addr := srv.waitFor(t, regexp.MustCompile(`msg="serving the API" url=(http://\S+)`))
	w := startProc(t, bin, env, "worker", "--redis", url, "--namespace", ns, "--metrics-addr", "off",
		"--concurrency", "4", "--shutdown-timeout", "5s")
	host, err := os.Hostname()
	require.NoError(t, err)

	client := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)
	return &bundle{t: t, url: addr, dir: dir, client: client, token: cfg.Token,
		workerID: fmt.Sprintf("%s-%d", host, w.cmd.Process.Pid), metrics: true, pluginPath: []any{"/nowhere"}, openUse: true}
}

// proc is one pyoco process whose stderr is kept for the failure report.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when stderr is drained and the process reaped

	mu     sync.Mutex
	lines  []string
	notify chan struct{} // signalled on each new line
}

func startProc(t *testing.T, bin string, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	for _, kv := range os.Environ() { // nothing of the caller's pyoco or OTel settings
		if !strings.HasPrefix(kv, "PYOCO_") && !strings.HasPrefix(kv, "OTEL_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	p := &proc{name: "pyoco " + args[0], cmd: cmd, done: make(chan struct{}), notify: make(chan struct{}, 1)}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
			select {
			case p.notify <- struct{}{}:
			default:
			}
		}
		_ = cmd.Wait()
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s (pid %d) stderr:\n%s", p.name, cmd.Process.Pid, p.output())
		}
	})
	return p
}

// stop sends SIGTERM, then SIGKILL after 10s, and waits until reaped.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// waitFor waits for a stderr line matching re and returns its first group.
func (p *proc) waitFor(t *testing.T, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for seen, exited := 0, false; ; {
		p.mu.Lock()
		lines := p.lines[seen:]
		seen = len(p.lines)
		p.mu.Unlock()
		for _, l := range lines {
			if m := re.FindStringSubmatch(l); m != nil {
				return m[1]
			}
		}
		if exited {
			t.Fatalf("%s exited before logging %s:\n%s", p.name, re, p.output())
		}
		select {
		case <-p.notify:
		case <-p.done:
			exited = true
		case <-deadline:
			t.Fatalf("%s: no line matching %s within 30s:\n%s", p.name, re, p.output())
		}
	}
}
