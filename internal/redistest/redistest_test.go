package redistest_test

import (
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pyoco/pyoco/internal/redistest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(redistest.Runner(m))
}

func TestClientNamespaceCleanup(t *testing.T) {
	t.Parallel()
	for name, newClient := range map[string]func(testing.TB) redis.UniversalClient{
		"Single":  redistest.Client,
		"Cluster": redistest.Cluster,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := newClient(t)
			var ns string
			t.Run("Writes", func(t *testing.T) {
				ns = redistest.Namespace(t, c)
				require.Regexp(t, `^test-[0-9a-f]{16}$`, ns)
				require.NoError(t, c.Set(t.Context(), "{"+ns+"}:a", "1", 0).Err())
				require.NoError(t, c.Set(t.Context(), ns+":b", "1", 0).Err())
				keys, err := redistest.Keys(t.Context(), c, "*"+ns+"*")
				require.NoError(t, err)
				require.Len(t, keys, 2)
			})
			// The subtest's cleanup deleted its namespace's keys.
			keys, err := redistest.Keys(t.Context(), c, "*"+ns+"*")
			require.NoError(t, err)
			require.Empty(t, keys)
		})
	}
}

func TestServerStopRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	require.NotContains(t, srv.Addr(), ":6379")
	c := redis.NewClient(srv.Options())
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, c.Ping(t.Context()).Err())
	srv.Stop(t)
	require.Error(t, c.Ping(t.Context()).Err())
	srv.Restart(t)
	require.NoError(t, c.Ping(t.Context()).Err())
}
