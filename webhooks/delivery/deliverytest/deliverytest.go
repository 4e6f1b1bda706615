// Package deliverytest is the conformance suite for [delivery.Store]
// implementations (redisstore.Store, memstore.WebhookStore). Call [Run]
// from a _test.go file; every implementation runs the same cases, as
// storetest does for [engine.Store]. Import it only from tests.
//
// The suite pins: create is idempotent (by ID); a claim is exclusive while
// its lease holds and is taken over after it; an update needs the current
// claim (else [engine.ErrConflict]); finished deliveries expire with their
// retention; a 410 answer disables the endpoint, so new deliveries to it
// are created failed, until a manual retry revives a delivery and enables
// it again; lists are newest update first, without bodies; each event is
// read by one consumer of a group, and one never acknowledged is taken
// over after MinIdle. Store-specific behaviour (argument errors of Redis,
// trimmed streams) stays in the stores' own tests.
//
// deliverytest imports engine, webhooks/delivery and testify.
package deliverytest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/webhooks/delivery"
)

// Stores is what a case runs against: the delivery store, and the run
// store whose events it reads (for redisstore.Store the same value).
type Stores struct {
	Deliveries delivery.Store
	Runs       engine.RunStore
}

// Run runs the suite against the stores that newStores returns. It is
// called once per subtest and must return fresh, empty stores no other test
// uses (subtests run in parallel); register cleanup with t.Cleanup.
func Run(t *testing.T, newStores func(t *testing.T) Stores) {
	t.Helper()
	t.Run("DeliveryLog", func(t *testing.T) { t.Parallel(); testDeliveryLog(t, newStores(t)) })
	t.Run("DisabledEndpointExpiry", func(t *testing.T) { t.Parallel(); testDisabledEndpointExpiry(t, newStores(t)) })
	t.Run("EventReadGroup", func(t *testing.T) { t.Parallel(); testEventReadGroup(t, newStores(t)) })
	t.Run("EventReadSharedGroup", func(t *testing.T) { t.Parallel(); testEventReadSharedGroup(t, newStores(t)) })
}

// testDeliveryLog: create is idempotent, a claim is exclusive while its
// lease holds, an update needs the claim, finished deliveries expire with
// the retention, retry revives them.
func testDeliveryLog(t *testing.T, st Stores) {
	ctx := context.Background()
	s := st.Deliveries
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
	// Kept past the retry below at now+3h (memstore expires by the retry's
	// time, Redis by its own clock).
	require.NoError(t, s.WebhookDeliveryUpdate(ctx, &delivery.UpdateParams{Delivery: c,
		Retention: 4 * time.Hour, DisableEndpoint: "410 Gone"}))
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
}

// testDisabledEndpointExpiry: a 410 answer disables the endpoint under the
// claim's update; the failed delivery expires after its (short) retention
// and cannot be retried then; a retry of another revives it and enables
// the endpoint again; lists are newest update first, reject an unknown
// status.
func testDisabledEndpointExpiry(t *testing.T, st Stores) {
	ctx := context.Background()
	s := st.Deliveries
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
	// Retention long enough for the checks below on a loaded machine (30 ms
	// was not, in CI), short enough to see it pass.
	require.NoError(t, s.WebhookDeliveryUpdate(ctx, &delivery.UpdateParams{Delivery: b[0], Retention: 700 * time.Millisecond,
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

// testEventReadGroup: dispatchers read the run-events stream with their own
// consumer group: each event goes to one of them, and an event a dead one
// never acknowledged is taken over after MinIdle.
func testEventReadGroup(t *testing.T, st Stores) {
	ctx := context.Background()
	s := st.Deliveries
	require.NoError(t, s.WebhookEventInit(ctx, "ep1"))
	require.NoError(t, s.WebhookEventInit(ctx, "ep1")) // exists: fine
	r := &engine.Run{ID: engine.NewRunID(), FlowName: "etl", Status: engine.RunPending, Tasks: map[string]*engine.TaskState{}}
	require.NoError(t, st.Runs.RunCreate(ctx, r))
	_, err := st.Runs.RunFinish(ctx, &engine.RunFinishParams{RunID: r.ID, Status: engine.RunFailed})
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
	time.Sleep(30 * time.Millisecond)       // MinIdle is measured on the store's clock
	taken := read("b", 20*time.Millisecond) // a died holding the FAILED event
	require.Len(t, taken, 1)
	require.Equal(t, evs[1].ID, taken[0].ID)
	require.NoError(t, s.WebhookEventAck(ctx, "ep1", []string{taken[0].ID}))
	require.Empty(t, read("c", time.Millisecond))
}

// testEventReadSharedGroup: the same in the shared group (""), with a run
// that went through RUNNING: unacknowledged events are read again after
// MinIdle (a dead reader's).
func testEventReadSharedGroup(t *testing.T, st Stores) {
	ctx := context.Background()
	s := st.Deliveries
	require.NoError(t, s.WebhookEventInit(ctx, ""))
	evs, err := s.WebhookEventRead(ctx, &delivery.EventReadParams{Consumer: "a", Count: 10, Block: 5 * time.Millisecond})
	require.NoError(t, err)
	require.Empty(t, evs)
	now := time.Now()
	r := &engine.Run{ID: engine.NewRunID(), FlowName: "etl", Status: engine.RunPending, CreatedAt: now,
		Tasks: map[string]*engine.TaskState{}}
	require.NoError(t, st.Runs.RunCreate(ctx, r))
	_, err = st.Runs.RunStart(ctx, &engine.RunStartParams{RunID: r.ID, WorkerID: "w", At: now})
	require.NoError(t, err)
	_, err = st.Runs.RunFinish(ctx, &engine.RunFinishParams{RunID: r.ID, Status: engine.RunCompleted, At: now})
	require.NoError(t, err)
	evs, err = s.WebhookEventRead(ctx, &delivery.EventReadParams{Consumer: "a", Count: 10, Block: time.Second})
	require.NoError(t, err)
	require.Len(t, evs, 3) // PENDING, RUNNING, COMPLETED
	require.NoError(t, s.WebhookEventAck(ctx, "", []string{evs[0].ID, evs[1].ID}))
	time.Sleep(10 * time.Millisecond) // MinIdle is measured on the store's clock
	again, err := s.WebhookEventRead(ctx, &delivery.EventReadParams{Consumer: "b", Count: 10, MinIdle: 5 * time.Millisecond})
	require.NoError(t, err)
	require.Len(t, again, 1)
	require.Equal(t, evs[2].ID, again[0].ID)
}
