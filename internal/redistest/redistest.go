package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Environment variables that point the helpers at an existing Redis.
const (
	// EnvURL is a redis:// or rediss:// URL that [Client] uses instead of
	// starting a server.
	EnvURL = "PYOCO_TEST_REDIS_URL"
	// EnvCluster is a comma-separated list of cluster seed addresses that
	// [Cluster] uses instead of starting a cluster.
	EnvCluster = "PYOCO_TEST_REDIS_CLUSTER"
)

// clusterSize is the number of masters [Cluster] starts.
const clusterSize = 3

// The servers of this test binary, started on first use.
var (
	mu       sync.Mutex
	servers  []*Server // every server to stop in Main
	tempDirs []string  // removed in Main

	single struct {
		once sync.Once
		srv  *Server
		err  error
	}
	cluster struct {
		once  sync.Once
		addrs []string
		err   error
	}
)

// Main runs the tests of m, then stops every server that the helpers
// started (SIGTERM, SIGKILL after a grace period; each is reaped) and removes
// their directories. It returns m.Run's exit code:
//
//	func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	shutdown()
	return code
}

// Runner wraps m so that its Run method is [Main]: pass it to
// goleak.VerifyTestMain, which then checks for leaks after the servers
// stopped.
func Runner(m *testing.M) interface{ Run() int } { return runner{m} }

type runner struct{ m *testing.M }

func (r runner) Run() int { return Main(r.m) }

// shutdown stops every shared server and removes the temporary directories.
func shutdown() {
	mu.Lock()
	srvs, dirs := servers, tempDirs
	servers, tempDirs = nil, nil
	mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range srvs {
		wg.Go(func() { _ = s.stop() })
	}
	wg.Wait()
	for _, d := range dirs {
		_ = os.RemoveAll(d)
	}
}

// track registers a shared server (and its directory) for shutdown.
func track(dir string, s ...*Server) {
	mu.Lock()
	defer mu.Unlock()
	servers = append(servers, s...)
	if dir != "" {
		tempDirs = append(tempDirs, dir)
	}
}

// Client returns a client of the test binary's private redis-server,
// starting it on first use (or of PYOCO_TEST_REDIS_URL when set), closed in
// t.Cleanup. The server is shared by every test of the binary: give each
// test its own keys with [Namespace]. It fails t, with the reason, if no
// server can be started.
func Client(t testing.TB) redis.UniversalClient {
	t.Helper()
	var c redis.UniversalClient
	if url := os.Getenv(EnvURL); url != "" {
		opt, err := redis.ParseURL(url)
		if err != nil {
			t.Fatalf("redistest: %s: %v", EnvURL, err)
		}
		c = redis.NewClient(opt)
	} else {
		single.once.Do(func() {
			dir, err := os.MkdirTemp("", "redistest-")
			if err != nil {
				single.err = err
				return
			}
			single.srv, single.err = newServer(dir)
			if single.err != nil {
				_ = os.RemoveAll(dir)
				return
			}
			track(dir, single.srv)
		})
		if single.err != nil {
			t.Fatalf("redistest: %v", single.err)
		}
		c = redis.NewClient(single.srv.Options())
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Cluster returns a client of the test binary's private 3-master Redis
// Cluster, starting it on first use (or of PYOCO_TEST_REDIS_CLUSTER when
// set), closed in t.Cleanup. Like [Client], the cluster is shared: use
// [Namespace]. It fails t, with the reason, if the cluster cannot be started.
func Cluster(t testing.TB) redis.UniversalClient {
	t.Helper()
	var addrs []string
	if seeds := os.Getenv(EnvCluster); seeds != "" {
		addrs = strings.Split(seeds, ",")
	} else {
		cluster.once.Do(func() { cluster.addrs, cluster.err = startCluster() })
		if cluster.err != nil {
			t.Fatalf("redistest: %v", cluster.err)
		}
		addrs = cluster.addrs
	}
	c := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:        addrs,
		DialTimeout:  2 * time.Second,
		ReadTimeout:  5 * time.Second,
		WriteTimeout: 5 * time.Second,
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// startCluster starts clusterSize cluster-enabled servers, joins them with
// redis-cli --cluster create (no replicas) and waits until every node reports
// cluster_state:ok and knows the others.
func startCluster() (addrs []string, err error) {
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return nil, fmt.Errorf("redis-cli is not on PATH (needed to create the test cluster; or set %s): %w", EnvCluster, err)
	}
	dir, err := os.MkdirTemp("", "redistest-cluster-")
	if err != nil {
		return nil, err
	}
	var nodes []*Server
	defer func() {
		if err != nil {
			for _, n := range nodes {
				_ = n.stop()
			}
			_ = os.RemoveAll(dir)
		}
	}()
	for range clusterSize {
		bus, err := freePort()
		if err != nil {
			return nil, err
		}
		n, err := newServer(dir,
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes-$PORT.conf"),
			"--cluster-port", strconv.Itoa(bus),
			"--cluster-node-timeout", "5000",
		)
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
		addrs = append(addrs, n.Addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("redis-cli --cluster create: %w\n%s", err, out)
	}
	for _, a := range addrs {
		if err := waitClusterOK(ctx, a); err != nil {
			return nil, err
		}
	}
	track(dir, nodes...)
	return addrs, nil
}

// waitClusterOK polls CLUSTER INFO on addr until the node sees a healthy
// cluster of clusterSize nodes with every slot assigned.
func waitClusterOK(ctx context.Context, addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second})
	defer c.Close()
	var last string
	for {
		info, err := c.ClusterInfo(ctx).Result()
		if err == nil {
			last = info
			if strings.Contains(info, "cluster_state:ok") &&
				strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(clusterSize)) &&
				strings.Contains(info, "cluster_slots_ok:16384") {
				return nil
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster node %s not ready: %s", addr, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Namespace returns a fresh random namespace ("test-" and 16 hex digits)
// for t and, in t.Cleanup, deletes every key whose name starts with the
// namespace or with its hash-tagged forms "{namespace}" and, for a
// partitioned namespace, "{namespace:p<k>}" (on a cluster, on every
// master). Call it after [Client] or [Cluster] so the deletion runs
// before the client closes.
func Namespace(t testing.TB, c redis.UniversalClient) string {
	t.Helper()
	var b [8]byte
	_, _ = rand.Read(b[:])
	ns := "test-" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := DeleteKeys(ctx, c, ns+"*", "{"+ns+"}*", "{"+ns+":p*"); err != nil {
			t.Errorf("redistest: delete keys of namespace %s: %v", ns, err)
		}
	})
	return ns
}

// DeleteKeys deletes the keys that match any of the glob patterns, with SCAN
// (on a cluster, on every master). It never runs FLUSHDB or FLUSHALL.
func DeleteKeys(ctx context.Context, c redis.UniversalClient, patterns ...string) error {
	del := func(ctx context.Context, node redis.Cmdable) error {
		for _, p := range patterns {
			iter := node.Scan(ctx, 0, p, 500).Iterator()
			var batch []string
			for iter.Next(ctx) {
				batch = append(batch, iter.Val())
			}
			if err := iter.Err(); err != nil {
				return err
			}
			// One key per DEL: on a cluster, keys of different patterns may
			// live in different slots.
			for _, k := range batch {
				if err := node.Del(ctx, k).Err(); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if cc, ok := c.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error { return del(ctx, node) })
	}
	return del(ctx, c)
}

// Keys returns the names of the keys that match the glob pattern, with SCAN
// (on a cluster, on every master).
func Keys(ctx context.Context, c redis.UniversalClient, pattern string) ([]string, error) {
	var (
		kmu  sync.Mutex
		keys []string
	)
	scan := func(ctx context.Context, node redis.Cmdable) error {
		iter := node.Scan(ctx, 0, pattern, 500).Iterator()
		for iter.Next(ctx) {
			kmu.Lock()
			keys = append(keys, iter.Val())
			kmu.Unlock()
		}
		return iter.Err()
	}
	var err error
	if cc, ok := c.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error { return scan(ctx, node) })
	} else {
		err = scan(ctx, c)
	}
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", pattern, err)
	}
	return keys, nil
}
