//go:build linux

package e2e_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
)

// scheduleFlow is a flow with one every: 1s schedule named tick.
func scheduleFlow(catchup string) string {
	return fmt.Sprintf(`version: 1
flow:
  name: ticker
  defaults: {who: world}
  schedule:
    - {name: tick, every: 1s, catchup: %s, params: {who: schedule}}
tasks:
  a: {use: noop}
`, catchup)
}

// serverProc is one `pyoco server` process logging to a file.
type serverProc struct {
	*proc
	log string
}

// startServer starts `pyoco server` on the test's Redis and namespace with
// the flows of dir (no in-process workers: the runs stay PENDING) and
// returns it once it serves, with its API URL.
func (b *bundle) startServer(name, dir string) (*serverProc, string) {
	b.t.Helper()
	logPath := filepath.Join(b.dir, "server-"+name+".log")
	logf, err := os.Create(logPath)
	require.NoError(b.t, err)
	defer logf.Close()
	cmd := exec.Command(pyocoBin, "server", "--redis", "redis://"+b.srv.Addr(), "--namespace", b.ns, "--flows", dir,
		"--addr", "127.0.0.1:0", "--workers", "0", "--shutdown-timeout", "5s")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none", "PYOCO_PLUGIN_PATH="+b.dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(b.t, cmd.Start())
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	b.mu.Lock()
	b.procs = append(b.procs, p)
	b.mu.Unlock()
	sp := &serverProc{proc: p, log: logPath}
	var url string
	re := regexp.MustCompile(`msg="serving the API" url=(http://\S+)`)
	waitFor(b.t, 30*time.Second, "server "+name+" to serve", func() bool {
		require.False(b.t, p.exited(), "server %s exited:\n%s", name, sp.text())
		if m := re.FindStringSubmatch(sp.text()); m != nil {
			url = m[1]
			return true
		}
		return false
	})
	return sp, url
}

func (sp *serverProc) text() string {
	b, _ := os.ReadFile(sp.log)
	return string(b)
}

// stop sends SIGTERM and waits until the process is reaped.
func (sp *serverProc) stop(t *testing.T) {
	t.Helper()
	_ = sp.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-sp.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("server did not stop on SIGTERM:\n%s", sp.text())
	}
}

var (
	submittedRe = regexp.MustCompile(`msg="schedule tick submitted" flow=ticker schedule=tick tick=(\S+) run_id=(\S+)`)
	skippedRe   = regexp.MustCompile(`msg="schedule ticks skipped" flow=ticker schedule=tick skipped=(\d+)`)
)

// submitted returns the ticks this server submitted, with their run IDs.
func (sp *serverProc) submitted(t *testing.T) map[time.Time]string {
	t.Helper()
	out := map[time.Time]string{}
	for _, m := range submittedRe.FindAllStringSubmatch(sp.text(), -1) {
		tick, err := time.Parse(time.RFC3339Nano, m[1])
		require.NoError(t, err)
		_, dup := out[tick]
		require.False(t, dup, "tick %s submitted twice by one server", tick)
		out[tick] = m[2]
	}
	return out
}

// taggedRuns counts the runs tagged schedule:tick through the API at url.
func taggedRuns(t *testing.T, url string) []string {
	t.Helper()
	resp, err := http.Get(url + "/runs?tag=schedule:tick&limit=500")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	var page struct {
		Runs []struct {
			RunID  string         `json:"run_id"`
			Tags   []string       `json:"tags"`
			Status string         `json:"status"`
			Params map[string]any `json:"params"`
		} `json:"runs"`
		NextCursor *string `json:"next_cursor"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&page))
	require.Nil(t, page.NextCursor)
	var ids []string
	for _, r := range page.Runs {
		require.Equal(t, []string{"schedule:tick"}, r.Tags)
		ids = append(ids, r.RunID)
	}
	return ids
}

// TestScheduleTwoServers runs one every: 1s schedule on two `pyoco server`
// processes sharing one Redis, over several ticks: each tick is submitted
// by exactly one of them (their logs name the ticks they submitted), and
// the runs tagged schedule:tick are exactly those, one per tick, with no
// tick missing between the first and the last.
func TestScheduleTwoServers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	dir := filepath.Join(b.dir, "flows")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	// catchup: all, so that a tick a loaded machine serves late is still
	// run (and counted) rather than folded into a catch-up.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ticker.yaml"), []byte(scheduleFlow("all")), 0o644))
	empty := filepath.Join(b.dir, "no-flows")
	require.NoError(t, os.MkdirAll(empty, 0o755))

	sa, urlA := b.startServer("a", dir)
	sb, _ := b.startServer("b", dir)
	// A third server with no flows runs no schedule: the test reads the
	// API through it after the other two stopped.
	_, reader := b.startServer("reader", empty)

	const ticks = 6
	waitFor(t, 30*time.Second, fmt.Sprintf("%d ticks submitted", ticks), func() bool {
		return len(sa.submitted(t))+len(sb.submitted(t)) >= ticks
	})
	resp, err := http.Get(urlA + "/metrics")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	for _, o := range []string{"submitted", "skipped", "error"} {
		require.Regexp(t, `(?m)^pyoco_schedule_runs_total\{flow="ticker",outcome="`+o+`"\} \d+$`, string(body))
	}
	sa.stop(t)
	sb.stop(t)

	byA, byB := sa.submitted(t), sb.submitted(t)
	var all []time.Time
	ids := map[string]bool{}
	for tick, id := range byA {
		_, both := byB[tick]
		require.False(t, both, "tick %s submitted by both servers", tick)
		all = append(all, tick)
		ids[id] = true
	}
	for tick, id := range byB {
		all = append(all, tick)
		ids[id] = true
	}
	slices.SortFunc(all, func(x, y time.Time) int { return x.Compare(y) })
	require.GreaterOrEqual(t, len(all), ticks)
	for i := 1; i < len(all); i++ {
		require.Equal(t, time.Second, all[i].Sub(all[i-1]), "ticks %v: one run per second, none missing", all)
	}
	t.Logf("ticks submitted: %d by a, %d by b", len(byA), len(byB))

	got := taggedRuns(t, reader)
	require.Len(t, got, len(all), "one run per tick")
	for _, id := range got {
		require.True(t, ids[id], "run %s was not logged as a tick's run", id)
	}
	st, err := b.store.ScheduleGet(t.Context(), "ticker", "tick")
	require.NoError(t, err)
	require.Equal(t, all[len(all)-1], st.LastTick)
	r, err := b.store.RunGet(t.Context(), got[0])
	require.NoError(t, err)
	require.Equal(t, map[string]any{"who": "schedule"}, r.Params, "the schedule's params over the flow defaults")
	require.Equal(t, engine.RunPending, r.Status)
}

// TestScheduleCatchup stops the only server for a few ticks: the next
// server to start runs one catch-up run for the ticks missed (catchup:
// one, the default), logs the others as skipped, and goes on at each tick.
func TestScheduleCatchup(t *testing.T) {
	t.Parallel()
	b := setup(t)
	dir := filepath.Join(b.dir, "flows")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ticker.yaml"), []byte(scheduleFlow("one")), 0o644))

	sa, _ := b.startServer("a", dir)
	waitFor(t, 30*time.Second, "a first tick", func() bool { return len(sa.submitted(t)) >= 1 })
	sa.stop(t)
	st, err := b.store.ScheduleGet(t.Context(), "ticker", "tick")
	require.NoError(t, err)
	last := st.LastTick
	before := len(sa.submitted(t))

	// Every server is down for at least three ticks.
	waitFor(t, 30*time.Second, "three ticks to pass", func() bool { return time.Since(last) > 3*time.Second+200*time.Millisecond })
	sb, _ := b.startServer("b", dir)
	waitFor(t, 30*time.Second, "the catch-up and the next tick", func() bool { return len(sb.submitted(t)) >= 2 })
	sb.stop(t)

	byB := sb.submitted(t)
	var ticksB []time.Time
	for tick := range byB {
		ticksB = append(ticksB, tick)
	}
	slices.SortFunc(ticksB, func(x, y time.Time) int { return x.Compare(y) })
	catchup := ticksB[0]
	missed := int(catchup.Sub(last)/time.Second) - 1
	require.GreaterOrEqual(t, missed, 2, "ticks %s (last before the outage) and %s (caught up)", last, catchup)
	m := skippedRe.FindStringSubmatch(sb.text())
	require.NotNil(t, m, "b logs the skipped ticks:\n%s", sb.text())
	require.Equal(t, strconv.Itoa(missed), m[1], "every missed tick but the caught-up one is skipped")
	for i := 1; i < len(ticksB); i++ {
		require.Equal(t, time.Second, ticksB[i].Sub(ticksB[i-1]), "after the catch-up, one run per tick: %v", ticksB)
	}
	page, err := b.store.RunList(t.Context(), &engine.RunListParams{Tag: "schedule:tick", Limit: 500})
	require.NoError(t, err)
	require.Len(t, page.Runs, before+len(byB), "one run for all the missed ticks")
}
