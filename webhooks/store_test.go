package webhooks_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/memstore"
	"github.com/pyoco/pyoco/webhooks/delivery"
)

// The in-memory log follows the Redis one's rules (redisstore's
// TestWebhookDeliveryLog): idempotent create, exclusive claims, updates
// only under the claim, expiry after the retention, disabled endpoints.
func TestMemStoreDeliveryLog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := memstore.NewWebhookStore(memstore.New())
	now := time.Now()
	d := &delivery.Delivery{ID: "msg_1", Event: "run.failed", RunID: "r1", Endpoint: "ep1", URL: "http://x", Body: []byte("{}"), CreatedAt: now}
	ok, err := s.WebhookDeliveryCreate(ctx, d, time.Hour)
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = s.WebhookDeliveryCreate(ctx, d, time.Hour)
	require.NoError(t, err)
	require.False(t, ok)

	claim := func(token string, at time.Time) []*delivery.Delivery {
		ds, err := s.WebhookDeliveryClaim(ctx, &delivery.ClaimParams{Now: at, Lease: time.Minute, Limit: 5, Token: token})
		require.NoError(t, err)
		return ds
	}
	a := claim("A", now)
	require.Len(t, a, 1)
	require.Empty(t, claim("B", now.Add(time.Second)))
	b := claim("B", now.Add(2*time.Minute)) // A's lease lapsed
	require.Len(t, b, 1)
	a[0].Status, a[0].UpdatedAt = delivery.Succeeded, now
	require.ErrorIs(t, s.WebhookDeliveryUpdate(ctx, &delivery.UpdateParams{Delivery: a[0]}), engine.ErrConflict)
	b[0].Status, b[0].Attempts, b[0].LastStatusCode, b[0].UpdatedAt = delivery.Failed, 1, 410, time.Now()
	require.NoError(t, s.WebhookDeliveryUpdate(ctx, &delivery.UpdateParams{Delivery: b[0], Retention: 30 * time.Millisecond,
		DisableEndpoint: "410 Gone"}))
	d2 := *d
	d2.ID = "msg_2"
	_, err = s.WebhookDeliveryCreate(ctx, &d2, time.Hour)
	require.NoError(t, err)
	got, err := s.WebhookDeliveryGet(ctx, "msg_2")
	require.NoError(t, err)
	require.Equal(t, delivery.Failed, got.Status)
	require.Contains(t, got.LastError, "endpoint disabled: 410 Gone")

	list, err := s.WebhookDeliveryList(ctx, &delivery.ListParams{Status: delivery.Failed})
	require.NoError(t, err)
	require.Len(t, list, 2)
	require.Equal(t, "msg_1", list[0].ID) // newest update first
	require.Nil(t, list[0].Body)
	_, err = s.WebhookDeliveryList(ctx, &delivery.ListParams{Status: "done"})
	require.Error(t, err)

	require.Eventually(t, func() bool {
		_, err := s.WebhookDeliveryGet(ctx, "msg_1")
		return err != nil
	}, 5*time.Second, 5*time.Millisecond, "retention passed")
	_, err = s.WebhookDeliveryRetry(ctx, "msg_1", time.Now())
	require.ErrorIs(t, err, engine.ErrNotFound)

	r, err := s.WebhookDeliveryRetry(ctx, "msg_2", time.Now())
	require.NoError(t, err)
	require.Equal(t, delivery.Pending, r.Status)
	require.True(t, r.Manual)
	require.Len(t, claim("C", time.Now()), 1)
	d3 := *d
	d3.ID = "msg_3"
	_, err = s.WebhookDeliveryCreate(ctx, &d3, time.Hour)
	require.NoError(t, err)
	got, err = s.WebhookDeliveryGet(ctx, "msg_3")
	require.NoError(t, err)
	require.Equal(t, delivery.Pending, got.Status, "the retry enabled the endpoint again")
}

// Unacknowledged events are read again after MinIdle (a dead reader's).
func TestMemStoreEventRead(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ms := memstore.New()
	s := memstore.NewWebhookStore(ms)
	s.PollInterval = time.Millisecond
	require.NoError(t, s.WebhookEventInit(ctx, ""))
	evs, err := s.WebhookEventRead(ctx, &delivery.EventReadParams{Consumer: "a", Count: 10, Block: 5 * time.Millisecond})
	require.NoError(t, err)
	require.Empty(t, evs)
	finishRun(t, ms, "etl", engine.RunCompleted)
	evs, err = s.WebhookEventRead(ctx, &delivery.EventReadParams{Consumer: "a", Count: 10, Block: time.Second})
	require.NoError(t, err)
	require.Len(t, evs, 3) // PENDING, RUNNING, COMPLETED
	require.NoError(t, s.WebhookEventAck(ctx, "", []string{evs[0].ID, evs[1].ID}))
	time.Sleep(10 * time.Millisecond)
	again, err := s.WebhookEventRead(ctx, &delivery.EventReadParams{Consumer: "b", Count: 10, MinIdle: 5 * time.Millisecond})
	require.NoError(t, err)
	require.Len(t, again, 1)
	require.Equal(t, evs[2].ID, again[0].ID)
}
