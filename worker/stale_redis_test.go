package worker_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/internal/redistest"
	"github.com/pyoco/pyoco/redisstore"
)

// TestRedisStaleFinishCountsNothing: worker A executes a run on a real
// Redis; while its last task still runs, B takes the lease over, starts the
// run again and finishes it. A's RunFinish is then refused by the fence
// ("owner lost") and A finds the run COMPLETED: A's metrics record no run
// end (pyoco_runs_total of a terminal status, pyoco_run_duration_seconds),
// so cluster totals do not exceed the runs.
func TestRedisStaleFinishCountsNothing(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c := redistest.Client(t)
	ns := redistest.Namespace(t, c)
	storeA, err := redisstore.New(c, &redisstore.Config{Namespace: ns})
	require.NoError(t, err)
	storeB, err := redisstore.New(c, &redisstore.Config{Namespace: ns})
	require.NoError(t, err)
	b := setup(t)
	f, err := engine.LoadFlow("w.yaml", []byte("version: 1\nflow:\n  name: waits\ntasks:\n  w: {use: test/wait}\n"), b.reg)
	require.NoError(t, err)
	sub, err := engine.New(storeB, b.reg, &engine.Config{WorkerID: "submitter"})
	require.NoError(t, err)
	r, err := sub.Submit(ctx, &engine.SubmitParams{Flow: f})
	require.NoError(t, err)

	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { require.NoError(t, mp.Shutdown(context.Background())) })
	engA, err := engine.New(storeA, b.reg, &engine.Config{WorkerID: "A", MeterProvider: mp})
	require.NoError(t, err)
	la, err := storeA.QueuePop(ctx, &engine.QueuePopParams{WorkerID: "A", Block: 5 * time.Second})
	require.NoError(t, err)
	require.NotNil(t, la)
	done := make(chan error, 1)
	release := sync.OnceFunc(func() { close(b.release) })
	go func() {
		_, err := engA.Execute(ctx, &engine.ExecuteParams{RunID: la.RunID, Lease: la})
		done <- err
	}()
	defer func() {
		// Also on a failed check: A's execution ends before the test does.
		release()
		if done != nil {
			<-done
		}
	}()
	require.Eventually(t, func() bool { return b.calledTimes(r.ID, "w") == 1 }, 30*time.Second, 10*time.Millisecond)

	// B takes the run over by force (min idle 0), starts and finishes it.
	ls, err := storeB.QueueReclaim(ctx, &engine.QueueReclaimParams{WorkerID: "B", MinIdle: 0, Count: 10})
	require.NoError(t, err)
	require.Len(t, ls, 1)
	cb := ctx
	started, err := storeB.RunStart(cb, &engine.RunStartParams{RunID: r.ID, WorkerID: "B", At: time.Now().UTC(), Lease: ls[0]})
	require.NoError(t, err)
	require.Equal(t, 2, started.Attempt)
	now := time.Now().UTC()
	require.NoError(t, storeB.TaskUpdate(cb, &engine.TaskUpdateParams{RunID: r.ID, Task: "w", Status: engine.TaskRunning, StartedAt: now, RunAttempt: 2}))
	require.NoError(t, storeB.TaskUpdate(cb, &engine.TaskUpdateParams{RunID: r.ID, Task: "w", Status: engine.TaskSucceeded, EndedAt: now, Output: []byte(`"B"`), RunAttempt: 2}))
	_, err = storeB.RunFinish(cb, &engine.RunFinishParams{RunID: r.ID, Status: engine.RunCompleted, At: now, RunAttempt: 2, Lease: ls[0]})
	require.NoError(t, err)

	// A's task returns; its finish meets the fence.
	release()
	err = <-done
	done = nil
	if err != nil {
		// Taken over since: A's execution stops with ErrConflict.
		require.ErrorIs(t, err, engine.ErrConflict, "A stops: the run is B's")
	}
	got, err := storeB.RunGet(ctx, r.ID)
	require.NoError(t, err)
	require.Equal(t, engine.RunCompleted, got.Status)
	require.Equal(t, "B", got.WorkerID)
	require.JSONEq(t, `"B"`, string(got.Tasks["w"].Output), "A's result was not written")

	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	var ends int64
	var durations uint64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch m.Name {
			case engine.MetricRuns:
				for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
					st, _ := dp.Attributes.Value(engine.LabelStatus)
					if engine.RunStatus(st.AsString()).Terminal() {
						ends += dp.Value
					}
				}
			case engine.MetricRunDuration:
				for _, dp := range m.Data.(metricdata.Histogram[float64]).DataPoints {
					durations += dp.Count
				}
			}
		}
	}
	require.Zero(t, ends, "the stale worker A counts no run end")
	require.Zero(t, durations, "the stale worker A records no run duration")
}
