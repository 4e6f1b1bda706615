package cli

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestStrictMakesPluginProblemsFatal: with --strict, `run`, `server` and
// `worker` refuse to start when a plug-in is broken (exit 2, the problem on
// stderr); without it, `run` warns and goes on.
func TestStrictMakesPluginProblemsFatal(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writePlugin(t, dir, "crashy", "echo 'crashy: cannot import numpy' >&2; exit 3\n")
	flow := filepath.Join(dir, "flow.yaml")
	require.NoError(t, os.WriteFile(flow, []byte(okFlow), 0o644))
	crash := `exec plug-in "crashy" (` + filepath.Join(dir, "pyoco-plugin-crashy") + `): describe: exit status 3: crashy: cannot import numpy`

	for _, args := range [][]string{
		{"run", "--strict", "--plain", flow},
		{"server", "--strict", "--addr", "127.0.0.1:0", "--flows", dir},
		// The worker checks its plug-ins before it talks to Redis, so an
		// unreachable address is enough here.
		{"worker", "--strict", "--redis", "redis://127.0.0.1:1", "--metrics-addr", "127.0.0.1:0"},
	} {
		t.Run(args[0], func(t *testing.T) {
			e, _, stderr := pluginTestEnv(map[string]string{"PYOCO_PLUGIN_PATH": dir, "OTEL_TRACES_EXPORTER": "none"})
			require.Equal(t, ExitUsage, runCLI(e, args...), stderr.String())
			require.Contains(t, stderr.String(), crash)
		})
	}

	e, stdout, stderr := pluginTestEnv(map[string]string{"PYOCO_PLUGIN_PATH": dir, "OTEL_TRACES_EXPORTER": "none"})
	require.Equal(t, ExitOK, runCLI(e, "run", "--plain", flow), stderr.String())
	require.Contains(t, stderr.String(), "warning: "+crash)
	require.Contains(t, stdout.String()+stderr.String(), "COMPLETED")
}

// TestPluginsAPIMatchesCLI: GET /plugins of a running `pyoco server` is the
// document `pyoco plugins list --json` prints, for the same plug-in path.
func TestPluginsAPIMatchesCLI(t *testing.T) {
	t.Parallel()
	dir1, dir2 := pluginDirs(t)
	vars := map[string]string{"PYOCO_PLUGIN_PATH": pathList(dir1, dir2), "OTEL_TRACES_EXPORTER": "none"}
	e, stdout, stderr := pluginTestEnv(vars)
	require.Equal(t, ExitOK, runCLI(e, "plugins", "list", "--json"), stderr.String())
	want := stdout.String()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	e, _, _ = pluginTestEnv(vars)
	var logs syncBuffer
	e.stdout, e.stderr = io.Discard, &logs
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		root := newRoot(e)
		root.SetArgs([]string{"server", "--addr", addr, "--flows", t.TempDir()})
		root.SetOut(io.Discard)
		root.SetErr(&logs)
		done <- root.ExecuteContext(ctx)
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err, logs.String())
		case <-time.After(15 * time.Second):
			t.Error("server did not stop")
		}
	}()

	var body []byte
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/plugins")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, err = io.ReadAll(resp.Body)
		return err == nil && resp.StatusCode == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond, "server did not come up: %s", logs.String())
	require.JSONEq(t, want, string(body))
	require.Contains(t, logs.String(), "plug-in problem")
}
