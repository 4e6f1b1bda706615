package memstore

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/webhooks/delivery"
)

// WebhookStore is a [delivery.Store] in memory over an [engine.EventStore]
// (the in-memory run store's events): the webhook delivery log of a single
// server without Redis. Its state is lost when the process ends. Create it
// with [NewWebhookStore]; it is safe for concurrent use.
type WebhookStore struct {
	events engine.EventStore
	// PollInterval is how often a blocked WebhookEventRead looks for new
	// events. Set before use; defaults to 50ms.
	PollInterval time.Duration

	mu       sync.Mutex
	groups   map[string]*webhookGroup // by endpoint key
	ds       map[string]*webhookDelivery
	pending  map[string]*webhookDelivery // the pending ones of ds
	disabled map[string]string
	// nextExpire is when Create next drops expired deliveries.
	nextExpire time.Time
}

// webhookGroup is one endpoint's read of the events.
type webhookGroup struct {
	cursor  string
	unacked map[string]*webhookRead // event ID → read
}

type webhookRead struct {
	ev     engine.Event
	readAt time.Time
}

type webhookDelivery struct {
	d         delivery.Delivery
	leaseEnd  time.Time
	expiresAt time.Time // zero while pending
}

// NewWebhookStore returns a WebhookStore reading events from events, from its
// first event on.
func NewWebhookStore(events engine.EventStore) *WebhookStore {
	return &WebhookStore{events: events, groups: map[string]*webhookGroup{}, ds: map[string]*webhookDelivery{},
		pending: map[string]*webhookDelivery{}, disabled: map[string]string{}}
}

// WebhookEventRead implements [delivery.Store]: it polls the event store until an
// event arrives or p.Block passes.
func (m *WebhookStore) WebhookEventRead(ctx context.Context, p *delivery.EventReadParams) ([]engine.Event, error) {
	count := max(p.Count, 1)
	p.Lost = 0
	if p.MinIdle > 0 {
		m.mu.Lock()
		var out []engine.Event
		now := time.Now()
		for _, r := range m.group(p.Group).unacked {
			if now.Sub(r.readAt) >= p.MinIdle && len(out) < count {
				r.readAt = now
				out = append(out, r.ev)
			}
		}
		m.mu.Unlock()
		if len(out) > 0 {
			slices.SortFunc(out, func(a, b engine.Event) int { return compareEventIDs(a.ID, b.ID) })
			return out, nil
		}
	}
	every := m.PollInterval
	if every <= 0 {
		every = 50 * time.Millisecond
	}
	deadline := time.Now().Add(p.Block)
	for {
		m.mu.Lock()
		g := m.group(p.Group)
		evs, err := m.events.EventList(ctx, &engine.EventListParams{After: g.cursor, Limit: count})
		if err == nil && len(evs) > 0 {
			g.cursor = evs[len(evs)-1].ID
			now := time.Now()
			for _, ev := range evs {
				g.unacked[ev.ID] = &webhookRead{ev: ev, readAt: now}
			}
		}
		m.mu.Unlock()
		if err != nil || len(evs) > 0 {
			return evs, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, nil
		}
		t := time.NewTimer(min(every, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// group returns endpoint's read state, new ones reading from the first
// event. The caller holds m.mu.
func (m *WebhookStore) group(endpoint string) *webhookGroup {
	g, ok := m.groups[endpoint]
	if !ok {
		g = &webhookGroup{unacked: map[string]*webhookRead{}}
		m.groups[endpoint] = g
	}
	return g
}

// compareEventIDs orders decimal (memstore) or stream IDs.
func compareEventIDs(a, b string) int {
	na, ea := strconv.ParseUint(a, 10, 64)
	nb, eb := strconv.ParseUint(b, 10, 64)
	if ea == nil && eb == nil {
		switch {
		case na < nb:
			return -1
		case na > nb:
			return 1
		}
		return 0
	}
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	if a < b {
		return -1
	} else if a > b {
		return 1
	}
	return 0
}

// WebhookEventInit implements [delivery.Store]; the in-memory read starts at the
// first event (a single process: its events are all after its start).
func (m *WebhookStore) WebhookEventInit(ctx context.Context, endpoint string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.group(endpoint)
	return nil
}

// WebhookEventAck implements [delivery.Store].
func (m *WebhookStore) WebhookEventAck(ctx context.Context, endpoint string, ids []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	g := m.group(endpoint)
	for _, id := range ids {
		delete(g.unacked, id)
	}
	return nil
}

// WebhookDeliveryCreate implements [delivery.Store].
func (m *WebhookStore) WebhookDeliveryCreate(ctx context.Context, d *delivery.Delivery, retention time.Duration) (bool, error) {
	if d == nil || d.ID == "" {
		return false, fmt.Errorf("create webhook delivery: missing ID")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if now := time.Now(); now.After(m.nextExpire) {
		m.expire(now)
		m.nextExpire = now.Add(time.Second)
	}
	if _, ok := m.ds[d.ID]; ok {
		return false, nil
	}
	now := d.CreatedAt
	if now.IsZero() {
		now = time.Now()
	}
	c := cloneDelivery(d)
	c.CreatedAt, c.UpdatedAt, c.Claim = now, now, ""
	md := &webhookDelivery{d: *c}
	if reason, ok := m.disabled[d.Endpoint]; ok {
		md.d.Status, md.d.LastError, md.d.NextAttempt = delivery.Failed, "endpoint disabled: "+reason, time.Time{}
		md.expiresAt = now.Add(retentionOr(retention))
	} else {
		md.d.Status, md.d.NextAttempt = delivery.Pending, now
		m.pending[d.ID] = md
	}
	m.ds[d.ID] = md
	return true, nil
}

// WebhookDeliveryClaim implements [delivery.Store].
func (m *WebhookStore) WebhookDeliveryClaim(ctx context.Context, p *delivery.ClaimParams) ([]*delivery.Delivery, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := p.Now
	if now.IsZero() {
		now = time.Now()
	}
	var due []*webhookDelivery
	for id, md := range m.pending {
		if md.d.NextAttempt.After(now) || md.leaseEnd.After(now) {
			continue
		}
		if p.Endpoints != nil && !slices.Contains(p.Endpoints, md.d.Endpoint) {
			continue
		}
		if reason, ok := m.disabled[md.d.Endpoint]; ok {
			md.d.Status, md.d.LastError = delivery.Failed, "endpoint disabled after 410 Gone: "+reason
			md.d.NextAttempt, md.d.UpdatedAt, md.d.Claim, md.leaseEnd = time.Time{}, now, "", time.Time{}
			md.expiresAt = now.Add(retentionOr(p.Retention))
			delete(m.pending, id)
			continue
		}
		due = append(due, md)
	}
	slices.SortFunc(due, func(a, b *webhookDelivery) int { return a.d.NextAttempt.Compare(b.d.NextAttempt) })
	var out []*delivery.Delivery
	for _, md := range due {
		if len(out) >= p.Limit {
			break
		}
		md.d.Claim = p.Token
		md.leaseEnd = now.Add(p.Lease)
		out = append(out, cloneDelivery(&md.d))
	}
	return out, nil
}

// WebhookDeliveryUpdate implements [delivery.Store].
func (m *WebhookStore) WebhookDeliveryUpdate(ctx context.Context, p *delivery.UpdateParams) error {
	d := p.Delivery
	m.mu.Lock()
	defer m.mu.Unlock()
	md, ok := m.ds[d.ID]
	if !ok || md.d.Claim == "" || md.d.Claim != d.Claim {
		return fmt.Errorf("update webhook delivery %s: claim lost: %w", d.ID, engine.ErrConflict)
	}
	now := d.UpdatedAt
	if now.IsZero() {
		now = time.Now()
	}
	md.d.Status, md.d.Attempts, md.d.LastStatusCode, md.d.LastError = d.Status, d.Attempts, d.LastStatusCode, d.LastError
	md.d.UpdatedAt, md.d.Claim, md.leaseEnd = now, "", time.Time{}
	if p.DisableEndpoint != "" {
		m.disabled[md.d.Endpoint] = p.DisableEndpoint
	}
	if d.Status == delivery.Pending {
		md.d.NextAttempt = d.NextAttempt
		return nil
	}
	md.d.NextAttempt = time.Time{}
	md.expiresAt = now.Add(retentionOr(p.Retention))
	delete(m.pending, d.ID)
	return nil
}

// WebhookDeliveryGet implements [delivery.Store].
func (m *WebhookStore) WebhookDeliveryGet(ctx context.Context, id string) (*delivery.Delivery, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire(time.Now())
	md, ok := m.ds[id]
	if !ok {
		return nil, fmt.Errorf("webhook delivery %s: %w", id, engine.ErrNotFound)
	}
	return cloneDelivery(&md.d), nil
}

// WebhookDeliveryList implements [delivery.Store].
func (m *WebhookStore) WebhookDeliveryList(ctx context.Context, p *delivery.ListParams) ([]*delivery.Delivery, error) {
	if p.Status != "" && !p.Status.Valid() {
		return nil, fmt.Errorf("list webhook deliveries: unknown status %q", p.Status)
	}
	limit := p.Limit
	if limit <= 0 {
		limit = 50
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire(time.Now())
	out := []*delivery.Delivery{}
	for _, md := range m.ds {
		if p.Status == "" || md.d.Status == p.Status {
			c := cloneDelivery(&md.d)
			c.Body = nil
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b *delivery.Delivery) int {
		if c := b.UpdatedAt.Compare(a.UpdatedAt); c != 0 {
			return c
		}
		if a.ID > b.ID {
			return -1
		}
		return 1
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// WebhookDeliveryRetry implements [delivery.Store].
func (m *WebhookStore) WebhookDeliveryRetry(ctx context.Context, id string, at time.Time) (*delivery.Delivery, error) {
	if at.IsZero() {
		at = time.Now()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire(at)
	md, ok := m.ds[id]
	if !ok {
		return nil, fmt.Errorf("retry webhook delivery %s: %w", id, engine.ErrNotFound)
	}
	switch {
	case md.d.Status == delivery.Pending:
		if md.d.Claim == "" {
			md.d.NextAttempt, md.d.UpdatedAt = at, at
		}
	default:
		md.d.Status, md.d.NextAttempt, md.d.UpdatedAt, md.d.Manual = delivery.Pending, at, at, true
		md.expiresAt = time.Time{}
		m.pending[id] = md
		delete(m.disabled, md.d.Endpoint)
	}
	c := cloneDelivery(&md.d)
	c.Body = nil
	return c, nil
}

// expire drops finished deliveries past their retention. The caller holds m.mu.
func (m *WebhookStore) expire(now time.Time) {
	for id, md := range m.ds {
		if !md.expiresAt.IsZero() && !md.expiresAt.After(now) {
			delete(m.ds, id)
		}
	}
}

func cloneDelivery(d *delivery.Delivery) *delivery.Delivery {
	c := *d
	c.Body = slices.Clone(d.Body)
	return &c
}

// defaultWebhookRetention keeps a finished delivery when the caller gives
// no retention: webhooks.DefaultRetention.
const defaultWebhookRetention = 168 * time.Hour

func retentionOr(d time.Duration) time.Duration {
	if d <= 0 {
		return defaultWebhookRetention
	}
	return d
}

// Interface guard.
var _ delivery.Store = (*WebhookStore)(nil)
