package webhooks_test

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/webhooks"
)

// BenchmarkDelivery measures run end → accepted delivery: b.N runs end,
// one endpoint, one dispatcher, a loopback receiver answering 204 at once.
// ns/op is the dispatcher's cost per delivery (event read, payload,
// create, claim, request, update).
func BenchmarkDelivery(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			bk := be.make(b)
			var n atomic.Int64
			rc := newReceiver(b, "", func(_ int, _ *http.Request, w http.ResponseWriter) {
				n.Add(1)
				w.WriteHeader(http.StatusNoContent)
			})
			ep := endpoint(b, webhooks.EndpointConfig{URL: rc.url(), Secret: newSecret(b)})
			// Runs end before the dispatcher starts, so only delivery is timed.
			cfg := fastConfig(ep)
			d, err := webhooks.New(bk.runs, bk.ws, cfg)
			if err != nil {
				b.Fatal(err)
			}
			if err := bk.ws.WebhookEventInit(b.Context(), ep.Key); err != nil {
				b.Fatal(err)
			}
			for range b.N {
				finishRun(b, bk.runs, "etl", engine.RunCompleted)
			}
			b.ResetTimer()
			if err := d.Start(b.Context()); err != nil {
				b.Fatal(err)
			}
			for n.Load() < int64(b.N) {
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			stop(b, d)
		})
	}
}
