package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

const slowFlow = `version: 1
flow:
  name: slow_flow
tasks:
  nap: {use: shell, inputs: {cmd: "sleep 30"}}
`

// TestServerShutdownStopsWorkersTogether: at the signal every in-process
// worker stops taking runs and they stop in parallel under the one
// --shutdown-timeout (shared with the HTTP drain): both announce their stop
// before either hands its run back, and the server stops long before the
// runs would have ended.
func TestServerShutdownStopsWorkersTogether(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	flows := filepath.Join(dir, "flows")
	require.NoError(t, os.Mkdir(flows, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(flows, "slow.yaml"), []byte(slowFlow), 0o644))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	e, stdout, stderr := pluginTestEnv(map[string]string{"PYOCO_PLUGIN_PATH": dir, "OTEL_TRACES_EXPORTER": "none"})
	var logs syncBuffer
	e.stderr = &logs
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		root := newRoot(e)
		root.SetArgs([]string{"server", "--addr", addr, "--flows", flows, "--workers", "2", "--concurrency", "1",
			"--shutdown-timeout", "1s"})
		root.SetOut(stdout)
		root.SetErr(stderr)
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

	var ids []string
	for range 2 {
		resp, err := http.Post(base+"/runs", "application/json", strings.NewReader(`{"flow_name": "slow_flow"}`))
		require.NoError(t, err)
		var r struct {
			RunID string `json:"run_id"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&r))
		resp.Body.Close()
		require.Equal(t, http.StatusCreated, resp.StatusCode)
		ids = append(ids, r.RunID)
	}
	// One run on each worker (concurrency 1), both running.
	require.Eventually(t, func() bool {
		for _, id := range ids {
			resp, err := http.Get(base + "/runs/" + id)
			if err != nil {
				return false
			}
			var r struct {
				Status string `json:"status"`
			}
			err = json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
			if err != nil || r.Status != "RUNNING" {
				return false
			}
		}
		return true
	}, 10*time.Second, 20*time.Millisecond, "runs not running: %s", logs.String())

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err, logs.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("server did not stop: %s", logs.String())
	}
	out := logs.String()
	lastStopping, firstHandBack := -1, -1
	stopping, handBack := 0, 0
	for i, line := range strings.Split(out, "\n") {
		switch {
		case strings.Contains(line, `msg="worker stopping: no new runs"`):
			stopping++
			lastStopping = i
		case strings.Contains(line, `msg="worker stopping: handing runs back"`):
			require.Contains(t, line, "runs=1")
			handBack++
			if firstHandBack < 0 {
				firstHandBack = i
			}
		}
	}
	require.Equal(t, 2, stopping, out)
	require.Equal(t, 2, handBack, "each worker handed its run back: %s", out)
	require.Less(t, lastStopping, firstHandBack, "both workers stop together, not one after the other: %s", out)
	require.Contains(t, out, "server stopped")
	// A hand-back at the end of --shutdown-timeout is the normal way a
	// stop ends: INFO, no warning.
	require.NotContains(t, out, "level=WARN", out)
	require.Regexp(t, `level=INFO msg="worker stopped before its runs finished: they were handed back" .*reason="context deadline exceeded"`, out)
}

// TestOpenRedisPoolSize: the worker's Redis client has room for every run
// it executes at once plus its own loops; a larger pool_size of the URL is
// kept. (No connection is made.)
func TestOpenRedisPoolSize(t *testing.T) {
	t.Parallel()
	def := 10 * runtime.GOMAXPROCS(0)
	big := def + 50
	for _, tt := range []struct {
		spec    string
		minPool int
		want    int
	}{
		{"redis://127.0.0.1:1/0", big, big},
		{"127.0.0.1:1", big, big},
		{" redis://:secret@127.0.0.1:1/2 ", big, big},
		{"redis://127.0.0.1:1", 1, def},
		{fmt.Sprintf("redis://127.0.0.1:1?pool_size=%d", big+7), big, big + 7},
		{"redis://127.0.0.1:1?pool_size=3", big, big},
		{"redis://127.0.0.1:1?pool_size=3", 1, 3},
		{"127.0.0.1:1,", big, big},
	} {
		c, err := openRedis(tt.spec, tt.minPool)
		require.NoError(t, err, tt.spec)
		cc, ok := c.(*redis.Client)
		require.True(t, ok, "%s: %T", tt.spec, c)
		require.Equal(t, tt.want, cc.Options().PoolSize, tt.spec)
		require.Equal(t, 2*time.Second, cc.Options().DialTimeout, tt.spec)
		require.NoError(t, c.Close())
	}
	c, err := openRedis("redis://:secret@127.0.0.1:1/2", big)
	require.NoError(t, err)
	require.Equal(t, "secret", c.(*redis.Client).Options().Password)
	require.Equal(t, 2, c.(*redis.Client).Options().DB)
	require.NoError(t, c.Close())

	c, err = openRedis("127.0.0.1:1, 127.0.0.1:2", big)
	require.NoError(t, err)
	cc, ok := c.(*redis.ClusterClient)
	require.True(t, ok, "%T", c)
	require.Equal(t, big, cc.Options().PoolSize)
	require.NoError(t, c.Close())

	for _, bad := range []string{"", "redis://a:1,redis://b:2", "redis://127.0.0.1:1?pool_size=x", "redis://127.0.0.1:1?bogus=1"} {
		_, err := openRedis(bad, big)
		require.Error(t, err, bad)
	}
}
