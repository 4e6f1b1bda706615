package schedule_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/memstore"
	"github.com/pyoco/pyoco/schedule"
)

// testBundle is one test's store, engine, flow and metrics.
type testBundle struct {
	t      *testing.T
	store  *memstore.Store
	eng    *engine.Engine
	flow   *engine.Flow
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
}

// setup loads a flow named "tick" whose flow.schedule is sched (YAML flow
// style), on a fresh memory store.
func setup(t *testing.T, sched string) *testBundle {
	t.Helper()
	src := fmt.Sprintf("version: 1\nflow:\n  name: tick\n  defaults: {who: world, size: 1}\n  schedule: %s\ntasks: {a: {use: noop}}\n", sched)
	f, err := engine.LoadFlow("tick.yaml", []byte(src), nil)
	require.NoError(t, err)
	store := memstore.New()
	reg := engine.NewRegistry()
	eng, err := engine.New(store, reg, &engine.Config{WorkerID: "test"})
	require.NoError(t, err)
	reader := sdkmetric.NewManualReader()
	return &testBundle{t: t, store: store, eng: eng, flow: f, reader: reader, mp: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))}
}

// start runs a new Runner of the bundle's flow until the returned stop is
// called (stop waits for Run to return).
func (b *testBundle) start(cfg *schedule.Config) (*schedule.Runner, func()) {
	b.t.Helper()
	if cfg == nil {
		cfg = &schedule.Config{}
	}
	if cfg.MeterProvider == nil {
		cfg.MeterProvider = b.mp
	}
	r, err := schedule.New(b.eng, []*engine.Flow{b.flow}, cfg)
	require.NoError(b.t, err)
	ctx, cancel := context.WithCancel(b.t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { require.NoError(b.t, r.Run(ctx)) })
	return r, func() { cancel(); wg.Wait() }
}

// runs returns the runs tagged tag, oldest first.
func (b *testBundle) runs(tag string) []*engine.Run {
	b.t.Helper()
	page, err := b.store.RunList(b.t.Context(), &engine.RunListParams{Tag: tag, Limit: 500})
	require.NoError(b.t, err)
	out := page.Runs
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out
}

// counts returns pyoco_schedule_runs_total of flow tick by outcome.
func (b *testBundle) counts() map[string]int64 {
	b.t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(b.t, b.reader.Collect(b.t.Context(), &rm))
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != engine.MetricScheduleRuns {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				flow, _ := dp.Attributes.Value(engine.LabelFlow)
				require.Equal(b.t, "tick", flow.AsString())
				o, _ := dp.Attributes.Value("outcome")
				out[o.AsString()] += dp.Value
			}
		}
	}
	return out
}

// synctest's clock starts at 2000-01-01 00:00:00 UTC.
var epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func TestRunnerEvery(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := setup(t, "[{every: 1m, params: {size: 5}}, {name: hourly, cron: '0 * * * *'}]")
		_, stop := b.start(nil)
		require.Equal(t, map[string]int64{"submitted": 0, "skipped": 0, "error": 0}, b.counts(), "series start at 0")
		time.Sleep(3*time.Minute + 30*time.Second)
		synctest.Wait()
		runs := b.runs("schedule:0")
		require.Len(t, runs, 3)
		for i, r := range runs {
			require.Equal(t, epoch.Add(time.Duration(i+1)*time.Minute), r.CreatedAt, "run %d is submitted at its tick", i)
			require.Equal(t, map[string]any{"who": "world", "size": int64(5)}, r.Params, "schedule params over the flow defaults")
			require.Equal(t, []string{"schedule:0"}, r.Tags)
			require.Equal(t, engine.RunPending, r.Status)
		}
		require.Empty(t, b.runs("schedule:hourly"))
		require.Equal(t, int64(3), b.counts()["submitted"])

		st, err := b.store.ScheduleGet(t.Context(), "tick", "0")
		require.NoError(t, err)
		require.Equal(t, epoch.Add(3*time.Minute), st.LastTick)
		require.Equal(t, runs[2].ID, st.LastRunID)
		stop()
	})
}

func TestRunnerTwoRunnersOneRunPerTick(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := setup(t, "[{every: 1s}]")
		_, stop1 := b.start(nil)
		_, stop2 := b.start(nil)
		time.Sleep(20*time.Second + 500*time.Millisecond)
		synctest.Wait()
		stop1()
		stop2()
		runs := b.runs("schedule:0")
		require.Len(t, runs, 20)
		for i, r := range runs {
			require.Equal(t, epoch.Add(time.Duration(i+1)*time.Second), r.CreatedAt)
		}
		require.Equal(t, int64(20), b.counts()["submitted"], "the two runners' submits add up to one per tick")
	})
}

func TestRunnerCatchup(t *testing.T) {
	t.Parallel()
	tests := []struct {
		catchup string
		// ticks after the restart at 00:12:30: the catch-up runs' ticks
		// (in minutes), then 00:13's.
		want    []int
		skipped int64
	}{
		{"", []int{12, 13}, 9}, // one is the default
		{"one", []int{12, 13}, 9},
		{"none", []int{13}, 10},
		{"all", []int{3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13}, 0},
	}
	for _, tt := range tests {
		t.Run("catchup="+tt.catchup, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				sched := "[{every: 1m}]"
				if tt.catchup != "" {
					sched = "[{every: 1m, catchup: " + tt.catchup + "}]"
				}
				b := setup(t, sched)
				_, stop := b.start(nil)
				time.Sleep(2*time.Minute + 30*time.Second)
				synctest.Wait()
				stop()
				require.Len(t, b.runs("schedule:0"), 2)

				time.Sleep(10 * time.Minute) // every server is down
				_, stop = b.start(nil)
				time.Sleep(time.Minute)
				synctest.Wait()
				stop()

				runs := b.runs("schedule:0")[2:]
				var got []int
				for _, r := range runs {
					got = append(got, int(r.CreatedAt.Sub(epoch)/time.Minute))
				}
				// Catch-up runs are created at the restart (00:12:30), the
				// next one at its tick; compare by claimed tick instead.
				st, err := b.store.ScheduleGet(t.Context(), "tick", "0")
				require.NoError(t, err)
				require.Equal(t, epoch.Add(13*time.Minute), st.LastTick)
				require.Len(t, got, len(tt.want), "runs created at minutes %v", got)
				require.Equal(t, 13, got[len(got)-1])
				c := b.counts()
				require.Equal(t, int64(2+len(tt.want)), c["submitted"])
				require.Equal(t, tt.skipped, c["skipped"])
				require.Zero(t, c["error"])
			})
		})
	}
}

func TestRunnerScheduleList(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := setup(t, "[{every: 1m}, {name: paris, cron: '30 2 * * *', timezone: Europe/Paris, catchup: none}]")
		r, stop := b.start(nil)
		defer stop()
		list, err := r.ScheduleList(t.Context())
		require.NoError(t, err)
		require.Equal(t, []engine.ScheduleInfo{
			{Flow: "tick", Name: "0", Spec: "every 1m0s", Catchup: engine.CatchupOne, Tag: "schedule:0",
				NextFireTime: epoch.Add(time.Minute)},
			{Flow: "tick", Name: "paris", Spec: "30 2 * * *", Timezone: "Europe/Paris", Catchup: engine.CatchupNone, Tag: "schedule:paris",
				NextFireTime: time.Date(2000, 1, 1, 1, 30, 0, 0, time.UTC)},
		}, list)

		time.Sleep(90 * time.Second)
		synctest.Wait()
		list, err = r.ScheduleList(t.Context())
		require.NoError(t, err)
		runs := b.runs("schedule:0")
		require.Len(t, runs, 1)
		require.Equal(t, runs[0].ID, list[0].LastRunID)
		require.Equal(t, epoch.Add(time.Minute), list[0].LastRunTime)
		require.Equal(t, epoch.Add(time.Minute), list[0].LastTickTime)
		require.Equal(t, epoch.Add(2*time.Minute), list[0].NextFireTime)
	})
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, "[{every: 1m}]")
	_, err := schedule.New(nil, nil, nil)
	require.ErrorContains(t, err, "engine is required")
	_, err = schedule.New(b.eng, []*engine.Flow{b.flow, b.flow}, nil)
	require.ErrorContains(t, err, `two flows named "tick"`)
	_, err = schedule.New(b.eng, nil, &schedule.Config{PollInterval: -time.Second})
	require.ErrorContains(t, err, "PollInterval -1s: want a positive duration")
	r, err := schedule.New(b.eng, []*engine.Flow{b.flow}, nil)
	require.NoError(t, err)
	require.Equal(t, 1, r.Len())
}
