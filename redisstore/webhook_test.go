package redisstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/webhooks/delivery"
)

// The webhook delivery log's scripts: create is idempotent, a claim is
// exclusive while its lease holds, an update needs the claim, finished
// deliveries expire with the retention, retry revives them.
func TestWebhookDeliveryLog(t *testing.T) {
	t.Parallel()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s, _ := newStore(t, be.client(t), nil)
			now := time.Now().Truncate(time.Millisecond)
			d := &delivery.Delivery{ID: "msg_1", Event: "run.failed", EventID: "1-0", RunID: "r1", FlowName: "etl",
				Endpoint: "ep1", URL: "http://x/hook", Body: []byte(`{"a":1}`), TraceID: "t", CreatedAt: now}
			created, err := s.WebhookDeliveryCreate(ctx, d, time.Hour)
			require.NoError(t, err)
			require.True(t, created)
			created, err = s.WebhookDeliveryCreate(ctx, d, time.Hour)
			require.NoError(t, err)
			require.False(t, created)

			claim := func(token string, at time.Time) []*delivery.Delivery {
				ds, err := s.WebhookDeliveryClaim(ctx, &delivery.ClaimParams{Now: at, Lease: time.Minute, Limit: 10, Token: token})
				require.NoError(t, err)
				return ds
			}
			ds := claim("A", now)
			require.Len(t, ds, 1)
			require.Equal(t, "A", ds[0].Claim)
			require.Equal(t, []byte(`{"a":1}`), ds[0].Body)
			require.Empty(t, claim("B", now.Add(time.Second)), "claimed while A's lease holds")

			stale := *ds[0]
			stale.Claim = "B"
			stale.Status, stale.Attempts, stale.UpdatedAt = delivery.Succeeded, 1, now
			require.ErrorIs(t, s.WebhookDeliveryUpdate(ctx, &delivery.UpdateParams{Delivery: &stale}), engine.ErrConflict)

			// The lease lapses (A died): B takes it over; A's late update is refused.
			ds2 := claim("B", now.Add(2*time.Minute))
			require.Len(t, ds2, 1)
			a := *ds[0]
			a.Status, a.Attempts, a.UpdatedAt = delivery.Succeeded, 1, now
			require.ErrorIs(t, s.WebhookDeliveryUpdate(ctx, &delivery.UpdateParams{Delivery: &a}), engine.ErrConflict)

			b := ds2[0]
			b.Status, b.Attempts, b.LastStatusCode, b.LastError = delivery.Pending, 1, 500, "HTTP 500"
			b.NextAttempt, b.UpdatedAt = now.Add(time.Hour), now.Add(time.Second)
			require.NoError(t, s.WebhookDeliveryUpdate(ctx, &delivery.UpdateParams{Delivery: b}))
			require.Empty(t, claim("C", now.Add(3*time.Minute)), "not due yet")
			got, err := s.WebhookDeliveryGet(ctx, "msg_1")
			require.NoError(t, err)
			require.Equal(t, delivery.Pending, got.Status)
			require.Equal(t, 500, got.LastStatusCode)
			require.True(t, now.Add(time.Hour).Equal(got.NextAttempt), "next attempt %s", got.NextAttempt)

			ds3 := claim("C", now.Add(2*time.Hour))
			require.Len(t, ds3, 1)
			c := ds3[0]
			c.Status, c.Attempts, c.LastStatusCode, c.LastError, c.UpdatedAt = delivery.Failed, 2, 410, "gone", time.Now()
			require.NoError(t, s.WebhookDeliveryUpdate(ctx, &delivery.UpdateParams{Delivery: c,
				Retention: time.Hour, DisableEndpoint: "410 Gone"}))
			list, err := s.WebhookDeliveryList(ctx, &delivery.ListParams{Status: delivery.Failed})
			require.NoError(t, err)
			require.Len(t, list, 1)
			require.Nil(t, list[0].Body)
			list, err = s.WebhookDeliveryList(ctx, &delivery.ListParams{Status: delivery.Pending})
			require.NoError(t, err)
			require.Empty(t, list)

			// The endpoint is disabled: a new delivery to it is created failed.
			d2 := *d
			d2.ID = "msg_2"
			created, err = s.WebhookDeliveryCreate(ctx, &d2, 50*time.Millisecond)
			require.NoError(t, err)
			require.True(t, created)
			got, err = s.WebhookDeliveryGet(ctx, "msg_2")
			require.NoError(t, err)
			require.Equal(t, delivery.Failed, got.Status)
			require.Contains(t, got.LastError, "endpoint disabled: 410 Gone")
			require.Eventually(t, func() bool { // retention passes
				_, err := s.WebhookDeliveryGet(ctx, "msg_2")
				return err != nil
			}, 5*time.Second, 10*time.Millisecond)
			_, err = s.WebhookDeliveryGet(ctx, "msg_2")
			require.ErrorIs(t, err, engine.ErrNotFound)

			// A manual retry revives msg_1 and enables the endpoint again.
			r, err := s.WebhookDeliveryRetry(ctx, "msg_1", now.Add(3*time.Hour))
			require.NoError(t, err)
			require.Equal(t, delivery.Pending, r.Status)
			require.True(t, r.Manual)
			require.Len(t, claim("D", now.Add(3*time.Hour)), 1)
			d3 := *d
			d3.ID = "msg_3"
			_, err = s.WebhookDeliveryCreate(ctx, &d3, time.Hour)
			require.NoError(t, err)
			got, err = s.WebhookDeliveryGet(ctx, "msg_3")
			require.NoError(t, err)
			require.Equal(t, delivery.Pending, got.Status)
			_, err = s.WebhookDeliveryRetry(ctx, "msg_nope", now)
			require.ErrorIs(t, err, engine.ErrNotFound)
		})
	}
}

// Dispatchers read the run-events stream with their own consumer group:
// each event goes to one of them, and an event a dead one never
// acknowledged is taken over after MinIdle.
func TestWebhookEventRead(t *testing.T) {
	t.Parallel()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s, _ := newStore(t, be.client(t), nil)
			require.NoError(t, s.WebhookEventInit(ctx, "ep1"))
			require.NoError(t, s.WebhookEventInit(ctx, "ep1")) // exists: fine
			r := &engine.Run{ID: engine.NewRunID(), FlowName: "etl", Status: engine.RunPending, Tasks: map[string]*engine.TaskState{}}
			require.NoError(t, s.RunCreate(ctx, r))
			_, err := s.RunFinish(ctx, &engine.RunFinishParams{RunID: r.ID, Status: engine.RunFailed})
			require.NoError(t, err)

			read := func(consumer string, minIdle time.Duration) []engine.Event {
				evs, err := s.WebhookEventRead(ctx, &delivery.EventReadParams{Consumer: consumer, Group: "ep1", Count: 10,
					Block: 10 * time.Millisecond, MinIdle: minIdle})
				require.NoError(t, err)
				return evs
			}
			evs := read("a", 0)
			require.Len(t, evs, 2) // PENDING, FAILED
			require.Equal(t, engine.RunFailed, evs[1].Status)
			require.Empty(t, read("b", 0), "each event goes to one consumer")
			require.NoError(t, s.WebhookEventAck(ctx, "ep1", []string{evs[0].ID}))
			time.Sleep(30 * time.Millisecond)
			taken := read("b", 20*time.Millisecond) // a died holding the FAILED event
			require.Len(t, taken, 1)
			require.Equal(t, evs[1].ID, taken[0].ID)
			require.NoError(t, s.WebhookEventAck(ctx, "ep1", []string{taken[0].ID}))
			require.Empty(t, read("c", time.Millisecond))
			_, err = s.WebhookEventRead(ctx, &delivery.EventReadParams{})
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
