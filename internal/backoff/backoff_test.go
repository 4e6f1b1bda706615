package backoff

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

func TestNextDoublesWithinBounds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		b        Backoff
		min, max time.Duration
	}{
		{name: "defaults", min: DefaultMin, max: DefaultMax},
		{name: "custom", b: Backoff{Min: 100 * time.Millisecond, Max: 2 * time.Second}, min: 100 * time.Millisecond, max: 2 * time.Second},
		{name: "max below min", b: Backoff{Min: time.Second, Max: time.Millisecond}, min: time.Second, max: time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := tt.b
			step := tt.min
			for range 20 {
				d := b.Next()
				require.GreaterOrEqual(t, d, step/2)
				require.LessOrEqual(t, d, step)
				step = min(step*2, tt.max)
			}
			require.True(t, b.Failures())
			b.Reset()
			require.False(t, b.Failures())
			d := b.Next()
			require.GreaterOrEqual(t, d, tt.min/2)
			require.LessOrEqual(t, d, tt.min)
		})
	}
}

func TestNextJitters(t *testing.T) {
	t.Parallel()
	seen := map[time.Duration]bool{}
	for range 50 {
		var b Backoff
		seen[b.Next()] = true
	}
	require.Greater(t, len(seen), 1, "every first wait was the same: no jitter")
}

func TestSleep(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := Backoff{Min: time.Second, Max: time.Second}
		start := time.Now()
		require.True(t, b.Sleep(t.Context()))
		el := time.Since(start)
		require.GreaterOrEqual(t, el, 500*time.Millisecond)
		require.LessOrEqual(t, el, time.Second)
	})
}

func TestSleepEndsWithContext(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
		defer cancel()
		b := Backoff{Min: time.Hour, Max: time.Hour}
		start := time.Now()
		require.False(t, b.Sleep(ctx))
		require.Equal(t, 10*time.Millisecond, time.Since(start))
		require.False(t, Wait(ctx, 0), "an ended context")
	})
}
