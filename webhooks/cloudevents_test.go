package webhooks_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/webhooks"
	"github.com/pyoco/pyoco/webhooks/delivery"
)

// TestCloudEventsDelivery: a cloudevents-format delivery reaches a real
// HTTP receiver that parses it with the CloudEvents Go SDK (structured
// mode) and validates it; the id is the webhook id on every retry.
func TestCloudEventsDelivery(t *testing.T) {
	t.Parallel()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			b := be.make(t)
			var (
				mu     sync.Mutex
				events []cloudevents.Event
				errs   []error
			)
			recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ev, err := cehttp.NewEventFromHTTPRequest(r)
				if err == nil {
					err = ev.Validate()
				}
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				events = append(events, *ev)
				if len(events) == 1 {
					http.Error(w, "again", http.StatusServiceUnavailable) // the retry keeps the id
					return
				}
				w.WriteHeader(http.StatusAccepted)
			}))
			t.Cleanup(recv.Close)
			ep := endpoint(t, webhooks.EndpointConfig{URL: recv.URL, Format: webhooks.FormatCloudEvents,
				Events: []string{webhooks.EventRunFailed}})
			start(t, b.runs, b.ws, fastConfig(ep))

			runID := finishRun(t, b.runs, "etl", engine.RunFailed)
			d := waitDelivery(t, b.ws, runID, delivery.Succeeded)
			run, err := b.runs.RunGet(t.Context(), runID)
			require.NoError(t, err)

			mu.Lock()
			defer mu.Unlock()
			require.Empty(t, errs)
			require.Len(t, events, 2)
			for _, ev := range events {
				require.Equal(t, cloudevents.VersionV1, ev.SpecVersion())
				require.Equal(t, d.ID, ev.ID(), "id is the webhook id")
				require.Equal(t, "dev.pyoco.run.failed", ev.Type())
				require.Equal(t, "/pyoco/flows/etl", ev.Source())
				require.Equal(t, runID, ev.Subject())
				require.Equal(t, cloudevents.ApplicationJSON, ev.DataContentType())
				require.False(t, ev.Time().IsZero())
				require.Equal(t, "00-"+run.TraceID+"-"+run.SpanID+"-01", ev.Extensions()["traceparent"])
				var data struct {
					RunID       string                    `json:"run_id"`
					Status      string                    `json:"status"`
					TaskSummary map[string]map[string]any `json:"task_summary"`
				}
				require.NoError(t, json.Unmarshal(ev.Data(), &data))
				require.Equal(t, runID, data.RunID)
				require.Equal(t, "FAILED", data.Status)
				require.Contains(t, data.TaskSummary, "a")
			}
		})
	}
}

// TestCloudEventsContentType: structured mode says so in its Content-Type,
// and an endpoint of that format needs no secret.
func TestCloudEventsContentType(t *testing.T) {
	t.Parallel()
	var ct string
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ct = r.Header.Get("Content-Type")
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(recv.Close)
	body, err := webhooks.Body(webhooks.FormatCloudEvents, "msg_1", webhooks.EventRunFailed, webhooks.SampleRun(time.Now()).EndedAt, webhooks.SampleRun(time.Now()))
	require.NoError(t, err)
	_, err = webhooks.Send(t.Context(), recv.Client(), &webhooks.Request{URL: recv.URL, ID: "msg_1", Body: body, Format: webhooks.FormatCloudEvents})
	require.NoError(t, err)
	require.Equal(t, webhooks.CloudEventsContentType, ct)
	_, err = webhooks.NewEndpoint(webhooks.EndpointConfig{URL: recv.URL, Format: webhooks.FormatCloudEvents}, nil)
	require.NoError(t, err)
	_, err = webhooks.NewEndpoint(webhooks.EndpointConfig{URL: recv.URL, Format: "xml"}, nil)
	require.ErrorContains(t, err, "want standard, slack or cloudevents")
}

// TestStartCounters: a process without webhooks serves
// pyoco_webhook_deliveries_total at 0 for every event and outcome.
func TestStartCounters(t *testing.T) {
	t.Parallel()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { require.NoError(t, mp.Shutdown(context.Background())) })
	require.NoError(t, webhooks.StartCounters(mp))
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(t.Context(), &rm))
	require.Len(t, rm.ScopeMetrics, 1)
	sum, ok := rm.ScopeMetrics[0].Metrics[0].Data.(metricdata.Sum[int64])
	require.True(t, ok)
	require.Len(t, sum.DataPoints, len(webhooks.Events)*3)
	for _, dp := range sum.DataPoints {
		require.Zero(t, dp.Value)
		require.Empty(t, dp.Exemplars)
	}
}
