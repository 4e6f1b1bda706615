package engine_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/pyoco/pyoco/engine"
)

// runEnds sums, from reader, the pyoco_runs_total points of the terminal
// statuses and the count of pyoco_run_duration_seconds.
func runEnds(t *testing.T, reader *sdkmetric.ManualReader) (counted int64, durations uint64) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch m.Name {
			case engine.MetricRuns:
				for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
					st, _ := dp.Attributes.Value(engine.LabelStatus)
					if engine.RunStatus(st.AsString()).Terminal() {
						counted += dp.Value
					}
				}
			case engine.MetricRunDuration:
				for _, dp := range m.Data.(metricdata.Histogram[float64]).DataPoints {
					durations += dp.Count
				}
			}
		}
	}
	return counted, durations
}

// TestExecuteStaleFinishCountsNothing: a worker whose RunFinish is refused
// because another worker took the run over and finished it (the fence's
// "owner lost", or the other's finish landing first) finds the run terminal
// on re-reading it; that finish is not its own, so it changes no metric and
// sets no result on its run span. A finish whose reply was lost and whose
// retry is refused as "already terminal" is its own, and counts once.
func TestExecuteStaleFinishCountsNothing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		finishErr func(s *faultStore, p *engine.RunFinishParams, call int32) error
		ownFinish bool
	}{
		{
			name: "TakenOverAndFinished",
			finishErr: func(s *faultStore, p *engine.RunFinishParams, _ int32) error {
				// Worker B reclaims the run, starts it again and finishes it;
				// then A's finish meets the fence.
				ctx := context.Background()
				_, err := s.Store.RunStart(ctx, &engine.RunStartParams{RunID: p.RunID, WorkerID: "B"})
				require.NoError(t, err)
				_, err = s.Store.RunFinish(ctx, &engine.RunFinishParams{RunID: p.RunID, Status: engine.RunCompleted, At: time.Now().UTC().Add(time.Second)})
				require.NoError(t, err)
				return fmt.Errorf("finish: owner lost: the run was taken over (attempt 2): %w", engine.ErrConflict)
			},
		},
		{
			name: "FailedByReclaimer",
			finishErr: func(s *faultStore, p *engine.RunFinishParams, _ int32) error {
				// Another worker gave up on the run (same attempt) and failed it.
				_, err := s.Store.RunFinish(context.Background(), &engine.RunFinishParams{RunID: p.RunID, Status: engine.RunFailed,
					At: time.Now().UTC().Add(time.Second), Error: "run failed: taken over 3 times"})
				require.NoError(t, err)
				return nil // the store refuses A's finish as already terminal
			},
		},
		{
			name: "OwnRetryAfterLostReply",
			finishErr: func(s *faultStore, p *engine.RunFinishParams, call int32) error {
				if call == 1 {
					// The write lands, the reply is lost.
					_, err := s.Store.RunFinish(context.Background(), p)
					require.NoError(t, err)
					return fmt.Errorf("finish: connection reset: %w", engine.ErrUnavailable)
				}
				return nil // the retry is refused as already terminal
			},
			ownFinish: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			reader := sdkmetric.NewManualReader()
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
			t.Cleanup(func() {
				require.NoError(t, tp.Shutdown(context.Background()))
				require.NoError(t, mp.Shutdown(context.Background()))
			})
			b := setupFault(t, &engine.Config{WorkerID: "A", TracerProvider: tp, MeterProvider: mp})
			run := b.submit(t, "version: 1\nflow: {name: stale}\ntasks:\n  a: {use: noop}\n")
			var calls atomic.Int32
			b.store.finish = func(ctx context.Context, p *engine.RunFinishParams) (*engine.Run, error) {
				if err := tc.finishErr(b.store, p, calls.Add(1)); err != nil {
					return nil, err
				}
				return b.store.Store.RunFinish(ctx, p) // refused: terminal
			}
			final, err := b.eng.Execute(context.Background(), &engine.ExecuteParams{RunID: run.ID})
			if errors.Is(err, engine.ErrConflict) {
				// A run another worker started since is not this
				// execution's: it stops with ErrConflict (the worker then
				// releases the lease), reporting the stored run.
				require.NotEqual(t, "OwnRetryAfterLostReply", tc.name)
				final, err = b.store.RunGet(context.Background(), run.ID)
			}
			require.NoError(t, err)

			counted, durations := runEnds(t, reader)
			var result any
			for _, s := range rec.Ended() {
				if s.Name() == "run stale" {
					result = attrMap(s.Attributes())[engine.AttrRunStatus]
				}
			}
			if tc.ownFinish {
				require.Equal(t, engine.RunCompleted, final.Status)
				require.Equal(t, int64(1), counted, "its own finish counts once")
				require.Equal(t, uint64(1), durations)
				require.Equal(t, "COMPLETED", result)
				return
			}
			require.True(t, final.Status.Terminal())
			require.Zero(t, counted, "a stale worker counts no run end")
			require.Zero(t, durations, "a stale worker records no run duration")
			require.Nil(t, result, "a stale worker sets no run result on its span")
		})
	}
}
