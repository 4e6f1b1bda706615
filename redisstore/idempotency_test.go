package redisstore_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
)

func TestIdempotency(t *testing.T) {
	t.Parallel()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s, _ := newStore(t, be.client(t), nil)
			var is engine.IdempotencyStore = s

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

			_, err = is.IdempotencyGetOrSet(ctx, "", "run-e", time.Hour)
			require.Error(t, err)

			// Expiry.
			got, err = is.IdempotencyGetOrSet(ctx, "short", "run-1", 150*time.Millisecond)
			require.NoError(t, err)
			require.Empty(t, got)
			require.Eventually(t, func() bool {
				got, err := is.IdempotencyGetOrSet(ctx, "short", "run-2", time.Hour)
				require.NoError(t, err)
				return got == ""
			}, 5*time.Second, 50*time.Millisecond, "an expired key binds again")
			got, err = is.IdempotencyGetOrSet(ctx, "short", "run-3", time.Hour)
			require.NoError(t, err)
			require.Equal(t, "run-2", got)

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
	}
}

// TestIdempotencyConcurrent submits the same key from many goroutines (as
// concurrent API servers would): exactly one binds it, every other sees its
// run.
func TestIdempotencyConcurrent(t *testing.T) {
	t.Parallel()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s1, _ := newStore(t, be.client(t), nil)
			const n = 32
			var wg sync.WaitGroup
			res := make([]string, n)
			errs := make([]error, n)
			for i := range n {
				wg.Go(func() {
					res[i], errs[i] = s1.IdempotencyGetOrSet(ctx, "same", fmt.Sprintf("run-%d", i), time.Hour)
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
	}
}
