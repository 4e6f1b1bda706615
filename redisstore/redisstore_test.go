package redisstore_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/storetest"
	"github.com/pyoco/pyoco/internal/redistest"
	"github.com/pyoco/pyoco/redisstore"
)

func TestMain(m *testing.M) {
	// go-redis logs every failed dial; TestUnavailable makes many on purpose.
	redis.SetLogger(quietLogger{})
	goleak.VerifyTestMain(redistest.Runner(m))
}

// quietLogger discards go-redis's internal log lines.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// backends are the Redis deployments every test runs against.
var backends = []struct {
	name   string
	client func(testing.TB) redis.UniversalClient
}{
	{"Single", redistest.Client},
	{"Cluster", redistest.Cluster},
}

// newStore returns a Store on c in a fresh namespace of t (returned too),
// with cfg (nil for defaults; its Namespace is overwritten).
func newStore(t testing.TB, c redis.UniversalClient, cfg *redisstore.Config) (*redisstore.Store, string) {
	t.Helper()
	if cfg == nil {
		cfg = &redisstore.Config{}
	}
	cfg.Namespace = redistest.Namespace(t, c)
	s, err := redisstore.New(c, cfg)
	require.NoError(t, err)
	return s, cfg.Namespace
}

// suiteBackends are the deployments and partition counts the shared
// store suites run against: every backend with one partition, and the
// Cluster with six (spread over its three masters).
var suiteBackends = []struct {
	name       string
	client     func(testing.TB) redis.UniversalClient
	partitions int
}{
	{"Single", redistest.Client, 1},
	{"Cluster", redistest.Cluster, 1},
	{"Cluster/Partitions6", redistest.Cluster, 6},
}

func TestStore(t *testing.T) {
	t.Parallel()
	for _, be := range suiteBackends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			c := be.client(t)
			storetest.Run(t, func(t *testing.T) engine.Store {
				s, _ := newStore(t, c, &redisstore.Config{Partitions: be.partitions})
				return s
			})
		})
	}
}
