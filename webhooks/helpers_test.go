package webhooks_test

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/memstore"
	"github.com/pyoco/pyoco/internal/redistest"
	"github.com/pyoco/pyoco/redisstore"
	"github.com/pyoco/pyoco/webhooks"
	"github.com/pyoco/pyoco/webhooks/delivery"
)

func TestMain(m *testing.M) {
	redis.SetLogger(quietLogger{})
	goleak.VerifyTestMain(redistest.Runner(m))
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// The Redis store is a delivery.Store.
var _ delivery.Store = (*redisstore.Store)(nil)

// backend is a run store with its webhook store.
type backend struct {
	runs engine.RunStore
	ws   delivery.Store
	// newWS returns another webhook store on the same state (a second
	// server); for memory, the same one.
	newWS func() delivery.Store
}

var backends = []struct {
	name string
	make func(t testing.TB) *backend
}{
	{"Memory", func(t testing.TB) *backend {
		ms := memstore.New()
		ws := memstore.NewWebhookStore(ms)
		ws.PollInterval = 5 * time.Millisecond
		return &backend{runs: ms, ws: ws, newWS: func() delivery.Store { return ws }}
	}},
	{"Redis", func(t testing.TB) *backend {
		c := redistest.Client(t)
		ns := redistest.Namespace(t, c)
		mk := func() *redisstore.Store {
			s, err := redisstore.New(c, &redisstore.Config{Namespace: ns})
			require.NoError(t, err)
			return s
		}
		s := mk()
		return &backend{runs: s, ws: s, newWS: func() delivery.Store { return mk() }}
	}},
}

// newSecret returns a fresh whsec_ secret.
func newSecret(t testing.TB) string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}

// verify checks a request's Standard Webhooks signature with secret. It is
// written from the spec text (standardwebhooks.com), not from the signing
// code: the signed content is "<webhook-id>.<webhook-timestamp>.<body>",
// HMAC-SHA256 with the base64-decoded part of the secret after "whsec_";
// webhook-signature is a space-delimited list of "v1,<base64>" entries, any
// of which may match; the timestamp must be within 5 minutes.
func verify(h http.Header, body []byte, secret string) error {
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return errors.New("missing webhook-id, webhook-timestamp or webhook-signature")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("bad timestamp")
	}
	if d := time.Since(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return errors.New("timestamp out of tolerance")
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "." + string(body)))
	want := mac.Sum(nil)
	for _, s := range strings.Split(sigs, " ") {
		version, b64, ok := strings.Cut(s, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return errors.New("no matching signature")
}

// hit is one request a receiver got.
type hit struct {
	header http.Header
	body   []byte
	at     time.Time
}

// receiver is a real HTTP server on loopback whose answers the test scripts.
type receiver struct {
	t      testing.TB
	mu     sync.Mutex
	hits   []hit
	answer func(n int, r *http.Request, w http.ResponseWriter) // n counts from 1
	srv    *http.Server
	ln     net.Listener
	addr   string
	done   chan struct{}
}

// newReceiver starts a receiver on a free port (on addr if given).
func newReceiver(t testing.TB, addr string, answer func(n int, r *http.Request, w http.ResponseWriter)) *receiver {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var (
		ln  net.Listener
		err error
	)
	for range 50 { // the port of a closed receiver may take a moment to free
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(t, err)
	rc := &receiver{t: t, answer: answer, ln: ln, addr: ln.Addr().String(), done: make(chan struct{})}
	rc.srv = &http.Server{Handler: http.HandlerFunc(rc.serve), ReadHeaderTimeout: 5 * time.Second}
	go func() { defer close(rc.done); _ = rc.srv.Serve(ln) }()
	t.Cleanup(rc.close)
	return rc
}

func (rc *receiver) url() string { return "http://" + rc.addr + "/hook" }

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.hits = append(rc.hits, hit{header: r.Header.Clone(), body: body, at: time.Now()})
	n := len(rc.hits)
	rc.mu.Unlock()
	if rc.answer == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	rc.answer(n, r, w)
}

func (rc *receiver) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = rc.srv.Shutdown(ctx)
	_ = rc.srv.Close()
	<-rc.done
}

func (rc *receiver) got() []hit {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]hit(nil), rc.hits...)
}

// finishRun creates a run of flow and ends it in status st; it returns the
// run's id.
func finishRun(t testing.TB, runs engine.RunStore, flow string, st engine.RunStatus) string {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	r := &engine.Run{ID: engine.NewRunID(), FlowName: flow, Status: engine.RunPending, CreatedAt: now,
		TraceID: engine.NewTraceID().String(), SpanID: engine.NewSpanID().String(),
		Tasks: map[string]*engine.TaskState{
			"a": {Name: "a", Use: "shell", Status: engine.TaskPending},
		}}
	require.NoError(t, runs.RunCreate(ctx, r))
	_, err := runs.RunStart(ctx, &engine.RunStartParams{RunID: r.ID, WorkerID: "w", At: now})
	require.NoError(t, err)
	ts := engine.TaskSucceeded
	msg := ""
	if st == engine.RunFailed {
		ts, msg = engine.TaskFailed, "boom"
	}
	require.NoError(t, runs.TaskUpdate(ctx, &engine.TaskUpdateParams{RunID: r.ID, Task: "a", Status: ts, Error: msg,
		StartedAt: now, EndedAt: now.Add(time.Millisecond)}))
	_, err = runs.RunFinish(ctx, &engine.RunFinishParams{RunID: r.ID, Status: st, At: now.Add(2 * time.Millisecond), Error: msg})
	require.NoError(t, err)
	return r.ID
}

// endpoint builds an endpoint or fails the test.
func endpoint(t testing.TB, c webhooks.EndpointConfig) *webhooks.Endpoint {
	t.Helper()
	ep, err := webhooks.NewEndpoint(c, nil)
	require.NoError(t, err)
	return ep
}

// fastConfig is a dispatcher config with millisecond timings.
func fastConfig(eps ...*webhooks.Endpoint) *webhooks.Config {
	return &webhooks.Config{Endpoints: eps, RetrySchedule: []time.Duration{10 * time.Millisecond, 20 * time.Millisecond,
		30 * time.Millisecond, 40 * time.Millisecond}, Timeout: 2 * time.Second, Jitter: -1, PollInterval: 10 * time.Millisecond,
		ClaimIdle: 300 * time.Millisecond}
}

// start starts a dispatcher and stops it at cleanup.
func start(t testing.TB, runs engine.RunStore, ws delivery.Store, cfg *webhooks.Config) *webhooks.Dispatcher {
	t.Helper()
	d, err := webhooks.New(runs, ws, cfg)
	require.NoError(t, err)
	require.NoError(t, d.Start(context.Background()))
	t.Cleanup(func() { stop(t, d) })
	return d
}

func stop(t testing.TB, d *webhooks.Dispatcher) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, d.Stop(ctx))
}

// delivery waits until the log holds a delivery of run runID in status st.
func waitDelivery(t testing.TB, ws delivery.Store, runID string, st delivery.Status) *delivery.Delivery {
	t.Helper()
	var found *delivery.Delivery
	require.Eventually(t, func() bool {
		ds, err := ws.WebhookDeliveryList(context.Background(), &delivery.ListParams{Status: st, Limit: 500})
		require.NoError(t, err)
		for _, d := range ds {
			if d.RunID == runID {
				found = d
				return true
			}
		}
		return false
	}, 15*time.Second, 5*time.Millisecond, "no %s delivery of run %s", st, runID)
	return found
}
