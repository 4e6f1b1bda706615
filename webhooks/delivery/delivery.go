package delivery

import (
	"context"
	"time"

	"github.com/pyoco/pyoco/engine"
)

// Store is what a webhooks.Dispatcher needs: the run-events stream read as a
// consumer group, and the delivery log. redisstore.Store implements it on
// Redis (durable, shared by several servers); memstore.Store (engine/memstore) in memory.
type Store interface {
	// WebhookEventInit prepares the event read of an endpoint (on Redis:
	// creates its consumer group at the stream's end if it does not exist),
	// so that every event after it is delivered to it.
	WebhookEventInit(ctx context.Context, endpoint string) error
	// WebhookEventRead returns run events not yet read by any dispatcher
	// in p.Group (or, with MinIdle, read that long ago and never
	// acknowledged), and sets p.Lost if events were lost before it.
	WebhookEventRead(ctx context.Context, p *EventReadParams) ([]engine.Event, error)
	// WebhookEventAck marks events of endpoint's group handled.
	WebhookEventAck(ctx context.Context, endpoint string, ids []string) error
	// WebhookDeliveryCreate adds a pending delivery due now unless its ID
	// exists (false). For a disabled endpoint it is created failed.
	WebhookDeliveryCreate(ctx context.Context, d *Delivery, retention time.Duration) (bool, error)
	// WebhookDeliveryClaim claims due pending deliveries (of p.Endpoints)
	// atomically; due ones to a disabled endpoint are failed instead.
	WebhookDeliveryClaim(ctx context.Context, p *ClaimParams) ([]*Delivery, error)
	// WebhookDeliveryUpdate records an attempt under a claim
	// (engine.ErrConflict if the claim was lost).
	WebhookDeliveryUpdate(ctx context.Context, p *UpdateParams) error
	// WebhookDeliveryGet returns one delivery (engine.ErrNotFound).
	WebhookDeliveryGet(ctx context.Context, id string) (*Delivery, error)
	// WebhookDeliveryList lists deliveries newest first, without bodies.
	WebhookDeliveryList(ctx context.Context, p *ListParams) ([]*Delivery, error)
	// WebhookDeliveryRetry makes a delivery due now (engine.ErrNotFound).
	WebhookDeliveryRetry(ctx context.Context, id string, at time.Time) (*Delivery, error)
}

// Status is the state of a webhook delivery (SPEC §8).
type Status string

// Delivery statuses. The names are public (API, CLI).
const (
	Pending   Status = "pending"
	Succeeded Status = "succeeded"
	Failed    Status = "failed"
)

// Statuses lists every delivery status.
var Statuses = []Status{Pending, Succeeded, Failed}

// Valid reports whether s is one of [Statuses].
func (s Status) Valid() bool {
	return s == Pending || s == Succeeded || s == Failed
}

// Delivery is one run event sent to one webhook endpoint: the unit
// the delivery log keeps and the dispatchers retry. The webhooks package
// makes them; a [Store] (redisstore.Store, or engine/memstore's) keeps them. Stores return copies.
type Delivery struct {
	// ID is stable across retries ("msg_…"): the webhook-id header.
	ID string
	// Event is run.completed, run.failed or run.cancelled; EventID the
	// run-events entry it came from.
	Event    string
	EventID  string
	RunID    string
	FlowName string
	// Endpoint identifies the configured endpoint (a hash of its URL and
	// format); URL is where it is sent.
	Endpoint string
	URL      string
	Status   Status
	// Attempts counts the requests made so far.
	Attempts       int
	LastStatusCode int
	LastError      string
	// NextAttempt is when a pending delivery is due (zero otherwise).
	NextAttempt time.Time
	CreatedAt   time.Time
	UpdatedAt   time.Time
	// Body is the request body, the same on every attempt.
	Body []byte
	// TraceID and ParentSpanID are the run's (each attempt's span joins the
	// run's trace).
	TraceID      string
	ParentSpanID string
	// Manual is set by a manual retry: the next failed attempt ends the
	// delivery instead of following the retry schedule.
	Manual bool
	// Claim is the token of the claim under which a dispatcher attempts the
	// delivery (set by a claim; "" otherwise).
	Claim string
}

// EventReadParams are the arguments of a webhook event read: the
// dispatchers' consumer-group read of the run-events stream.
type EventReadParams struct {
	// Consumer names the reading dispatcher.
	Consumer string
	// Count caps the events returned.
	Count int
	// Block is how long to wait for a new event (0: do not wait).
	Block time.Duration
	// MinIdle, when positive, first takes over events another consumer read
	// at least MinIdle ago without acknowledging them (a dead dispatcher's).
	MinIdle time.Duration
	// Group names the consumer group read: one per endpoint (its key), so
	// that every endpoint sees every event whichever servers know it. ""
	// is the shared group of earlier versions.
	Group string
	// Lost is set by the read: how many events were trimmed from the
	// run-events stream before the group read them (they are never
	// delivered). Each gap is reported once.
	Lost int64
}

// ClaimParams are the arguments of a delivery claim.
type ClaimParams struct {
	// Now is the current time: deliveries due at or before it are claimed.
	// Zero means the store's clock (on Redis: TIME, the same for every
	// server).
	Now time.Time
	// Lease is how long the claim holds: after it another dispatcher may
	// claim the delivery again (its holder died mid-attempt).
	Lease time.Duration
	// Limit caps the deliveries claimed.
	Limit int
	// Token marks the claim; only an update carrying it is accepted.
	Token string
	// Endpoints, when not nil, restricts the claim to deliveries to these
	// endpoints (keys): a server never claims a delivery it cannot send.
	Endpoints []string
	// Retention is how long a delivery ended by the claim is kept (one to
	// an endpoint disabled by a 410 answer is failed instead of claimed).
	Retention time.Duration
}

// UpdateParams record the outcome of one attempt (or give a
// claimed delivery back unchanged).
type UpdateParams struct {
	// Delivery holds the new Status, Attempts, LastStatusCode, LastError,
	// NextAttempt (for pending) and UpdatedAt; its ID, Endpoint and Claim
	// name what is updated.
	Delivery *Delivery
	// Retention is how long a finished (succeeded or failed) delivery is
	// kept.
	Retention time.Duration
	// DisableEndpoint, when set, marks the delivery's endpoint disabled with
	// this reason (the receiver answered 410 Gone).
	DisableEndpoint string
}

// ListParams filter a delivery list. Newest (by UpdatedAt)
// first.
type ListParams struct {
	// Status filters by status ("": all).
	Status Status
	// Limit caps the deliveries returned (0: 50).
	Limit int
}
