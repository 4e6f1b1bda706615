package api

import (
	"context"
	"net/http"
	"time"

	"github.com/pyoco/pyoco/api/apidoc"
	"github.com/pyoco/pyoco/webhooks/delivery"
)

// Bounds of GET /webhooks/deliveries.
const (
	DefaultDeliveriesLimit = 50
	MaxDeliveriesLimit     = 500
)

// WebhookLog is the webhook delivery log the API shows (Config.Webhooks):
// redisstore.Store, or memstore.WebhookStore.
type WebhookLog interface {
	// WebhookDeliveryList lists deliveries newest first.
	WebhookDeliveryList(ctx context.Context, p *delivery.ListParams) ([]*delivery.Delivery, error)
	// WebhookDeliveryRetry makes a delivery due now; engine.ErrNotFound if
	// unknown.
	WebhookDeliveryRetry(ctx context.Context, id string, at time.Time) (*delivery.Delivery, error)
}

// WebhookDeliveryDoc is the JSON shape of one delivery in GET
// /webhooks/deliveries.
type WebhookDeliveryDoc struct {
	ID             string           `json:"id"`
	Event          string           `json:"event"`
	RunID          string           `json:"run_id"`
	FlowName       string           `json:"flow_name"`
	URL            string           `json:"url"`
	Status         delivery.Status  `json:"status"`
	Attempts       int              `json:"attempts"`
	LastStatusCode *int             `json:"last_status_code"`
	LastError      *string          `json:"last_error"`
	NextAttempt    apidoc.Timestamp `json:"next_attempt"`
	CreatedAt      apidoc.Timestamp `json:"created_at"`
	UpdatedAt      apidoc.Timestamp `json:"updated_at"`
}

// NewWebhookDeliveryDoc builds the document of d.
func NewWebhookDeliveryDoc(d *delivery.Delivery) WebhookDeliveryDoc {
	doc := WebhookDeliveryDoc{ID: d.ID, Event: d.Event, RunID: d.RunID, FlowName: d.FlowName, URL: d.URL,
		Status: d.Status, Attempts: d.Attempts, NextAttempt: apidoc.Timestamp(d.NextAttempt),
		CreatedAt: apidoc.Timestamp(d.CreatedAt), UpdatedAt: apidoc.Timestamp(d.UpdatedAt)}
	if d.LastStatusCode != 0 {
		c := d.LastStatusCode
		doc.LastStatusCode = &c
	}
	if d.LastError != "" {
		e := d.LastError
		doc.LastError = &e
	}
	return doc
}

// webhookDeliveries answers GET /webhooks/deliveries?status=&limit=: the
// delivery log, newest first (an empty list without webhooks).
func (s *Server) webhookDeliveries(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if err := checkKnown(q, "status", "limit"); err != nil {
		return err
	}
	p := &delivery.ListParams{Limit: DefaultDeliveriesLimit}
	st, ok, err := single(q, "status")
	if err != nil {
		return err
	}
	if ok {
		p.Status = delivery.Status(st)
		if !p.Status.Valid() {
			return errBadParam("status", "want pending, succeeded or failed, got %q", clip(st))
		}
	}
	n, ok, err := intParam(q, "limit", 1, MaxDeliveriesLimit)
	if err != nil {
		return err
	}
	if ok {
		p.Limit = int(n)
	}
	docs := []WebhookDeliveryDoc{}
	if s.cfg.Webhooks != nil {
		ds, err := s.cfg.Webhooks.WebhookDeliveryList(r.Context(), p)
		if err != nil {
			return err
		}
		for _, d := range ds {
			docs = append(docs, NewWebhookDeliveryDoc(d))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"deliveries": docs})
	return nil
}

// webhookDeliveryRetry answers POST /webhooks/deliveries/{id}/retry: the
// delivery is sent again at once (202 with the delivery, now pending).
func (s *Server) webhookDeliveryRetry(w http.ResponseWriter, r *http.Request) error {
	if err := checkKnown(r.URL.Query()); err != nil {
		return err
	}
	id := r.PathValue("id")
	if s.cfg.Webhooks == nil {
		return errNotFound("webhook delivery %s not found (webhooks are not configured on this server)", clip(id))
	}
	if id == "" || len(id) > 128 {
		return errNotFound("webhook delivery %q not found", clip(id))
	}
	d, err := s.cfg.Webhooks.WebhookDeliveryRetry(r.Context(), id, time.Now())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, NewWebhookDeliveryDoc(d))
	return nil
}
