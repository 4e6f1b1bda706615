package redisstore_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/storetest"
	"github.com/pyoco/pyoco/internal/redistest"
)

// TestScheduleKey pins the claim key of docs/redis.md: one hash per
// schedule in the namespace's hash tag, invisible to other namespaces.
func TestScheduleKey(t *testing.T) {
	t.Parallel()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			c := be.client(t)
			a, nsA := newStore(t, c, nil)
			b, _ := newStore(t, c, nil)
			tick := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
			r := storetest.NewTestRun("nightly", "x")
			require.NoError(t, a.ScheduleClaim(ctx, &engine.ScheduleClaimParams{Flow: "nightly", Name: "often", Tick: tick, Run: r}))

			key := "{" + nsA + "}:schedule:nightly:often"
			got, err := c.HGetAll(ctx, key).Result()
			require.NoError(t, err)
			require.Equal(t, map[string]string{
				"tick":   "1772359200000",
				"run_id": r.ID,
				"run_at": strconv.FormatInt(r.CreatedAt.UnixMilli(), 10),
			}, got)
			ttl, err := c.PTTL(ctx, key).Result()
			require.NoError(t, err)
			require.Equal(t, time.Duration(-1), ttl, "the claim state does not expire")
			keys, err := redistest.Keys(ctx, c, "*"+nsA+"*schedule*")
			require.NoError(t, err)
			require.Equal(t, []string{key}, keys)

			_, err = b.ScheduleGet(ctx, "nightly", "often")
			require.ErrorIs(t, err, engine.ErrNotFound)
			// b's first claim of the same tick is its own.
			require.NoError(t, b.ScheduleClaim(ctx, &engine.ScheduleClaimParams{Flow: "nightly", Name: "often", Tick: tick}))
		})
	}
}
