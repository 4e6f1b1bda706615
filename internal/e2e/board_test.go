//go:build linux

package e2e_test

import (
	"context"
	"fmt"
	"html"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// boardFlow has two tasks that run until the test's gate file appears, one
// of them on its second attempt (its first fails at once).
const boardFlow = `version: 1
flow: {name: nightly_build}
tasks:
  prepare: {use: shell, inputs: {cmd: "echo preparing sources"}}
  crunch:
    use: shell
    depends_on: [prepare]
    retries: 2
    retry_delay: 10ms
    inputs: {cmd: "if [ -f crunch.failed ]; then echo crunching 4 shards; while [ ! -f %[1]s ]; do sleep 0.05; done; else touch crunch.failed; echo 'shard 3 flaked' >&2; exit 1; fi"}
  index: {use: shell, depends_on: [prepare], inputs: {cmd: "echo indexing; while [ ! -f %[1]s ]; do sleep 0.05; done"}}
  publish: {use: log, depends_on: [crunch, index], inputs: {message: "published"}}
`

// terminal is a tmux server of its own (its socket in the test's
// directory) holding one window: a real terminal whose rendered screen
// capture-pane reads. It is killed when the test ends.
type terminal struct {
	t    *testing.T
	tmux string
	sock string
}

func newTerminal(t *testing.T) *terminal {
	t.Helper()
	bin := lookTool(t, "tmux", "apt-get install -y --no-install-recommends tmux")
	term := &terminal{t: t, tmux: bin, sock: filepath.Join(t.TempDir(), "tmux.sock")}
	t.Cleanup(func() { _, _ = term.run("kill-server") })
	return term
}

func (term *terminal) run(args ...string) (string, error) {
	cmd := exec.Command(term.tmux, append([]string{"-S", term.sock, "-f", "/dev/null"}, args...)...)
	cmd.Env = append(os.Environ(), "TMUX=")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// start runs the shell command cmd in dir in a new 100x30 window named
// name; the window stays (its shell waits) after the command ends.
func (term *terminal) start(name, dir, cmd string) {
	term.t.Helper()
	out, err := term.run("new-session", "-d", "-x", "100", "-y", "30", "-s", name, "-c", dir,
		cmd+`; echo "exit status $?"; exec sleep 3600`)
	require.NoError(term.t, err, out)
}

// screen is the window's visible screen, as rendered.
func (term *terminal) screen(name string) string {
	term.t.Helper()
	out, err := term.run("capture-pane", "-p", "-t", name)
	require.NoError(term.t, err, out)
	return out
}

// history is everything the window showed, scrolled-off lines included.
func (term *terminal) history(name string) string {
	term.t.Helper()
	out, err := term.run("capture-pane", "-p", "-S", "-", "-t", name)
	require.NoError(term.t, err, out)
	return out
}

// waitScreen polls the screen until it matches re, and returns it.
func (term *terminal) waitScreen(name string, re *regexp.Regexp) string {
	term.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		last := term.screen(name)
		if re.MatchString(last) {
			return last
		}
		if time.Now().After(deadline) {
			term.t.Fatalf("no screen matching %q after 60s; the last one:\n%s", re, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBoard runs `pyoco run` in a real terminal (tmux): the live board
// shows the running tasks with their attempt and a timer that advances,
// drawn in place (one board on screen, never a trail of them), over the
// progress lines; at the end it is cleared and the summary follows. With
// --plain the same terminal gets the line log and no board. With -update
// it renders the board's screen to docs/board.png (in headless Chromium).
func TestBoard(t *testing.T) {
	t.Parallel()
	term := newTerminal(t)
	dir := t.TempDir()
	gate := filepath.Join(dir, "gate")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "flow.yaml"), []byte(fmt.Sprintf(boardFlow, gate)), 0o644))
	pyoco := "OTEL_TRACES_EXPORTER=none PYOCO_PLUGIN_PATH=" + dir + " " + pyocoBin

	term.start("board", dir, pyoco+" run flow.yaml")
	crunchRE := regexp.MustCompile(`(?m)^  ⏳ crunch +attempt 2 +running (\d+\.\d)s$`)
	// The header, then the two running tasks (in the order they started).
	first := term.waitScreen("board", regexp.MustCompile(`(?ms)^\[crunch\] crunching 4 shards$.*^── nightly_build  2 running · 1/4 done · \d+\.\ds ──\n`+
		`(  ⏳ (crunch +attempt 2|index +attempt 1) +running \d+\.\ds\n){2}`))
	require.Regexp(t, crunchRE, first)
	require.Regexp(t, `(?m)^  ⏳ index +attempt 1 +running \d+\.\ds$`, first)
	require.Contains(t, first, "💥 crunch: exit status 1: shard 3 flaked (attempt 1), retrying in 10ms")
	require.Contains(t, first, "[crunch] crunching 4 shards")
	t0 := crunchRE.FindStringSubmatch(first)[1]
	// Redrawn in place: the timer moves on, and the screen and its history
	// hold one board.
	var later string
	waitFor(t, 60*time.Second, "the timer to advance", func() bool {
		later = term.screen("board")
		m := crunchRE.FindStringSubmatch(later)
		return m != nil && m[1] != t0
	})
	require.Equal(t, 1, strings.Count(term.history("board"), "── nightly_build"), "one board, redrawn in place:\n%s", term.history("board"))
	if *updateDocs {
		renderScreen(t, later, "board.png")
	}

	require.NoError(t, os.WriteFile(gate, nil, 0o644))
	end := term.waitScreen("board", regexp.MustCompile(`(?m)^exit status 0$`))
	require.Regexp(t, `(?m)^crunch +SUCCEEDED +2 `, end)
	require.Contains(t, end, "🥕 nightly_build COMPLETED in ")
	require.NotContains(t, term.history("board"), "── nightly_build", "the board is cleared at the end")

	// --plain: the line log, no board, in the same kind of terminal.
	require.NoError(t, os.Remove(gate))
	require.NoError(t, os.Remove(filepath.Join(dir, "crunch.failed")))
	term.start("plain", dir, pyoco+" run --plain flow.yaml")
	term.waitScreen("plain", regexp.MustCompile(`(?m)^task started task=crunch attempt=2$`))
	require.NoError(t, os.WriteFile(gate, nil, 0o644))
	end = term.waitScreen("plain", regexp.MustCompile(`(?m)^exit status 0$`))
	require.Regexp(t, `(?m)^run COMPLETED flow=nightly_build duration=`, end)
	require.NotContains(t, term.history("plain"), "⏳")
}

// renderScreen writes a terminal screen as a PNG (docs/NAME): the text in
// a terminal-like page, screenshot in headless Chromium.
func renderScreen(t *testing.T, screen, name string) {
	t.Helper()
	ctx := newBrowser(t)
	lines := strings.Split(strings.TrimRight(screen, "\n"), "\n")
	page := `<!doctype html><meta charset="utf-8"><style>
body { margin: 0; background: #1e1f24; }
pre { margin: 0; padding: 14px 18px; color: #e6e6e6; font: 15px/1.35 "DejaVu Sans Mono", monospace; display: inline-block; }
</style><pre id="screen">` + html.EscapeString(strings.Join(lines, "\n")) + `</pre>`
	step(t, ctx, "render the screen", chromedp.Navigate("data:text/html;charset=utf-8,"+urlPathEscape(page)),
		chromedp.WaitVisible(chromedp.ID("screen")))
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	buf, err := chromedp.Run(sctx, chromedp.Screenshot(chromedp.ID("screen")))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join("..", "..", "docs", name), buf, 0o644))
	t.Logf("wrote docs/%s (%d bytes)", name, len(buf))
}

// urlPathEscape escapes s for a data: URL.
func urlPathEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_.~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// TestBoardRemote: `pyoco run --server` in a real terminal shows the same
// board, fed by a real `pyoco server`'s API and log stream: the running
// tasks with their attempt and a timer, the retried one on attempt 2, the
// lines in order above it.
func TestBoardRemote(t *testing.T) {
	t.Parallel()
	term := newTerminal(t)
	s := newStack(t)
	gate := filepath.Join(s.dir, "gate")
	flow := filepath.Join(s.dir, "flow.yaml")
	require.NoError(t, os.WriteFile(flow, []byte(fmt.Sprintf(boardFlow, gate)), 0o644))
	port := freeTCPPort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	srv := s.start("server", pyocoBin, []string{"server", "--addr", fmt.Sprintf("127.0.0.1:%d", port), "--flows", s.dir},
		[]string{"OTEL_TRACES_EXPORTER=none", "PYOCO_PLUGIN_PATH=" + s.dir})
	require.NoError(t, s.waitHTTP(srv, base+"/healthz", 30*time.Second))

	term.start("remote", s.dir, "OTEL_TRACES_EXPORTER=none PYOCO_PLUGIN_PATH="+s.dir+" "+pyocoBin+" run flow.yaml --server "+base)
	screen := term.waitScreen("remote", regexp.MustCompile(`(?ms)^\[crunch\] crunching 4 shards$.*^── nightly_build  2 running · 1/4 done · \d+\.\ds ──\n`+
		`(  ⏳ (crunch +attempt 2|index +attempt 1) +running \d+\.\ds\n){2}`))
	lines := strings.Split(screen, "\n")
	index := func(s string) int {
		for i, l := range lines {
			if strings.HasPrefix(l, s) {
				return i
			}
		}
		t.Fatalf("no line %q on the screen:\n%s", s, screen)
		return -1
	}
	require.Less(t, index("🐇 nightly_build started"), index("🏃 prepare"), screen)
	require.Less(t, index("🏃 prepare"), index("[prepare] preparing sources"), screen)
	require.Less(t, index("[prepare] preparing sources"), index("✅ prepare ("), screen)
	require.Less(t, index("[crunch] stderr: shard 3 flaked"), index("💥 crunch: exit status 1: shard 3 flaked (attempt 1), retrying"), screen)
	require.Less(t, index("💥 crunch: "), index("🏃 crunch (attempt 2)"), screen)
	require.Less(t, index("🏃 crunch (attempt 2)"), index("[crunch] crunching 4 shards"), screen)

	require.NoError(t, os.WriteFile(gate, nil, 0o644))
	end := term.waitScreen("remote", regexp.MustCompile(`(?m)^exit status 0$`))
	require.Regexp(t, `(?m)^crunch +SUCCEEDED +2 `, end)
	require.NotContains(t, term.history("remote"), "── nightly_build", "the board is cleared at the end")
}
