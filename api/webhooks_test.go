package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/api"
	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/memstore"
	"github.com/pyoco/pyoco/internal/redistest"
	"github.com/pyoco/pyoco/redisstore"
	"github.com/pyoco/pyoco/webhooks/delivery"
)

func TestWebhookDeliveriesAPI(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := redistest.Client(t)
	log, err := redisstore.New(c, &redisstore.Config{Namespace: redistest.Namespace(t, c)})
	require.NoError(t, err)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, d := range []*delivery.Delivery{
		{ID: "msg_a", Event: "run.failed", RunID: "r1", FlowName: "etl", Endpoint: "e", URL: "http://x/h", CreatedAt: now},
		{ID: "msg_b", Event: "run.completed", RunID: "r2", FlowName: "etl", Endpoint: "e", URL: "http://x/h", CreatedAt: now.Add(time.Hour)},
	} {
		_, err := log.WebhookDeliveryCreate(ctx, d, time.Hour)
		require.NoError(t, err)
	}
	claimed, err := log.WebhookDeliveryClaim(ctx, &delivery.ClaimParams{Now: now, Lease: time.Minute, Limit: 1, Token: "t"})
	require.NoError(t, err)
	require.Len(t, claimed, 1)
	failed := claimed[0]
	failed.Status, failed.Attempts, failed.LastStatusCode, failed.LastError, failed.UpdatedAt = delivery.Failed, 9, 500, "HTTP 500", now
	require.NoError(t, log.WebhookDeliveryUpdate(ctx, &delivery.UpdateParams{Delivery: failed, Retention: time.Hour}))

	eng, err := engine.New(memstore.New(), engine.NewRegistry(), nil)
	require.NoError(t, err)
	with, err := api.New(eng, &api.Config{Webhooks: log})
	require.NoError(t, err)
	t.Cleanup(func() { _ = with.Close() })
	without, err := api.New(eng, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = without.Close() })

	do := func(s *api.Server, method, path string) (int, map[string]any) {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		b, _ := io.ReadAll(rec.Body)
		var m map[string]any
		require.NoError(t, json.Unmarshal(b, &m), string(b))
		return rec.Code, m
	}
	code, m := do(with, "GET", "/webhooks/deliveries?status=failed&limit=5")
	require.Equal(t, http.StatusOK, code)
	ds := m["deliveries"].([]any)
	require.Len(t, ds, 1)
	require.Equal(t, map[string]any{"id": "msg_a", "event": "run.failed", "run_id": "r1", "flow_name": "etl", "url": "http://x/h",
		"status": "failed", "attempts": float64(9), "last_status_code": float64(500), "last_error": "HTTP 500",
		"next_attempt": nil, "created_at": "2026-01-02T03:04:05.000Z", "updated_at": "2026-01-02T03:04:05.000Z"}, ds[0])
	code, m = do(with, "GET", "/webhooks/deliveries")
	require.Equal(t, http.StatusOK, code)
	require.Len(t, m["deliveries"], 2)
	code, m = do(with, "GET", "/webhooks/deliveries?limit=1")
	require.Equal(t, http.StatusOK, code)
	require.Len(t, m["deliveries"], 1)

	for _, q := range []string{"status=done", "status=failed&status=pending", "limit=0", "limit=501", "limit=x", "cursor=abc"} {
		code, m = do(with, "GET", "/webhooks/deliveries?"+q)
		require.Equal(t, http.StatusBadRequest, code, q)
		require.Equal(t, "bad_request", m["error"].(map[string]any)["code"], q)
	}
	code, m = do(with, "POST", "/webhooks/deliveries/msg_a/retry")
	require.Equal(t, http.StatusAccepted, code)
	require.Equal(t, "pending", m["status"])
	code, m = do(with, "POST", "/webhooks/deliveries/msg_zzz/retry")
	require.Equal(t, http.StatusNotFound, code)
	require.Equal(t, "not_found", m["error"].(map[string]any)["code"])
	code, _ = do(with, "POST", "/webhooks/deliveries/"+strings.Repeat("x", 200)+"/retry")
	require.Equal(t, http.StatusNotFound, code)
	code, _ = do(with, "GET", "/webhooks/deliveries/msg_a/retry")
	require.Equal(t, http.StatusMethodNotAllowed, code)

	code, m = do(without, "GET", "/webhooks/deliveries?status=pending")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, []any{}, m["deliveries"])
	code, _ = do(without, "POST", "/webhooks/deliveries/msg_a/retry")
	require.Equal(t, http.StatusNotFound, code)
}
