package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
)

// RunIdempotency runs the conformance cases of [engine.IdempotencyStore]
// against the stores newStore returns (fresh and empty per subtest, as for
// [Run]): get-or-set binds once and returns the earlier binding (the API's
// "<run id> <request hash>") to later callers; concurrent calls with one
// key bind it exactly once; release is a compare-and-delete; a binding
// expires after its TTL.
func RunIdempotency(t *testing.T, newStore func(t *testing.T) engine.IdempotencyStore) {
	t.Helper()
	t.Run("GetOrSet", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		is := newStore(t)
		got, err := is.IdempotencyGetOrSet(ctx, "k1", "run-a", time.Hour)
		require.NoError(t, err)
		require.Empty(t, got, "first use binds")
		got, err = is.IdempotencyGetOrSet(ctx, "k1", "run-b", time.Hour)
		require.NoError(t, err)
		require.Equal(t, "run-a", got, "a retry returns the first run")
		got, err = is.IdempotencyGetOrSet(ctx, "k2", "run-c", time.Hour)
		require.NoError(t, err)
		require.Empty(t, got, "keys are independent")
		got, err = is.IdempotencyGetOrSet(ctx, "odd key: {x} \x01", "run-d", time.Hour)
		require.NoError(t, err)
		require.Empty(t, got)
		// The value is opaque: the API binds the run and its request hash.
		const binding = "0190a0b0-0000-7000-8000-000000000001 9f86d081884c7d65"
		got, err = is.IdempotencyGetOrSet(ctx, "k3", binding, time.Hour)
		require.NoError(t, err)
		require.Empty(t, got)
		got, err = is.IdempotencyGetOrSet(ctx, "k3", "other other", time.Hour)
		require.NoError(t, err)
		require.Equal(t, binding, got, "the earlier binding, request hash included")
	})
	t.Run("Concurrent", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		is := newStore(t)
		const n = 32
		var wg sync.WaitGroup
		res := make([]string, n)
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				res[i], errs[i] = is.IdempotencyGetOrSet(ctx, "same", fmt.Sprintf("run-%d", i), time.Hour)
			})
		}
		wg.Wait()
		winner := ""
		for i := range n {
			require.NoError(t, errs[i])
			if res[i] == "" {
				require.Empty(t, winner, "two calls bound the key")
				winner = fmt.Sprintf("run-%d", i)
			}
		}
		require.NotEmpty(t, winner)
		for i := range n {
			if res[i] != "" {
				require.Equal(t, winner, res[i])
			}
		}
	})
	t.Run("Release", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		is := newStore(t)
		got, err := is.IdempotencyGetOrSet(ctx, "k1", "run-a", time.Hour)
		require.NoError(t, err)
		require.Empty(t, got)
		// Release is a compare-and-delete: another run's binding stays.
		require.NoError(t, is.IdempotencyRelease(ctx, "k1", "run-b"))
		got, err = is.IdempotencyGetOrSet(ctx, "k1", "run-x", time.Hour)
		require.NoError(t, err)
		require.Equal(t, "run-a", got, "a release for another run leaves the binding")
		require.NoError(t, is.IdempotencyRelease(ctx, "k1", "run-a"))
		got, err = is.IdempotencyGetOrSet(ctx, "k1", "run-x", time.Hour)
		require.NoError(t, err)
		require.Empty(t, got, "released: the key binds again")
		require.NoError(t, is.IdempotencyRelease(ctx, "never-bound", "run-z"))
	})
	t.Run("Expiry", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		is := newStore(t)
		got, err := is.IdempotencyGetOrSet(ctx, "short", "run-1", 150*time.Millisecond)
		require.NoError(t, err)
		require.Empty(t, got)
		got, err = is.IdempotencyGetOrSet(ctx, "short", "run-0", time.Hour)
		require.NoError(t, err)
		require.Equal(t, "run-1", got, "bound until the TTL passes")
		require.Eventually(t, func() bool {
			got, err := is.IdempotencyGetOrSet(ctx, "short", "run-2", time.Hour)
			require.NoError(t, err)
			return got == ""
		}, 5*time.Second, 50*time.Millisecond, "an expired key binds again")
		got, err = is.IdempotencyGetOrSet(ctx, "short", "run-3", time.Hour)
		require.NoError(t, err)
		require.Equal(t, "run-2", got)
	})
}
