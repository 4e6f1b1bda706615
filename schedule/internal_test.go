package schedule

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
)

func loadSchedule(t *testing.T, entry string) *engine.Schedule {
	t.Helper()
	f, err := engine.LoadFlow("", []byte("version: 1\nflow: {name: x, schedule: ["+entry+"]}\ntasks: {a: {use: noop}}\n"), nil)
	require.NoError(t, err)
	return f.Schedules[0]
}

func TestDueTicks(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name, entry string
		after, upto time.Time
		keep        int
		want        []time.Time
		n           int
	}{
		{"every none due", "{every: 1m}", t0, t0.Add(59 * time.Second), 1, nil, 0},
		{"every exact tick", "{every: 1m}", t0, t0.Add(time.Minute), 1, []time.Time{t0.Add(time.Minute)}, 1},
		{"every keep last", "{every: 1m}", t0, t0.Add(10*time.Minute + time.Second), 3,
			[]time.Time{t0.Add(8 * time.Minute), t0.Add(9 * time.Minute), t0.Add(10 * time.Minute)}, 10},
		{"cron", "{cron: '*/15 * * * *'}", t0, t0.Add(time.Hour), 2,
			[]time.Time{t0.Add(45 * time.Minute), t0.Add(time.Hour)}, 4},
		// 200 days of minutes is past maxScan: the last ticks are still
		// exact, the count a lower bound.
		{"cron long outage", "{cron: '* * * * *'}", t0, t0.Add(200 * 24 * time.Hour), 2,
			[]time.Time{t0.Add(200*24*time.Hour - time.Minute), t0.Add(200 * 24 * time.Hour)}, maxScan},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, n := dueTicks(loadSchedule(t, tt.entry), tt.after, tt.upto, tt.keep)
			require.Equal(t, tt.want, got)
			require.Equal(t, tt.n, n)
		})
	}
}

func TestPlanNone(t *testing.T) {
	t.Parallel()
	s := loadSchedule(t, "{every: 1s, catchup: none}")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// On time: within half the interval.
	p := plan(s, t0, t0.Add(time.Second+100*time.Millisecond), DefaultOnTime)
	require.Equal(t, tickPlan{run: []time.Time{t0.Add(time.Second)}}, p)
	// Late: skipped, recorded at the latest tick.
	p = plan(s, t0, t0.Add(3*time.Second+600*time.Millisecond), DefaultOnTime)
	require.Equal(t, tickPlan{skipTo: t0.Add(3 * time.Second), skipped: 3}, p)
}
