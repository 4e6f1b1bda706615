package memstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/memstore"
	"github.com/pyoco/pyoco/engine/storetest"
	"github.com/pyoco/pyoco/webhooks/delivery/deliverytest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestStore(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) engine.Store { return memstore.New() })
}

func TestContextDone(t *testing.T) {
	t.Parallel()
	s := memstore.New()
	r := storetest.NewTestRun("hello", "a")
	require.NoError(t, s.RunCreate(t.Context(), r))

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	errs := []error{
		s.RunCreate(ctx, storetest.NewTestRun("hello", "a")),
		s.TaskUpdate(ctx, &engine.TaskUpdateParams{RunID: r.ID, Task: "a", Status: engine.TaskRunning}),
		s.LogAppend(ctx, r.ID, []engine.LogEntry{{Task: "a"}}),
	}
	_, err := s.RunGet(ctx, r.ID)
	errs = append(errs, err)
	_, err = s.RunStart(ctx, &engine.RunStartParams{RunID: r.ID, WorkerID: "w1"})
	errs = append(errs, err)
	_, err = s.RunFinish(ctx, &engine.RunFinishParams{RunID: r.ID, Status: engine.RunCompleted})
	errs = append(errs, err)
	_, err = s.RunCancel(ctx, &engine.RunCancelParams{RunID: r.ID})
	errs = append(errs, err)
	_, err = s.RunList(ctx, &engine.RunListParams{})
	errs = append(errs, err)
	_, err = s.LogList(ctx, &engine.LogListParams{RunID: r.ID})
	errs = append(errs, err)
	_, err = s.EventList(ctx, &engine.EventListParams{})
	errs = append(errs, err)
	for i, err := range errs {
		require.ErrorIs(t, err, context.Canceled, "call %d", i)
	}
	require.Equal(t, engine.RunPending, mustGet(t, s, r.ID).Status, "nothing changed")

	// A notification for a done ctx is closed at once.
	ch, err := s.RunCancelNotify(ctx, r.ID)
	require.NoError(t, err)
	_, open := <-ch
	require.False(t, open)
}

func TestZeroTimesMeanNow(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := memstore.New()
	r := storetest.NewTestRun("hello", "a")
	require.NoError(t, s.RunCreate(ctx, r))
	before := time.Now()
	got, err := s.RunStart(ctx, &engine.RunStartParams{RunID: r.ID, WorkerID: "w1"})
	require.NoError(t, err)
	require.False(t, got.StartedAt.Before(before))
	got, err = s.RunFinish(ctx, &engine.RunFinishParams{RunID: r.ID, Status: engine.RunCompleted})
	require.NoError(t, err)
	require.False(t, got.EndedAt.Before(got.StartedAt))
}

func mustGet(t *testing.T, s *memstore.Store, id string) *engine.Run {
	t.Helper()
	r, err := s.RunGet(t.Context(), id)
	require.NoError(t, err)
	return r
}

func TestQueue(t *testing.T) {
	t.Parallel()
	storetest.RunQueue(t, func(t *testing.T) engine.Store { return memstore.New() })
}

func TestSchedule(t *testing.T) {
	t.Parallel()
	storetest.RunSchedule(t, func(t *testing.T) engine.Store { return memstore.New() })
}

func TestIdempotency(t *testing.T) {
	t.Parallel()
	storetest.RunIdempotency(t, func(t *testing.T) engine.IdempotencyStore { return memstore.New() })
}

func TestIdempotencyStandalone(t *testing.T) {
	t.Parallel()
	storetest.RunIdempotency(t, func(t *testing.T) engine.IdempotencyStore { return memstore.NewIdempotency() })
}

func TestWebhookStore(t *testing.T) {
	t.Parallel()
	deliverytest.Run(t, func(t *testing.T) deliverytest.Stores {
		ms := memstore.New()
		return deliverytest.Stores{Deliveries: memstore.NewWebhookStore(ms), Runs: ms}
	})
}
