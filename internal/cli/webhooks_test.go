package cli

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const testSecret = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // 32 bytes

// checkSig verifies a Standard Webhooks signature with testSecret (from
// the spec: HMAC-SHA256 of "id.timestamp.body", base64, "v1," prefix).
func checkSig(r *http.Request, body []byte) bool {
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(testSecret, "whsec_"))
	m := hmac.New(sha256.New, key)
	m.Write([]byte(r.Header.Get("webhook-id") + "." + r.Header.Get("webhook-timestamp") + "." + string(body)))
	want := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
	for _, s := range strings.Fields(r.Header.Get("webhook-signature")) {
		if hmac.Equal([]byte(s), []byte(want)) {
			return true
		}
	}
	return false
}

// hookReceiver records the bodies of the requests with a valid signature
// (or of any request, for slack) and answers status.
type hookReceiver struct {
	mu     sync.Mutex
	bodies []string
	status int
}

func newHookReceiver(t *testing.T, status int) (*hookReceiver, string) {
	hr := &hookReceiver{status: status}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get("webhook-signature") != "" && !checkSig(r, b) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		hr.mu.Lock()
		hr.bodies = append(hr.bodies, string(b))
		hr.mu.Unlock()
		w.WriteHeader(hr.status)
		fmt.Fprint(w, "thanks")
	}))
	t.Cleanup(func() { ts.CloseClientConnections(); ts.Close() })
	return hr, ts.URL + "/hook"
}

func (hr *hookReceiver) got() []string {
	hr.mu.Lock()
	defer hr.mu.Unlock()
	return append([]string(nil), hr.bodies...)
}

func TestWebhooksTestCommand(t *testing.T) {
	t.Parallel()
	hr, url := newHookReceiver(t, http.StatusOK)
	code, out, errOut := cliAt(t, nil, "webhooks", "test", url, "--secret", testSecret)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "sent run.failed standard (signed with 1 secret(s)")
	require.Contains(t, out, "answer: 200 OK\nthanks\n")
	require.Len(t, hr.got(), 1)
	var p map[string]any
	require.NoError(t, json.Unmarshal([]byte(hr.got()[0]), &p))
	require.Equal(t, "run.failed", p["type"])

	code, _, errOut = cliAt(t, map[string]string{"PYOCO_WEBHOOK_SECRET": testSecret}, "webhooks", "test", url, "--format", "slack", "--event", "run.completed")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, hr.got()[1], `"text"`)
	require.Contains(t, hr.got()[1], "COMPLETED")

	code, out, errOut = cliAt(t, nil, "webhooks", "test", url, "--format", "cloudevents", "--event", "run.cancelled")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "sent run.cancelled cloudevents (unsigned")
	var ce map[string]any
	require.NoError(t, json.Unmarshal([]byte(hr.got()[2]), &ce))
	require.Equal(t, "1.0", ce["specversion"])
	require.Equal(t, "dev.pyoco.run.cancelled", ce["type"])
	require.Regexp(t, `^msg_test_`, ce["id"])

	_, badURL := newHookReceiver(t, http.StatusInternalServerError)
	code, out, _ = cliAt(t, nil, "webhooks", "test", badURL, "--secret", testSecret)
	require.Equal(t, 1, code)
	require.Contains(t, out, "answer: 500 Internal Server Error")

	code, _, errOut = cliAt(t, nil, "webhooks", "test", url, "--format", "teams")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `format "teams"`)
	code, _, errOut = cliAt(t, nil, "webhooks", "test", url, "--secret", "nope")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "whsec_")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := "http://" + ln.Addr().String() + "/hook"
	require.NoError(t, ln.Close())
	code, _, errOut = cliAt(t, nil, "webhooks", "test", dead, "--secret", testSecret)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "no answer")
	code, _, errOut = cliAt(t, nil, "webhooks", "deliveries", "--status", "done")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "pending, succeeded or failed")
}

// pyoco server with a webhooks: section delivers a run's end to the
// receiver; pyoco webhooks deliveries lists it. Bad sections are usage
// errors.
func TestServerWebhooks(t *testing.T) {
	t.Parallel()
	hr, hookURL := newHookReceiver(t, http.StatusOK)
	dir := t.TempDir()
	flows := filepath.Join(dir, "flows")
	require.NoError(t, os.Mkdir(flows, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(flows, "ok.yaml"), []byte(okFlow), 0o644))
	conf := filepath.Join(dir, "pyoco.yaml")
	require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf(`webhooks:
  - url: %s
    events: [run.completed]
    secret_env: HOOK_SECRET
    flows: [ok_flow]
`, hookURL)), 0o644))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	e, stdout, _ := pluginTestEnv(map[string]string{"PYOCO_PLUGIN_PATH": dir, "OTEL_TRACES_EXPORTER": "none", "HOOK_SECRET": testSecret})
	var logs syncBuffer
	e.stderr = &logs
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		root := newRoot(e)
		root.SetArgs([]string{"server", "--addr", addr, "--flows", flows, "--config", conf})
		root.SetOut(stdout)
		root.SetErr(&logs)
		done <- root.ExecuteContext(ctx)
	}()
	base := "http://" + addr
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 10*time.Second, 20*time.Millisecond, "server did not come up: %s", logs.String())

	vars := map[string]string{"PYOCO_SERVER": base}
	code, out, errOut := cliAt(t, vars, "submit", "ok_flow", "--wait")
	require.Equal(t, 0, code, errOut)
	runID := strings.Fields(out)[1]
	require.Eventually(t, func() bool { return len(hr.got()) == 1 }, 10*time.Second, 10*time.Millisecond, logs.String())
	require.Contains(t, hr.got()[0], runID)
	require.Eventually(t, func() bool {
		code, out, _ = cliAt(t, vars, "webhooks", "deliveries", "--status", "succeeded")
		return code == 0 && strings.Contains(out, runID)
	}, 10*time.Second, 10*time.Millisecond)
	require.True(t, strings.HasPrefix(out, "ID "), out)
	require.Contains(t, out, "run.completed")
	id := strings.Fields(strings.Split(out, "\n")[1])[0]
	code, out, errOut = cliAt(t, vars, "webhooks", "retry", id)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, id+": pending")
	require.Eventually(t, func() bool { return len(hr.got()) == 2 }, 10*time.Second, 10*time.Millisecond)
	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(metrics), `pyoco_webhook_deliveries_total{event="run.completed",outcome="success"}`)
	code, _, errOut = cliAt(t, vars, "webhooks", "retry", "msg_unknown")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "HTTP 404")

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err, logs.String())
	case <-time.After(15 * time.Second):
		t.Fatal("server did not stop")
	}
	require.Contains(t, logs.String(), "webhooks enabled")

	for name, tc := range map[string]struct{ yaml, want string }{
		"bad url":     {"webhooks:\n  - url: ftp://x\n    secret: " + testSecret + "\n", "webhooks[0]: url \"ftp://x\""},
		"bad secret":  {"webhooks:\n  - url: http://x\n    secret: abc\n", "webhooks[0]: secret: must start with"},
		"bad event":   {"webhooks:\n  - url: http://x\n    secret: " + testSecret + "\n    events: [run.started]\n", `unknown event "run.started"`},
		"bad format":  {"webhooks:\n  - url: http://x\n    format: teams\n", `format "teams"`},
		"bad field":   {"webhooks:\n  - url: http://x\n    sekret: x\n", "sekret"},
		"not a list":  {"webhooks: http://x\n", "webhooks"},
		"env missing": {"webhooks:\n  - url: http://x\n    secret_env: NOPE_NOT_SET\n", "NOPE_NOT_SET is not set"},
	} {
		f := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".yaml")
		require.NoError(t, os.WriteFile(f, []byte(tc.yaml), 0o644))
		code, _, errOut := cliAt(t, map[string]string{"PYOCO_PLUGIN_PATH": dir}, "server", "--config", f, "--addr", "127.0.0.1:0")
		require.Equal(t, 2, code, name)
		require.Contains(t, errOut, tc.want, name)
	}
	code, _, errOut = cliAt(t, map[string]string{"PYOCO_PLUGIN_PATH": dir, "PYOCO_WEBHOOK_URL": "http://x", "PYOCO_WEBHOOK_EVENTS": "run.nope"},
		"server", "--addr", "127.0.0.1:0")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "PYOCO_WEBHOOK_URL")
}
