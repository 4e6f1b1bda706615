package redisstore_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/redisstore"
	"github.com/pyoco/pyoco/webhooks/delivery"
	"github.com/pyoco/pyoco/webhooks/delivery/deliverytest"
)

// The webhook delivery log and event read follow the shared suite (the
// in-memory store runs the same).
func TestWebhookStore(t *testing.T) {
	t.Parallel()
	for _, be := range suiteBackends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			c := be.client(t)
			deliverytest.Run(t, func(t *testing.T) deliverytest.Stores {
				s, _ := newStore(t, c, &redisstore.Config{Partitions: be.partitions})
				return deliverytest.Stores{Deliveries: s, Runs: s}
			})
		})
	}
}

// A read without a consumer is refused by Redis (the in-memory store has
// no consumers to name).
func TestWebhookEventReadArgs(t *testing.T) {
	t.Parallel()
	for _, be := range suiteBackends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s, _ := newStore(t, be.client(t), &redisstore.Config{Partitions: be.partitions})
			require.NoError(t, s.WebhookEventInit(ctx, "ep1"))
			_, err := s.WebhookEventRead(ctx, &delivery.EventReadParams{})
			require.Error(t, err)
		})
	}
}

// Events trimmed from the run-events stream before an endpoint's group
// read them are reported once, with their number, by the next read; the
// groups of two endpoints are independent.
func TestWebhookEventReadReportsTrimmedEvents(t *testing.T) {
	t.Parallel()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			c := be.client(t)
			s, ns := newStore(t, c, nil)
			require.NoError(t, s.WebhookEventInit(ctx, "ep1"))
			require.NoError(t, s.WebhookEventInit(ctx, "ep2"))
			finish := func() {
				r := &engine.Run{ID: engine.NewRunID(), FlowName: "etl", Status: engine.RunPending, Tasks: map[string]*engine.TaskState{}}
				require.NoError(t, s.RunCreate(ctx, r))
				_, err := s.RunFinish(ctx, &engine.RunFinishParams{RunID: r.ID, Status: engine.RunFailed})
				require.NoError(t, err)
			}
			read := func(group string) *delivery.EventReadParams {
				p := &delivery.EventReadParams{Consumer: "a", Group: group, Count: 100}
				_, err := s.WebhookEventRead(ctx, p)
				require.NoError(t, err)
				return p
			}
			finish()
			require.Zero(t, read("ep2").Lost, "ep2 read its events")
			for range 3 {
				finish()
			}
			// Servers down, workers busy: the stream is trimmed past ep1's
			// position (all 8 of its events) and ep2's (6).
			require.NoError(t, c.XTrimMaxLen(ctx, "{"+ns+"}:events", 0).Err())
			finish()
			p1 := &delivery.EventReadParams{Consumer: "a", Group: "ep1", Count: 100}
			evs, err := s.WebhookEventRead(ctx, p1)
			require.NoError(t, err)
			require.Len(t, evs, 2)
			require.Equal(t, int64(8), p1.Lost)
			require.Zero(t, read("ep1").Lost, "reported once")
			require.Equal(t, int64(6), read("ep2").Lost)
			require.NoError(t, s.WebhookEventInit(ctx, "ep3"))
			require.Zero(t, read("ep3").Lost, "a new group starts at the end")
		})
	}
}
