package api_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/internal/redistest"
	"github.com/pyoco/pyoco/redisstore"
)

func redisStore(t *testing.T) engine.Store {
	c := redistest.Client(t)
	s, err := redisstore.New(c, &redisstore.Config{Namespace: redistest.Namespace(t, c)})
	require.NoError(t, err)
	return s
}

// TestRedisstore runs the API suite on redisstore against a real
// redis-server (internal/redistest).
func TestRedisstore(t *testing.T) {
	t.Parallel()
	runSuite(t, inProcess(redisStore))
}
