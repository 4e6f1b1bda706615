// Package redistest gives tests a real, private Redis: [Client] returns a
// client of one redis-server that the test binary starts on a free loopback
// port (started once, on first use), [Cluster] a client of a 3-master Redis
// Cluster started the same way, and [Namespace] a random key namespace per
// test whose keys are deleted when the test ends. So every test may run with
// t.Parallel() and none ever touches a shared instance: the helper never
// uses port 6379 and never runs FLUSHDB or FLUSHALL.
//
// A test binary that uses it wraps its TestMain so the servers are stopped
// (killed and reaped) when the tests end:
//
//	func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }
//
// or, with goleak:
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(redistest.Runner(m)) }
//
// On Linux the servers also get SIGKILL if the test binary dies without
// reaching that cleanup.
//
// Environment:
//
//   - PYOCO_TEST_REDIS_URL (redis:// or rediss://): [Client] uses that
//     Redis instead of starting one. Namespaces keep tests apart.
//   - PYOCO_TEST_REDIS_CLUSTER (comma-separated host:port seeds): [Cluster]
//     uses that cluster instead of starting one.
//
// Without them, redis-server and redis-cli (for the cluster) must be on PATH;
// if they are not, the test fails with that reason (it does not skip).
//
// [StartServer] starts a dedicated server that a test may stop and restart
// (outage tests).
//
// redistest imports go-redis and the standard library only; only _test.go
// files may import it.
package redistest
