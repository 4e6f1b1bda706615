package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// orderFlow has fast tasks (well under a poll of the run's document) and a
// task that fails its first attempt and is retried.
const orderFlow = `version: 1
flow: {name: order_flow}
tasks:
  a: {use: log, inputs: {message: alpha}}
  b: {use: shell, depends_on: [a], inputs: {cmd: "echo beta"}}
  c:
    use: shell
    depends_on: [a]
    retries: 1
    retry_delay: 10ms
    inputs: {cmd: "if [ -f %[1]s ]; then echo gamma; else touch %[1]s; echo flaky >&2; exit 3; fi"}
`

// TestRunWithServerOrder: `run --server` shows a remote run's lines in the
// order of a local run: "run started" first, each attempt's "started"
// before its log lines, its end (retry or finish) after them, and fast
// tasks with a duration ("<1ms" at worst), never "0s" or "-".
func TestRunWithServerOrder(t *testing.T) {
	t.Parallel()
	url := apiServer(t, "")
	dir := t.TempDir()
	vars := map[string]string{"PYOCO_PROGRESS": "plain", "PYOCO_PLUGIN_PATH": dir}
	for i := range 3 {
		file := filepath.Join(dir, fmt.Sprintf("order%d.yaml", i))
		require.NoError(t, os.WriteFile(file, []byte(fmt.Sprintf(orderFlow, filepath.Join(dir, fmt.Sprintf("c%d.failed", i)))), 0o644))
		code, out, errOut := cliAt(t, vars, "run", file, "--server", url)
		require.Equal(t, 0, code, errOut)
		lines := strings.Split(out, "\n")
		require.Regexp(t, `^run started flow=order_flow run_id=\S+ trace_id=[0-9a-f]{32}$`, lines[0], out)
		at := func(re string) int {
			t.Helper()
			r := regexp.MustCompile(re)
			for i, l := range lines {
				if r.MatchString(l) {
					return i
				}
			}
			t.Fatalf("no line matching %q in:\n%s", re, out)
			return -1
		}
		inOrder := func(res ...string) {
			t.Helper()
			prev := -1
			for _, re := range res {
				i := at(re)
				require.Greater(t, i, prev, "%q comes after %q in:\n%s", re, res, out)
				prev = i
			}
		}
		inOrder(`^task started task=a attempt=1$`, `^\[a\] alpha$`, `^task SUCCEEDED task=a attempt=1 duration=`)
		inOrder(`^task SUCCEEDED task=a `, `^task started task=b attempt=1$`, `^\[b\] beta$`, `^task SUCCEEDED task=b attempt=1 duration=`)
		inOrder(`^task started task=c attempt=1$`, `^\[c\] stderr: flaky$`, `^task retrying task=c attempt=1 error=`,
			`^task started task=c attempt=2$`, `^\[c\] gamma$`, `^task SUCCEEDED task=c attempt=2 duration=`, `^run COMPLETED flow=order_flow`)
		require.NotRegexp(t, `duration=0s\b`, out)
		require.Regexp(t, `(?m)^a +SUCCEEDED +1 +(<1ms|\d\S*s) *$`, out)
		require.Regexp(t, `(?m)^c +SUCCEEDED +2 +(<1ms|\d\S*s) *$`, out)
		require.Equal(t, 1, strings.Count(out, "task started task=c attempt=2"), out)
	}
}
