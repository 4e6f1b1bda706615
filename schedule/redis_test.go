package schedule_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.uber.org/goleak"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/internal/redistest"
	"github.com/pyoco/pyoco/redisstore"
	"github.com/pyoco/pyoco/schedule"
)

func TestMain(m *testing.M) {
	redis.SetLogger(quietLogger{}) // the outage makes go-redis log every failed dial
	goleak.VerifyTestMain(redistest.Runner(m))
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// TestRunnerRedisOutage runs a schedule on a real Redis with a clock the
// test moves: a tick due while Redis is down counts as an error and is
// claimed (once) when Redis is back.
func TestRunnerRedisOutage(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t, "--appendonly", "yes")
	opt := srv.Options()
	opt.MaxRetries = 1
	client := redis.NewClient(opt)
	t.Cleanup(func() { _ = client.Close() })
	store, err := redisstore.New(client, &redisstore.Config{Namespace: "sched"})
	require.NoError(t, err)
	eng, err := engine.New(store, engine.NewRegistry(), nil)
	require.NoError(t, err)
	f, err := engine.LoadFlow("tick.yaml", []byte("version: 1\nflow: {name: tick, schedule: [{every: 1m}]}\ntasks: {a: {use: noop}}\n"), nil)
	require.NoError(t, err)

	t0 := time.Date(2026, 3, 1, 10, 0, 30, 0, time.UTC)
	var mu sync.Mutex
	now := t0
	armed := make(chan struct{}) // closed when the runner first reads the clock
	var once sync.Once
	clock := func() time.Time { once.Do(func() { close(armed) }); mu.Lock(); defer mu.Unlock(); return now }
	setClock := func(t time.Time) { mu.Lock(); defer mu.Unlock(); now = t }
	reader := sdkmetric.NewManualReader()
	b := &testBundle{t: t, reader: reader}
	r, err := schedule.New(eng, []*engine.Flow{f}, &schedule.Config{NowFunc: clock, PollInterval: 5 * time.Millisecond,
		RetryInterval: 20 * time.Millisecond, MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { require.NoError(t, r.Run(ctx)) })
	t.Cleanup(func() { cancel(); wg.Wait() })

	lastTick := func() time.Time {
		st, err := store.ScheduleGet(t.Context(), "tick", "0")
		if err != nil {
			return time.Time{}
		}
		return st.LastTick
	}
	<-armed
	setClock(t0.Add(time.Minute)) // 10:01:30
	require.Eventually(t, func() bool { return lastTick().Equal(t0.Add(30 * time.Second)) }, 10*time.Second, 5*time.Millisecond)

	srv.Stop(t)
	setClock(t0.Add(2 * time.Minute)) // 10:02:30: the 10:02 tick is due
	// The clock moves on (a few ms per check, well before 10:03) so that
	// the retries come due.
	step := 0
	require.Eventually(t, func() bool {
		step++
		setClock(t0.Add(2*time.Minute + time.Duration(step)*10*time.Millisecond))
		return b.counts()["error"] >= 2
	}, 10*time.Second, 5*time.Millisecond, "failed claims count, and are retried")
	srv.Restart(t)
	require.Eventually(t, func() bool {
		step++
		setClock(t0.Add(2*time.Minute + time.Duration(step)*10*time.Millisecond))
		return lastTick().Equal(t0.Add(90 * time.Second))
	}, 10*time.Second, 5*time.Millisecond)

	page, err := store.RunList(t.Context(), &engine.RunListParams{Tag: "schedule:0"})
	require.NoError(t, err)
	require.Len(t, page.Runs, 2, "one run per tick, the one due during the outage included")
	require.Equal(t, int64(2), b.counts()["submitted"])
	require.Zero(t, b.counts()["skipped"])
}
