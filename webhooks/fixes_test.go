package webhooks_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/internal/redistest"
	"github.com/pyoco/pyoco/redisstore"
	"github.com/pyoco/pyoco/webhooks"
	"github.com/pyoco/pyoco/webhooks/delivery"
)

// Two servers with different endpoint sets (a rolling configuration
// change): A knows E1, B knows E1 and E2. Every event reaches every
// endpoint exactly once, and no delivery fails because the server that saw
// it does not know its endpoint.
func TestHeterogeneousEndpoints(t *testing.T) {
	t.Parallel()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			b := be.make(t)
			var mu sync.Mutex
			got := map[string]map[string]int{} // path → webhook-id → count
			rc := newReceiver(t, "", func(n int, r *http.Request, w http.ResponseWriter) {
				mu.Lock()
				if got[r.URL.Path] == nil {
					got[r.URL.Path] = map[string]int{}
				}
				got[r.URL.Path][r.Header.Get("webhook-id")]++
				mu.Unlock()
				w.WriteHeader(http.StatusNoContent)
			})
			sec := newSecret(t)
			e1 := func() *webhooks.Endpoint {
				return endpoint(t, webhooks.EndpointConfig{URL: "http://" + rc.addr + "/hook-one", Secret: sec})
			}
			e2 := endpoint(t, webhooks.EndpointConfig{URL: "http://" + rc.addr + "/hook-two", Secret: sec})
			ca, cb := fastConfig(e1()), fastConfig(e1(), e2)
			ca.Consumer, cb.Consumer = "server-a", "server-b"
			ca.Timeout, cb.Timeout = 10*time.Second, 10*time.Second
			start(t, b.runs, b.ws, ca)
			start(t, b.runs, b.newWS(), cb)
			const n = 40
			for range n {
				finishRun(t, b.runs, "etl", engine.RunFailed)
			}
			require.Eventually(t, func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(got["/hook-one"]) == n && len(got["/hook-two"]) == n
			}, time.Minute, 10*time.Millisecond)
			time.Sleep(200 * time.Millisecond) // any duplicate would arrive by now
			mu.Lock()
			for path, ids := range got {
				for id, c := range ids {
					require.Equal(t, 1, c, "%s got %s %d times", path, id, c)
				}
			}
			mu.Unlock()
			failed, err := b.ws.WebhookDeliveryList(context.Background(), &delivery.ListParams{Status: delivery.Failed, Limit: 500})
			require.NoError(t, err)
			require.Empty(t, failed)
			ok, err := b.ws.WebhookDeliveryList(context.Background(), &delivery.ListParams{Status: delivery.Succeeded, Limit: 500})
			require.NoError(t, err)
			require.Len(t, ok, 2*n)
			for _, d := range ok {
				require.True(t, strings.HasSuffix(d.URL, "/…-one") || strings.HasSuffix(d.URL, "/…-two"), d.URL)
			}
		})
	}
}

// A claim takes only deliveries to the caller's endpoints, and fails due
// deliveries to an endpoint disabled by a 410 answer instead of handing
// them out.
func TestClaimByEndpointAndDisabled(t *testing.T) {
	t.Parallel()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			b := be.make(t)
			ctx := context.Background()
			now := time.Now().Add(-time.Second)
			for i, ep := range []string{"gone", "gone", "gone", "other"} {
				_, err := b.ws.WebhookDeliveryCreate(ctx, &delivery.Delivery{ID: "msg_" + string(rune('a'+i)), Event: "run.failed",
					RunID: "r", Endpoint: ep, URL: "http://x/" + ep, Body: []byte("{}"), CreatedAt: now}, time.Hour)
				require.NoError(t, err)
			}
			claim := func(token string, eps ...string) []*delivery.Delivery {
				ds, err := b.ws.WebhookDeliveryClaim(ctx, &delivery.ClaimParams{Lease: time.Minute, Limit: 10,
					Token: token, Endpoints: eps, Retention: time.Hour})
				require.NoError(t, err)
				return ds
			}
			require.Empty(t, claim("x", "unknown"))
			first := claim("A", "gone")
			require.Len(t, first, 3)
			for _, d := range first[1:] { // handed back (a dispatcher stopping)
				d.UpdatedAt, d.NextAttempt = time.Now(), now
				require.NoError(t, b.ws.WebhookDeliveryUpdate(ctx, &delivery.UpdateParams{Delivery: d}))
			}
			d := first[0]
			d.Status, d.Attempts, d.LastStatusCode, d.UpdatedAt = delivery.Failed, 1, 410, time.Now()
			require.NoError(t, b.ws.WebhookDeliveryUpdate(ctx, &delivery.UpdateParams{Delivery: d,
				Retention: time.Hour, DisableEndpoint: "410 Gone at now"}))

			require.Empty(t, claim("B", "gone"), "pending deliveries to a disabled endpoint are not sent")
			for _, x := range first[1:] {
				got, err := b.ws.WebhookDeliveryGet(ctx, x.ID)
				require.NoError(t, err)
				require.Equal(t, delivery.Failed, got.Status)
				require.Equal(t, 0, got.Attempts)
				require.Contains(t, got.LastError, "endpoint disabled after 410 Gone")
			}
			other := claim("C", "other", "gone")
			require.Len(t, other, 1)
			require.Equal(t, "other", other[0].Endpoint)
		})
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"https://hooks.slack.com/services/T000/B000/XXXXXXXXabcd": "https://hooks.slack.com/…abcd",
		"https://user:pw@example.org/hook?token=s#f":              "https://example.org/hook",
		"http://example.org":       "http://example.org",
		"http://example.org/":      "http://example.org/",
		"http://example.org/ab":    "http://example.org/ab",
		"http://[::1]:8080/x/hook": "http://[::1]:8080/…hook",
	} {
		assert.Equal(t, want, webhooks.RedactURL(in), in)
	}
	_, err := webhooks.NewEndpoint(webhooks.EndpointConfig{URL: "ftp://hooks.example.org/secret-path-1234"}, nil)
	require.ErrorContains(t, err, "ftp://hooks.example.org/…1234")
	require.NotContains(t, err.Error(), "secret-path")
}

// Redis becomes unreachable while the receiver answers: the outcome is
// recorded once Redis is back (the update keeps trying while the claim
// holds), so the delivery is sent once, not again when the claim lapses.
// The outage is logged once per loop, and its end too.
func TestOutcomeRecordedAfterRedisOutage(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t)
	px := newProxy(t, srv.Addr())
	opts := srv.Options()
	opts.Addr = px.addr
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	s, err := redisstore.New(c, &redisstore.Config{Namespace: "outage"})
	require.NoError(t, err)

	hitc, resume := make(chan struct{}), make(chan struct{})
	rc := newReceiver(t, "", func(n int, r *http.Request, w http.ResponseWriter) {
		if n == 1 {
			close(hitc)
			<-resume
		}
		w.WriteHeader(http.StatusNoContent)
	})
	var logs syncBuffer
	cfg := fastConfig(endpoint(t, webhooks.EndpointConfig{URL: rc.url(), Secret: newSecret(t)}))
	cfg.Timeout = 20 * time.Second
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	start(t, s, s, cfg)
	run := finishRun(t, s, "etl", engine.RunCompleted)
	<-hitc
	px.down()
	close(resume)
	time.Sleep(4 * time.Second) // longer than the old retry budget (2.6s)
	px.up()
	d := waitDelivery(t, s, run, delivery.Succeeded)
	require.Equal(t, 1, d.Attempts)
	require.Len(t, rc.got(), 1)
	require.Eventually(t, func() bool { return strings.Count(logs.String(), "works again") >= 2 }, 15*time.Second,
		10*time.Millisecond, logs.String())
	out := logs.String()
	require.LessOrEqual(t, strings.Count(out, "failing; retrying with back-off"), 4, out) // not one per poll
}

// Events trimmed from the run-events stream while no dispatcher ran are
// logged as an error and counted in pyoco.webhook.events.lost; later
// events are delivered.
func TestTrimmedEventsCounted(t *testing.T) {
	t.Parallel()
	c := redistest.Client(t)
	ns := redistest.Namespace(t, c)
	s, err := redisstore.New(c, &redisstore.Config{Namespace: ns})
	require.NoError(t, err)
	rc := newReceiver(t, "", nil)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	var logs syncBuffer
	cfg := fastConfig(endpoint(t, webhooks.EndpointConfig{URL: rc.url(), Secret: newSecret(t)}))
	cfg.MeterProvider = mp
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	d, err := webhooks.New(s, s, cfg)
	require.NoError(t, err)
	require.NoError(t, d.Start(context.Background())) // creates the endpoint's group
	stop(t, d)
	for range 4 { // 3 events each: PENDING, RUNNING, FAILED
		finishRun(t, s, "etl", engine.RunFailed)
	}
	require.NoError(t, c.XTrimMaxLen(context.Background(), "{"+ns+"}:events", 0).Err())
	run := finishRun(t, s, "etl", engine.RunFailed)
	start(t, s, s, cfg)
	waitDelivery(t, s, run, delivery.Succeeded)
	require.Len(t, rc.got(), 1)
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	var lost int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == webhooks.MetricEventsLost {
				for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
					lost += dp.Value
				}
			}
		}
	}
	require.Equal(t, int64(12), lost)
	require.Contains(t, logs.String(), "level=ERROR")
	require.Contains(t, logs.String(), "lost=12")
}

// proxy forwards TCP connections to a Redis server; down cuts them all and
// closes every new one at once (an outage), up forwards again. It keeps
// its listener, so no other test can take its port meanwhile.
type proxy struct {
	target, addr string
	mu           sync.Mutex
	cut          bool
	conns        map[net.Conn]bool
	wg           sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{target: target, addr: ln.Addr().String(), conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			p.forward(in)
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); p.down(); p.wg.Wait() })
	return p
}

func (p *proxy) forward(in net.Conn) {
	p.mu.Lock()
	cut := p.cut
	p.mu.Unlock()
	var out net.Conn
	var err error
	if !cut {
		out, err = net.Dial("tcp", p.target)
	}
	if cut || err != nil {
		_ = in.Close()
		return
	}
	p.mu.Lock()
	if p.cut { // went down meanwhile
		p.mu.Unlock()
		_, _ = in.Close(), out.Close()
		return
	}
	p.conns[in], p.conns[out] = true, true
	p.mu.Unlock()
	pipe := func(dst, src net.Conn) {
		defer p.wg.Done()
		_, _ = io.Copy(dst, src)
		_, _ = dst.Close(), src.Close()
	}
	p.wg.Add(2)
	go pipe(in, out)
	go pipe(out, in)
}

func (p *proxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}

func (p *proxy) up() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}
