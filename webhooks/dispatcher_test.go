package webhooks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/memstore"
	"github.com/pyoco/pyoco/webhooks"
	"github.com/pyoco/pyoco/webhooks/delivery"
)

// A receiver that fails three times, then accepts, gets exactly one
// accepted delivery, with the same webhook-id and a valid signature (by a
// verifier written from the spec) on every attempt, one signature per
// secret during a rotation. The attempts are counted and traced in the
// run's trace.
func TestDeliveryRetriedUntilAccepted(t *testing.T) {
	t.Parallel()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			b := be.make(t)
			rc := newReceiver(t, "", func(n int, r *http.Request, w http.ResponseWriter) {
				if n <= 3 {
					http.Error(w, "not now", http.StatusInternalServerError)
					return
				}
				w.WriteHeader(http.StatusOK)
			})
			newS, oldS := newSecret(t), newSecret(t)
			ep := endpoint(t, webhooks.EndpointConfig{URL: rc.url(), Secret: newS + " " + oldS})
			reader := sdkmetric.NewManualReader()
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithIDGenerator(engine.IDGenerator{}))
			cfg := fastConfig(ep)
			cfg.MeterProvider, cfg.TracerProvider = mp, tp
			start(t, b.runs, b.ws, cfg)

			runID := finishRun(t, b.runs, "etl", engine.RunFailed)
			d := waitDelivery(t, b.ws, runID, delivery.Succeeded)
			require.Equal(t, 4, d.Attempts)
			require.Equal(t, 200, d.LastStatusCode)
			require.Equal(t, webhooks.EventRunFailed, d.Event)
			require.Regexp(t, `^msg_[0-9a-f]{26}$`, d.ID)

			hits := rc.got()
			require.Len(t, hits, 4)
			for i, h := range hits {
				require.Equal(t, d.ID, h.header.Get("webhook-id"), "attempt %d", i+1)
				require.NoError(t, verify(h.header, h.body, newS), "attempt %d, new secret", i+1)
				require.NoError(t, verify(h.header, h.body, oldS), "attempt %d, old secret", i+1)
				require.Error(t, verify(h.header, h.body, newSecret(t)))
				require.Len(t, strings.Fields(h.header.Get("webhook-signature")), 2)
				require.Equal(t, "application/json", h.header.Get("Content-Type"))
			}
			var p struct {
				Type      string          `json:"type"`
				Timestamp string          `json:"timestamp"`
				Data      json.RawMessage `json:"data"`
			}
			require.NoError(t, json.Unmarshal(hits[0].body, &p))
			require.Equal(t, "run.failed", p.Type)
			require.NotEmpty(t, p.Timestamp)
			var data map[string]any
			require.NoError(t, json.Unmarshal(p.Data, &data))
			require.Equal(t, runID, data["run_id"])
			require.Equal(t, "FAILED", data["status"])
			require.Contains(t, data["task_summary"], "a")

			// Metrics: 3 retries, 1 success (the success is counted just
			// after the delivery is stored as succeeded: poll).
			collect := func() map[string]int64 {
				var rm metricdata.ResourceMetrics
				require.NoError(t, reader.Collect(context.Background(), &rm))
				got := map[string]int64{}
				for _, sm := range rm.ScopeMetrics {
					for _, m := range sm.Metrics {
						if m.Name != webhooks.MetricDeliveries {
							continue
						}
						for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
							ev, _ := dp.Attributes.Value("event")
							oc, _ := dp.Attributes.Value("outcome")
							if dp.Value != 0 { // every series starts at 0
								got[ev.AsString()+"/"+oc.AsString()] += dp.Value
							}
						}
					}
				}
				return got
			}
			want := map[string]int64{"run.failed/retry": 3, "run.failed/success": 1}
			require.Eventually(t, func() bool { return maps.Equal(want, collect()) }, 5*time.Second, 5*time.Millisecond)
			require.Equal(t, want, collect())

			// One span per attempt, in the run's trace.
			run, err := b.runs.RunGet(context.Background(), runID)
			require.NoError(t, err)
			require.Eventually(t, func() bool { return len(rec.Ended()) >= 4 }, 5*time.Second, 5*time.Millisecond)
			for _, s := range rec.Ended() {
				require.Equal(t, run.TraceID, s.SpanContext().TraceID().String())
			}
			require.NoError(t, tp.Shutdown(context.Background()))
		})
	}
}

// A receiver that is down while the dispatcher restarts still gets the
// events after the restart: the one attempted before the stop and the one
// of a run that ended while no dispatcher ran.
func TestDeliverySurvivesRestart(t *testing.T) {
	t.Parallel()
	b := backends[1].make(t) // Redis: what survives a restart
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens: connection refused
	ep := endpoint(t, webhooks.EndpointConfig{URL: "http://" + addr + "/hook", Secret: newSecret(t)})

	cfg := fastConfig(ep)
	cfg.RetrySchedule = []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond,
		400 * time.Millisecond, 800 * time.Millisecond, time.Second}
	d1, err := webhooks.New(b.runs, b.ws, cfg)
	require.NoError(t, err)
	require.NoError(t, d1.Start(context.Background()))
	run1 := finishRun(t, b.runs, "etl", engine.RunCompleted)
	dl := waitDelivery(t, b.ws, run1, delivery.Pending)
	require.Eventually(t, func() bool {
		got, err := b.ws.WebhookDeliveryGet(context.Background(), dl.ID)
		require.NoError(t, err)
		return got.Attempts >= 1
	}, 10*time.Second, 5*time.Millisecond)
	stop(t, d1)

	run2 := finishRun(t, b.runs, "etl", engine.RunFailed) // while no dispatcher runs
	rc := newReceiver(t, addr, nil)
	cfg2 := fastConfig(ep)
	cfg2.Consumer = "second-server"
	start(t, b.runs, b.newWS(), cfg2)
	d1done := waitDelivery(t, b.ws, run1, delivery.Succeeded)
	d2done := waitDelivery(t, b.ws, run2, delivery.Succeeded)
	require.GreaterOrEqual(t, d1done.Attempts, 2)
	require.Equal(t, 1, d2done.Attempts)
	ids := map[string]int{}
	for _, h := range rc.got() {
		ids[h.header.Get("webhook-id")]++
	}
	require.Equal(t, map[string]int{d1done.ID: 1, d2done.ID: 1}, ids)
}

// A slow receiver hits the timeout and is retried.
func TestSlowReceiverTimesOut(t *testing.T) {
	t.Parallel()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			b := be.make(t)
			rc := newReceiver(t, "", func(n int, r *http.Request, w http.ResponseWriter) {
				if n == 1 {
					select { // slower than the timeout
					case <-r.Context().Done():
					case <-time.After(5 * time.Second):
					}
					return
				}
				w.WriteHeader(http.StatusAccepted)
			})
			ep := endpoint(t, webhooks.EndpointConfig{URL: rc.url(), Secret: newSecret(t), Timeout: "150ms"})
			start(t, b.runs, b.ws, fastConfig(ep))
			runID := finishRun(t, b.runs, "etl", engine.RunCompleted)
			d := waitDelivery(t, b.ws, runID, delivery.Succeeded)
			require.Equal(t, 2, d.Attempts)
			require.Equal(t, 202, d.LastStatusCode)
			hits := rc.got()
			require.Len(t, hits, 2)
			require.Equal(t, hits[0].header.Get("webhook-id"), hits[1].header.Get("webhook-id"))
		})
	}
}

// 410 Gone stops the retries and disables the endpoint (later deliveries
// are logged failed); a manual retry sends again and enables it.
func TestGoneDisablesEndpoint(t *testing.T) {
	t.Parallel()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			b := be.make(t)
			var gone sync.Mutex
			isGone := true
			rc := newReceiver(t, "", func(n int, r *http.Request, w http.ResponseWriter) {
				gone.Lock()
				defer gone.Unlock()
				if isGone {
					w.WriteHeader(http.StatusGone)
					return
				}
				w.WriteHeader(http.StatusOK)
			})
			ep := endpoint(t, webhooks.EndpointConfig{URL: rc.url(), Secret: newSecret(t)})
			start(t, b.runs, b.ws, fastConfig(ep))
			run1 := finishRun(t, b.runs, "etl", engine.RunFailed)
			d := waitDelivery(t, b.ws, run1, delivery.Failed)
			require.Equal(t, 1, d.Attempts)
			require.Equal(t, 410, d.LastStatusCode)
			require.Contains(t, d.LastError, "endpoint disabled")

			run2 := finishRun(t, b.runs, "etl", engine.RunCompleted)
			d2 := waitDelivery(t, b.ws, run2, delivery.Failed)
			require.Equal(t, 0, d2.Attempts)
			require.Contains(t, d2.LastError, "endpoint disabled: 410 Gone")
			time.Sleep(100 * time.Millisecond) // ten retry periods: nothing more is sent
			require.Len(t, rc.got(), 1)

			gone.Lock()
			isGone = false
			gone.Unlock()
			r, err := b.ws.WebhookDeliveryRetry(context.Background(), d.ID, time.Now())
			require.NoError(t, err)
			require.Equal(t, delivery.Pending, r.Status)
			require.Eventually(t, func() bool {
				got, err := b.ws.WebhookDeliveryGet(context.Background(), d.ID)
				require.NoError(t, err)
				return got.Status == delivery.Succeeded && got.Attempts == 2
			}, 10*time.Second, 5*time.Millisecond)
			_, err = b.ws.WebhookDeliveryRetry(context.Background(), "msg_nope", time.Now())
			require.ErrorIs(t, err, engine.ErrNotFound)
		})
	}
}

// 429 with Retry-After waits at least that long; 3xx is a failure.
func TestRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			b := be.make(t)
			rc := newReceiver(t, "", func(n int, r *http.Request, w http.ResponseWriter) {
				switch n {
				case 1:
					w.Header().Set("Retry-After", "1")
					w.WriteHeader(http.StatusTooManyRequests)
				case 2:
					w.Header().Set("Location", "http://example.org/")
					w.WriteHeader(http.StatusFound)
				default:
					w.WriteHeader(http.StatusOK)
				}
			})
			ep := endpoint(t, webhooks.EndpointConfig{URL: rc.url(), Secret: newSecret(t)})
			start(t, b.runs, b.ws, fastConfig(ep))
			runID := finishRun(t, b.runs, "etl", engine.RunCompleted)
			d := waitDelivery(t, b.ws, runID, delivery.Succeeded)
			require.Equal(t, 3, d.Attempts)
			hits := rc.got()
			require.Len(t, hits, 3)
			// On the wall clock, which the schedule follows: a VM's clock
			// can slew a few ms a second against the monotonic one.
			require.GreaterOrEqual(t, hits[1].at.Round(0).Sub(hits[0].at.Round(0)), time.Second)
		})
	}
}

// After the last scheduled attempt the delivery is failed and kept.
func TestDeliveryFailsAfterSchedule(t *testing.T) {
	t.Parallel()
	b := backends[0].make(t)
	rc := newReceiver(t, "", func(n int, r *http.Request, w http.ResponseWriter) {
		http.Error(w, "broken", http.StatusBadGateway)
	})
	ep := endpoint(t, webhooks.EndpointConfig{URL: rc.url(), Format: "slack", RetrySchedule: []string{"5ms", "5ms"}})
	start(t, b.runs, b.ws, fastConfig(ep))
	runID := finishRun(t, b.runs, "etl", engine.RunFailed)
	d := waitDelivery(t, b.ws, runID, delivery.Failed)
	require.Equal(t, 3, d.Attempts)
	require.Equal(t, 502, d.LastStatusCode)
	require.Contains(t, d.LastError, "broken")
	hits := rc.got()
	require.Len(t, hits, 3)
	require.Empty(t, hits[0].header.Get("webhook-signature"))
	var slack map[string]string
	require.NoError(t, json.Unmarshal(hits[0].body, &slack))
	require.Contains(t, slack["text"], "*etl* FAILED")
	require.Contains(t, slack["text"], "Failed task: `a`: boom")
	require.Contains(t, slack["text"], runID)
}

// Many runs ending at once, with two dispatchers on one Redis, give exactly
// one delivery per event per endpoint; events and flows are filtered.
func TestConcurrentRunsTwoDispatchers(t *testing.T) {
	t.Parallel()
	b := backends[1].make(t)
	var mu sync.Mutex
	got := map[string]map[string]int{} // path → webhook-id → count
	rc := newReceiver(t, "", func(n int, r *http.Request, w http.ResponseWriter) {
		mu.Lock()
		if got[r.URL.Path] == nil {
			got[r.URL.Path] = map[string]int{}
		}
		got[r.URL.Path][r.Header.Get("webhook-id")]++
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	})
	base := "http://" + rc.addr
	eps := func() []*webhooks.Endpoint {
		return []*webhooks.Endpoint{
			endpoint(t, webhooks.EndpointConfig{URL: base + "/all", Secret: newSecret(t), Events: webhooks.Events}),
			endpoint(t, webhooks.EndpointConfig{URL: base + "/failed-etl", Secret: newSecret(t), Events: []string{"run.failed"}, Flows: []string{"etl"}}),
		}
	}
	c1, c2 := fastConfig(eps()...), fastConfig(eps()...)
	c1.Consumer, c2.Consumer = "server-1", "server-2"
	c1.Timeout, c2.Timeout = 10*time.Second, 10*time.Second // a loaded machine is no reason to retry
	var logs syncBuffer
	c1.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c2.Logger = c1.Logger
	start(t, b.runs, b.ws, c1)
	start(t, b.runs, b.newWS(), c2)

	const n = 40
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := []engine.RunStatus{engine.RunCompleted, engine.RunFailed}[i%2]
			flow := []string{"etl", "report"}[(i/2)%2]
			finishRun(t, b.runs, flow, st)
		}()
	}
	wg.Wait()
	if !assert.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got["/all"]) == n && len(got["/failed-etl"]) == n/4
	}, time.Minute, 10*time.Millisecond) {
		ds, err := b.ws.WebhookDeliveryList(context.Background(), &delivery.ListParams{Limit: 500})
		require.NoError(t, err)
		for _, d := range ds {
			t.Logf("%s %s %s attempts=%d code=%d err=%q next=%s", d.ID, d.URL, d.Status, d.Attempts, d.LastStatusCode, d.LastError, d.NextAttempt)
		}
		mu.Lock()
		t.Logf("received: /all %d, /failed-etl %d", len(got["/all"]), len(got["/failed-etl"]))
		mu.Unlock()
		t.Fatalf("not all delivered; logs:\n%s", logs.String())
	}
	time.Sleep(200 * time.Millisecond) // any duplicate would arrive by now
	mu.Lock()
	defer mu.Unlock()
	for path, ids := range got {
		for id, c := range ids {
			require.Equal(t, 1, c, "%s got %s %d times", path, id, c)
		}
	}
	require.Len(t, got["/all"], n)
	require.Len(t, got["/failed-etl"], n/4)
	ds, err := b.ws.WebhookDeliveryList(context.Background(), &delivery.ListParams{Status: delivery.Succeeded, Limit: 500})
	require.NoError(t, err)
	require.Len(t, ds, n+n/4)
	all, err := b.ws.WebhookDeliveryList(context.Background(), &delivery.ListParams{Limit: 7})
	require.NoError(t, err)
	require.Len(t, all, 7)
}

func TestNewConfigErrors(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]webhooks.Config{
		"schedule": {RetrySchedule: []time.Duration{time.Second, 0}},
		"timeout":  {Timeout: -1},
		"jitter":   {Jitter: 2},
		"conc":     {Concurrency: -2},
		"endpoint": {Endpoints: []*webhooks.Endpoint{{URL: "http://x"}}},
	} {
		_, err := webhooks.New(fakeRuns{}, memstore.NewWebhookStore(nil), &cfg)
		require.Error(t, err, name)
		require.Contains(t, err.Error(), "Config.", name)
	}
}

type fakeRuns struct{ engine.RunStore }

func ExampleSign() {
	key := []byte("0123456789abcdef0123456789abcdef")
	fmt.Println(webhooks.Sign("msg_1", time.Unix(1700000000, 0), []byte(`{}`), [][]byte{key}))
	// Output: v1,2c4VI0bO4Wd5svqP2unEA9pCk0dTAXr/elrHCJ+/efk=
}

// syncBuffer is a strings.Builder safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
