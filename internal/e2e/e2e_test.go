//go:build linux

package e2e_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/builtin"
	"github.com/pyoco/pyoco/internal/redistest"
	"github.com/pyoco/pyoco/redisstore"
)

// pyocoBin is the pyoco binary built once by TestMain.
var pyocoBin string

func TestMain(m *testing.M) {
	redis.SetLogger(quietLogger{}) // outage tests make go-redis log every failed dial
	dir, err := os.MkdirTemp("", "pyoco-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pyocoBin = filepath.Join(dir, "pyoco")
	out, err := exec.Command("go", "build", "-o", pyocoBin, "github.com/pyoco/pyoco/cmd/pyoco").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build pyoco: %v\n%s", err, out)
		os.Exit(1)
	}
	goleak.VerifyTestMain(cleanupRunner{redistest.Runner(m), dir})
}

// cleanupRunner removes the build directory after the tests (and the Redis
// servers) are done, before goleak checks and exits.
type cleanupRunner struct {
	r   interface{ Run() int }
	dir string
}

func (c cleanupRunner) Run() int {
	defer os.RemoveAll(c.dir)
	return c.r.Run()
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// bundle is one test's Redis, namespace, store and engine (for submitting
// and cancelling from the test process), and its worker processes.
type bundle struct {
	t     *testing.T
	srv   *redistest.Server
	ns    string
	store *redisstore.Store
	eng   *engine.Engine
	reg   *engine.Registry
	dir   string

	mu    sync.Mutex
	procs []*proc
}

func setup(t *testing.T, redisArgs ...string) *bundle {
	t.Helper()
	srv := redistest.StartServer(t, redisArgs...)
	opt := srv.Options()
	opt.MaxRetries = 1
	client := redis.NewClient(opt)
	t.Cleanup(func() { _ = client.Close() })
	ns := "e2e"
	store, err := redisstore.New(client, &redisstore.Config{Namespace: ns})
	require.NoError(t, err)
	reg := engine.NewRegistry()
	require.NoError(t, builtin.Register(reg))
	eng, err := engine.New(store, reg, &engine.Config{WorkerID: "e2e-test"})
	require.NoError(t, err)
	b := &bundle{t: t, srv: srv, ns: ns, store: store, eng: eng, reg: reg, dir: t.TempDir()}
	t.Cleanup(b.killAll)
	return b
}

// proc is one `pyoco worker` process.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when reaped
}

// startWorker starts a worker process with the test's Redis and namespace.
func (b *bundle) startWorker(args ...string) *proc {
	b.t.Helper()
	b.mu.Lock()
	n := len(b.procs)
	b.mu.Unlock()
	logf, err := os.Create(filepath.Join(b.dir, fmt.Sprintf("worker-%d.log", n)))
	require.NoError(b.t, err)
	defer logf.Close()
	args = append([]string{"worker", "--redis", "redis://" + b.srv.Addr(), "--namespace", b.ns, "--metrics-addr", "off"}, args...)
	cmd := exec.Command(pyocoBin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none", "PYOCO_PLUGIN_PATH="+b.dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(b.t, cmd.Start())
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	b.mu.Lock()
	b.procs = append(b.procs, p)
	b.mu.Unlock()
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and reaps the process.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

func (b *bundle) killAll() {
	b.mu.Lock()
	procs := b.procs
	b.mu.Unlock()
	for _, p := range procs {
		p.kill()
	}
	if b.t.Failed() {
		logs, _ := filepath.Glob(filepath.Join(b.dir, "worker-*.log"))
		for _, l := range logs {
			data, _ := os.ReadFile(l)
			lines := strings.Split(strings.TrimSpace(string(data)), "\n")
			if len(lines) > 30 {
				lines = lines[len(lines)-30:]
			}
			b.t.Logf("%s (tail):\n%s", filepath.Base(l), strings.Join(lines, "\n"))
		}
	}
}

// flow loads a flow from source text.
func (b *bundle) flow(src string) *engine.Flow {
	b.t.Helper()
	f, err := engine.LoadFlow("flow.yaml", []byte(src), b.reg)
	require.NoError(b.t, err)
	return f
}

func (b *bundle) submit(f *engine.Flow) string {
	b.t.Helper()
	r, err := b.eng.Submit(b.t.Context(), &engine.SubmitParams{Flow: f})
	require.NoError(b.t, err)
	return r.ID
}

// get reads a run, retrying while Redis is unavailable.
func (b *bundle) get(id string) *engine.Run {
	b.t.Helper()
	for range 600 {
		r, err := b.store.RunGet(b.t.Context(), id)
		if err == nil {
			return r
		}
		require.ErrorIs(b.t, err, engine.ErrUnavailable)
		time.Sleep(50 * time.Millisecond)
	}
	b.t.Fatalf("run %s: Redis unavailable for 30s", id)
	return nil
}

// countStatus returns how many of ids have status st (unavailable Redis
// counts as none).
func (b *bundle) countStatus(ids []string, st engine.RunStatus) int {
	n := 0
	for _, id := range ids {
		if r, err := b.store.RunGet(b.t.Context(), id); err == nil && r.Status == st {
			n++
		}
	}
	return n
}

// waitAll waits until every run of ids is terminal, and returns them.
func (b *bundle) waitAll(ids []string, within time.Duration) map[string]*engine.Run {
	b.t.Helper()
	deadline := time.Now().Add(within)
	out := make(map[string]*engine.Run, len(ids))
	for time.Now().Before(deadline) {
		for _, id := range ids {
			if _, ok := out[id]; ok {
				continue
			}
			if r, err := b.store.RunGet(b.t.Context(), id); err == nil && r.Status.Terminal() {
				out[id] = r
			}
		}
		if len(out) == len(ids) {
			return out
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.t.Fatalf("%d of %d runs finished within %s", len(out), len(ids), within)
	return nil
}

// waitFor polls cond every 50ms until it holds or within passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// chainFlow is a flow whose shell tasks each append "<run> <task> <attempt>"
// to file before sleeping.
func chainFlow(file, sleep string) string {
	cmd := fmt.Sprintf(`echo "$PYOCO_RUN_ID $PYOCO_TASK $PYOCO_ATTEMPT" >> %s; sleep %s`, file, sleep)
	return fmt.Sprintf(`version: 1
flow:
  name: e2e_chain
  graph: |
    a >> (b & c) >> d
tasks:
  a: {use: shell, inputs: {cmd: '%[1]s'}}
  b: {use: shell, inputs: {cmd: '%[1]s'}}
  c: {use: shell, inputs: {cmd: '%[1]s'}}
  d: {use: shell, inputs: {cmd: '%[1]s'}}
`, cmd)
}

// readLines returns, per "<run> <task>", the attempt numbers that wrote a
// line to file.
func readLines(t *testing.T, file string) map[string][]string {
	t.Helper()
	f, err := os.Open(file)
	require.NoError(t, err)
	defer f.Close()
	out := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		require.Len(t, fs, 3, "line %q", sc.Text())
		k := fs[0] + " " + fs[1]
		out[k] = append(out[k], fs[2])
	}
	require.NoError(t, sc.Err())
	return out
}

// checkExecutions asserts that every task of every run SUCCEEDED exactly
// once, in its last recorded attempt, and that the side effects match the
// attempts: each attempt wrote at most one line, no attempt number twice, and
// none after the SUCCEEDED one. It returns the number of tasks that needed
// more than one attempt (interrupted by a killed worker).
func checkExecutions(t *testing.T, runs map[string]*engine.Run, lines map[string][]string) (retried int) {
	t.Helper()
	for id, r := range runs {
		require.Equal(t, engine.RunCompleted, r.Status, "run %s: %s", id, r.Error)
		for name, ts := range r.Tasks {
			k := id + " " + name
			require.Equal(t, engine.TaskSucceeded, ts.Status, k)
			n := len(ts.Attempts)
			require.GreaterOrEqual(t, n, 1, k)
			last := ts.Attempts[n-1]
			require.Equal(t, engine.TaskSucceeded, last.Status, "%s: the SUCCEEDED attempt is the last", k)
			for _, a := range ts.Attempts[:n-1] {
				require.NotEqual(t, engine.TaskSucceeded, a.Status, "%s: a SUCCEEDED task ran again", k)
			}
			got := lines[k]
			require.LessOrEqual(t, len(got), n, "%s: more executions (%v) than recorded attempts (%d)", k, got, n)
			seen := map[string]bool{}
			for _, a := range got {
				require.False(t, seen[a], "%s: attempt %s executed twice", k, a)
				seen[a] = true
			}
			require.True(t, seen[fmt.Sprint(last.Number)], "%s: the SUCCEEDED attempt %d left no line (%v)", k, last.Number, got)
			if n > 1 {
				retried++
			}
		}
	}
	return retried
}

// TestWorkersKilled runs 300 runs on 3 worker processes, killing one with
// SIGKILL twice while they run: every run completes, none is lost, and no
// SUCCEEDED task runs again.
func TestWorkersKilled(t *testing.T) {
	t.Parallel()
	b := setup(t)
	file := filepath.Join(b.dir, "executions.txt")
	f := b.flow(chainFlow(file, "0.15"))
	args := []string{"--lease", "2s", "--concurrency", "8"}
	victim := b.startWorker(args...)
	b.startWorker(args...)
	b.startWorker(args...)

	ids := make([]string, 300)
	for i := range ids {
		ids[i] = b.submit(f)
	}
	for _, at := range []int{60, 150} {
		waitFor(t, time.Minute, fmt.Sprintf("%d runs completed", at), func() bool {
			return b.countStatus(ids, engine.RunCompleted) >= at
		})
		victim.kill()
		t.Logf("killed a worker with SIGKILL after %d runs completed", at)
		victim = b.startWorker(args...)
	}
	runs := b.waitAll(ids, 2*time.Minute)
	retried := checkExecutions(t, runs, readLines(t, file))
	taken := 0
	for _, r := range runs {
		if r.Attempt > 1 {
			taken++
		}
	}
	t.Logf("300 runs COMPLETED; %d taken over from a killed worker, %d tasks re-run after an interruption", taken, retried)
	require.Positive(t, taken, "the kills interrupted some runs")

	d, err := b.store.QueueDepth(t.Context())
	require.NoError(t, err)
	require.Empty(t, d)
}

// TestRedisRestart stops Redis (appendonly on) for several leases in the
// middle of a load and starts it again: every run completes.
func TestRedisRestart(t *testing.T) {
	t.Parallel()
	b := setup(t, "--appendonly", "yes")
	file := filepath.Join(b.dir, "executions.txt")
	f := b.flow(chainFlow(file, "0.2"))
	args := []string{"--lease", "2s", "--concurrency", "8"}
	b.startWorker(args...)
	b.startWorker(args...)
	ids := make([]string, 150)
	for i := range ids {
		ids[i] = b.submit(f)
	}
	waitFor(t, time.Minute, "30 runs completed", func() bool { return b.countStatus(ids, engine.RunCompleted) >= 30 })
	b.srv.Stop(t)
	t.Log("redis stopped")
	time.Sleep(6 * time.Second)
	b.srv.Restart(t)
	t.Log("redis restarted")
	runs := b.waitAll(ids, 3*time.Minute)
	for id, r := range runs {
		require.Equal(t, engine.RunCompleted, r.Status, "run %s: %s", id, r.Error)
	}
	// Every SUCCEEDED task ran in its recorded attempt (side effects may
	// include attempts whose record was lost with the outage… none here:
	// appendonly keeps them).
	retried := checkExecutions(t, runs, readLines(t, file))
	t.Logf("150 runs COMPLETED across the outage; %d tasks re-run", retried)
	for _, p := range b.procs {
		require.False(t, p.exited(), "a worker died during the outage")
	}
}

// TestMaxAttempts: a task that kills its own worker (the shell's parent)
// makes every worker that takes the run die; after max-attempts takeovers
// the run ends FAILED saying so.
func TestMaxAttempts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	f := b.flow(`version: 1
flow: {name: e2e_suicide}
tasks:
  boom: {use: shell, inputs: {cmd: 'kill -9 $PPID; sleep 5'}}
`)
	id := b.submit(f)
	args := []string{"--lease", "1s", "--max-attempts", "3", "--concurrency", "2"}
	w := b.startWorker(args...)
	starts := 1
	deadline := time.Now().Add(time.Minute)
	for !b.get(id).Status.Terminal() {
		require.True(t, time.Now().Before(deadline), "run not finished after a minute")
		if w.exited() {
			w = b.startWorker(args...)
			starts++
		}
		time.Sleep(50 * time.Millisecond)
	}
	r := b.get(id)
	require.Equal(t, engine.RunFailed, r.Status)
	require.Equal(t, "run taken over 3 times (max_attempts 3): its workers kept stopping", r.Error)
	require.Equal(t, 3, r.Attempt, "three workers started it")
	t.Logf("worker processes started: %d", starts)
}

// TestCancelAcrossProcesses cancels from the test process: a running run on
// a worker process ends CANCELLED promptly; a PENDING run cancelled is never
// picked up.
func TestCancelAcrossProcesses(t *testing.T) {
	t.Parallel()
	b := setup(t)
	quick := b.flow(`version: 1
flow: {name: e2e_quick}
tasks:
  a: {use: shell, inputs: {cmd: 'true'}}
`)
	slow := b.flow(`version: 1
flow: {name: e2e_slow}
tasks:
  a: {use: shell, inputs: {cmd: 'sleep 60'}}
`)
	pending := b.submit(quick)
	st, err := b.eng.Cancel(t.Context(), pending)
	require.NoError(t, err)
	require.Equal(t, engine.RunCancelled, st)

	b.startWorker("--lease", "2s")
	id := b.submit(slow)
	waitFor(t, 30*time.Second, "the slow task running", func() bool {
		r := b.get(id)
		return r.Status == engine.RunRunning && r.Tasks["a"].Status == engine.TaskRunning
	})
	st, err = b.eng.Cancel(t.Context(), id)
	require.NoError(t, err)
	require.Equal(t, engine.RunCancelling, st)
	start := time.Now()
	waitFor(t, 30*time.Second, "the run CANCELLED", func() bool { return b.get(id).Status == engine.RunCancelled })
	t.Logf("cancel reached the worker process and ended the run in %s", time.Since(start).Round(time.Millisecond))
	require.Equal(t, engine.TaskCancelled, b.get(id).Tasks["a"].Status)

	// A later run still runs; the cancelled PENDING one never did.
	done := b.submit(quick)
	runs := b.waitAll([]string{done}, 30*time.Second)
	require.Equal(t, engine.RunCompleted, runs[done].Status)
	p := b.get(pending)
	require.Equal(t, engine.RunCancelled, p.Status)
	require.Zero(t, p.Attempt, "never picked up")
	require.Empty(t, p.WorkerID)
}
