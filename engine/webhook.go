package engine

import (
	"time"

	"go.opentelemetry.io/otel/attribute"
)

// WebhookStatus is the state of a webhook delivery (SPEC §8).
type WebhookStatus string

// Webhook delivery statuses. The names are public (API, CLI).
const (
	WebhookPending   WebhookStatus = "pending"
	WebhookSucceeded WebhookStatus = "succeeded"
	WebhookFailed    WebhookStatus = "failed"
)

// WebhookStatuses lists every delivery status.
var WebhookStatuses = []WebhookStatus{WebhookPending, WebhookSucceeded, WebhookFailed}

// Valid reports whether s is one of [WebhookStatuses].
func (s WebhookStatus) Valid() bool {
	return s == WebhookPending || s == WebhookSucceeded || s == WebhookFailed
}

// WebhookDelivery is one run event sent to one webhook endpoint: the unit
// the delivery log keeps and the dispatchers retry. The webhooks package
// makes them; a store (redisstore, or the webhooks package's in-memory one)
// keeps them. Stores return copies.
type WebhookDelivery struct {
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
	Status   WebhookStatus
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

// WebhookEventReadParams are the arguments of a webhook event read: the
// dispatchers' consumer-group read of the run-events stream.
type WebhookEventReadParams struct {
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

// WebhookDeliveryClaimParams are the arguments of a delivery claim.
type WebhookDeliveryClaimParams struct {
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

// WebhookDeliveryUpdateParams record the outcome of one attempt (or give a
// claimed delivery back unchanged).
type WebhookDeliveryUpdateParams struct {
	// Delivery holds the new Status, Attempts, LastStatusCode, LastError,
	// NextAttempt (for pending) and UpdatedAt; its ID, Endpoint and Claim
	// name what is updated.
	Delivery *WebhookDelivery
	// Retention is how long a finished (succeeded or failed) delivery is
	// kept.
	Retention time.Duration
	// DisableEndpoint, when set, marks the delivery's endpoint disabled with
	// this reason (the receiver answered 410 Gone).
	DisableEndpoint string
}

// WebhookDeliveryListParams filter a delivery list. Newest (by UpdatedAt)
// first.
type WebhookDeliveryListParams struct {
	// Status filters by status ("": all).
	Status WebhookStatus
	// Limit caps the deliveries returned (0: 50).
	Limit int
}

// Attribute keys of webhook delivery spans.
const (
	AttrWebhookID      = attribute.Key("pyoco.webhook.id")
	AttrWebhookEvent   = attribute.Key("pyoco.webhook.event")
	AttrWebhookAttempt = attribute.Key("pyoco.webhook.attempt")
)
