//go:build linux

package e2e_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// otelcolBin finds the collector .ci/run builds with the OpenTelemetry
// Collector Builder (otel-collector/builder-config.yaml): $PYOCO_OTELCOL_BIN
// or the newest one in the cache. Missing: skip, or fail when CI=true.
func otelcolBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PYOCO_OTELCOL_BIN"); p != "" {
		return p
	}
	cache, err := os.UserCacheDir()
	if err == nil {
		if m, _ := filepath.Glob(filepath.Join(cache, "pyoco", "otelcol-pyoco-*")); len(m) > 0 {
			return m[len(m)-1]
		}
	}
	missingTool(t, "the OCB-built collector (otelcol-pyoco): run .ci/run, or set PYOCO_OTELCOL_BIN")
	return ""
}

const collectorLogsConfig = `receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:%d
exporters:
  debug:
    verbosity: detailed
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [debug]
    traces:
      receivers: [otlp]
      exporters: [debug]
`

// TestCollectorTaskLogs: task log lines of a `pyoco run` reach a real
// OpenTelemetry Collector (the OCB build of otel-collector/) as OTLP log
// records carrying the trace and span ids of their task attempt, with
// their severity and run attributes, next to the run's spans.
func TestCollectorTaskLogs(t *testing.T) {
	t.Parallel()
	bin := otelcolBin(t)
	s := newStack(t)
	var port int
	var col *stackProc
	s.startRetrying("otelcol", func() (*stackProc, error) {
		port = freeTCPPort(t)
		cfg := filepath.Join(s.dir, "otelcol.yaml")
		require.NoError(t, os.WriteFile(cfg, fmt.Appendf(nil, collectorLogsConfig, port), 0o644))
		col = s.start("otelcol", bin, []string{"--config", cfg}, nil)
		return col, waitDial(col, fmt.Sprintf("127.0.0.1:%d", port), 30*time.Second)
	})

	flow := filepath.Join(s.dir, "flow.yaml")
	require.NoError(t, os.WriteFile(flow, []byte(`version: 1
flow: {name: e2e_logs, graph: "say >> warn"}
tasks:
  say: {use: shell, inputs: {cmd: "echo collector-line-one"}}
  warn: {use: log, inputs: {message: collector-line-two, level: warn}}
`), 0o644))
	cmd := exec.Command(pyocoBin, "run", "--json", flow)
	cmd.Env = append(os.Environ(),
		"OTEL_EXPORTER_OTLP_ENDPOINT="+fmt.Sprintf("http://127.0.0.1:%d", port),
		"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf", "OTEL_TRACES_EXPORTER=otlp", "OTEL_LOGS_EXPORTER=otlp",
		"OTEL_SERVICE_NAME=pyoco-e2e-logs", "OTEL_BSP_SCHEDULE_DELAY=100", "OTEL_BLRP_SCHEDULE_DELAY=100")
	out, err := cmd.Output()
	require.NoError(t, err, "%s", out)
	var run struct {
		RunID   string `json:"run_id"`
		TraceID string `json:"trace_id"`
		Tasks   map[string]struct {
			AttemptLog []struct {
				SpanID string `json:"span_id"`
			} `json:"attempt_log"`
		} `json:"tasks"`
	}
	require.NoError(t, json.Unmarshal(out, &run), "%s", out)
	saySpan := run.Tasks["say"].AttemptLog[0].SpanID
	warnSpan := run.Tasks["warn"].AttemptLog[0].SpanID

	// The debug exporter prints each record: its body, attributes, trace
	// and span ids. Find the block of each line.
	record := func(body string) (string, error) {
		data, err := os.ReadFile(col.log)
		if err != nil {
			return "", err
		}
		for _, blk := range strings.Split(string(data), "LogRecord #") {
			if strings.Contains(blk, "Body: Str("+body+")") {
				return blk, nil
			}
		}
		return "", fmt.Errorf("no log record %q yet in the collector's output", body)
	}
	var one, two string
	eventually(t, 30*time.Second, "both task log records at the collector", func() error {
		if one, err = record("collector-line-one"); err != nil {
			return err
		}
		two, err = record("collector-line-two")
		return err
	})
	for _, c := range []struct{ blk, span, sev string }{{one, saySpan, "INFO"}, {two, warnSpan, "WARN"}} {
		require.Contains(t, c.blk, "Trace ID: "+run.TraceID)
		require.Contains(t, c.blk, "Span ID: "+c.span, "the record carries its task attempt's span id")
		require.Regexp(t, regexp.MustCompile(`SeverityText: `+c.sev), c.blk)
		require.Contains(t, c.blk, run.RunID, "the run id is an attribute")
	}
	data, err := os.ReadFile(col.log)
	require.NoError(t, err)
	require.Contains(t, string(data), "service.name: Str(pyoco-e2e-logs)", "resource attributes")
	require.Contains(t, string(data), "Name           : task say", "the spans reached the same collector")
}
