package cli

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// runCLIContext is runCLI with a context (cancelling it is a Ctrl+C).
func runCLIContext(ctx context.Context, e *env, args ...string) int {
	root := newRoot(e)
	root.SetArgs(args)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if !ee.printed && ee.msg != "" {
			_, _ = io.WriteString(e.stderr, "pyoco: "+ee.msg+"\n")
		}
		return ee.code
	}
	_, _ = io.WriteString(e.stderr, "pyoco: "+err.Error()+"\n")
	return ExitUsage
}

// TestRunInterruptedBeforeStart: a Ctrl+C that arrives while the flow is
// loaded or submitted exits 130 (not 1 or 2), the run CANCELLED.
func TestRunInterruptedBeforeStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	flow := filepath.Join(dir, "flow.yaml")
	require.NoError(t, os.WriteFile(flow, []byte(okFlow), 0o644))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	e, stdout, stderr := pluginTestEnv(map[string]string{"PYOCO_PLUGIN_PATH": filepath.Join(dir, "none"), "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"})
	require.Equal(t, ExitCancelled, runCLIContext(ctx, e, "run", "--plain", flow), stderr.String())
	require.Contains(t, stdout.String(), "run CANCELLED flow=ok_flow")
	require.NotContains(t, stdout.String(), "task started")

	e, stdout, stderr = pluginTestEnv(map[string]string{"PYOCO_PLUGIN_PATH": filepath.Join(dir, "none"), "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"})
	require.Equal(t, ExitCancelled, runCLIContext(ctx, e, "run", "--json", flow), stderr.String())
	var doc struct {
		Status string `json:"status"`
	}
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &doc))
	require.Equal(t, "CANCELLED", doc.Status)
}
