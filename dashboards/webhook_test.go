package dashboards_test

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/memstore"
	"github.com/pyoco/pyoco/telemetry"
	"github.com/pyoco/pyoco/webhooks"
)

// startWebhooks starts pyoco's webhook dispatcher on the run events of
// store, delivering run.completed and run.failed to a loopback receiver,
// with its counter on the telemetry meter provider (as `pyoco server`
// wires it). wait blocks until the receiver has accepted a delivery, so
// that pyoco_webhook_deliveries_total has a sample.
func startWebhooks(t *testing.T, tel *telemetry.Providers, store engine.Store) (wait func()) {
	t.Helper()
	var got atomic.Int64
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		got.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(recv.Close)
	ep, err := webhooks.NewEndpoint(webhooks.EndpointConfig{
		URL:    recv.URL,
		Events: []string{"run.completed", "run.failed"},
		Secret: "whsec_" + base64.StdEncoding.EncodeToString([]byte("pyoco-dashboards-test-secret-32b")),
	}, nil)
	require.NoError(t, err)
	events, ok := store.(engine.EventStore)
	require.True(t, ok, "the memory store keeps run events")
	d, err := webhooks.New(store, memstore.NewWebhookStore(events), &webhooks.Config{
		Endpoints:      []*webhooks.Endpoint{ep},
		PollInterval:   20 * time.Millisecond,
		TracerProvider: tel.TracerProvider,
		MeterProvider:  tel.MeterProvider,
	})
	require.NoError(t, err)
	require.NoError(t, d.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, d.Stop(ctx))
	})
	return func() {
		deadline := time.Now().Add(30 * time.Second)
		for got.Load() == 0 {
			require.True(t, time.Now().Before(deadline), "no webhook delivery arrived")
			time.Sleep(20 * time.Millisecond)
		}
	}
}
