package webhooks

import (
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/pyoco/pyoco/internal/backoff"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/webhooks/delivery"
)

// Defaults of [Config].
const (
	DefaultTimeout      = 10 * time.Second
	DefaultPollInterval = time.Second
	DefaultClaimIdle    = time.Minute
	DefaultConcurrency  = 8
	DefaultRetention    = 168 * time.Hour
	DefaultJitter       = 0.1
)

// DefaultRetrySchedule is the wait after each failed attempt (SPEC §8): a
// delivery is tried at most len+1 times, over about 8 hours.
var DefaultRetrySchedule = []time.Duration{
	5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute,
	30 * time.Minute, time.Hour, 2 * time.Hour, 4 * time.Hour,
}

// MetricEventsLost is the counter of run events trimmed from the Redis
// run-events stream (redisstore Config.EventMaxLen) before an endpoint's
// dispatchers read them, by endpoint (key): their deliveries never exist.
// Prometheus shows it as pyoco_webhook_events_lost_total.
const MetricEventsLost = "pyoco.webhook.events.lost"

// MetricDeliveries is the counter of delivery attempts by event and outcome
// (success, retry, failed); Prometheus shows it as
// pyoco_webhook_deliveries_total.
const MetricDeliveries = "pyoco.webhook.deliveries"

// Outcomes of an attempt (the outcome label).
const (
	OutcomeSuccess = "success"
	OutcomeRetry   = "retry"
	OutcomeFailed  = "failed"
)

// Config tunes a [Dispatcher]. Zero values mean the defaults.
type Config struct {
	// Endpoints receive the deliveries. Each has its own read of the
	// run-events stream (its consumer group), so servers may differ in
	// their endpoints. A dispatcher without endpoints does nothing.
	Endpoints []*Endpoint
	// RetrySchedule is the wait after each failed attempt, for endpoints
	// without their own. Defaults to [DefaultRetrySchedule].
	RetrySchedule []time.Duration
	// Timeout bounds each request, for endpoints without their own.
	// Defaults to 10s.
	Timeout time.Duration
	// Jitter spreads each retry wait by ± this fraction. Defaults to 0.1;
	// -1 disables it. A Retry-After is never shortened.
	Jitter float64
	// PollInterval is how often due deliveries are looked for (new ones are
	// sent at once). Defaults to 1s.
	PollInterval time.Duration
	// ClaimIdle is how long an event read by a dispatcher that then died
	// waits before another one takes it over. Defaults to 1m.
	ClaimIdle time.Duration
	// Concurrency bounds the requests in flight. Defaults to 8.
	Concurrency int
	// Retention is how long finished deliveries stay in the log. Defaults
	// to 168h.
	Retention time.Duration
	// Consumer names this dispatcher in the consumer group. Defaults to
	// <hostname>-<pid>-<random>.
	Consumer string
	// Logger defaults to discarding.
	Logger *slog.Logger
	// TracerProvider, MeterProvider and Propagators default to the global
	// ones.
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	Propagators    propagation.TextMapPropagator
	// Transport makes the requests. Defaults to a clone of
	// http.DefaultTransport.
	Transport http.RoundTripper
}

// Dispatcher turns run events into webhook deliveries and sends them. Create
// it with [New], then [Dispatcher.Start] and [Dispatcher.Stop]. Several
// dispatchers (in several servers) may share one Redis store: each event
// becomes one delivery per endpoint (created by one of the dispatchers
// knowing that endpoint), and each delivery is attempted by one dispatcher
// knowing its endpoint at a time.
type Dispatcher struct {
	runs    engine.RunStore
	store   delivery.Store
	cfg     Config
	eps     map[string]*Endpoint
	hc      *http.Client
	log     *slog.Logger
	tracer  trace.Tracer
	counter metric.Int64Counter
	lost    metric.Int64Counter
	// keys are the endpoints' keys (the claim's filter).
	keys  []string
	lease time.Duration
	wake  chan struct{}

	mu      sync.Mutex
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	started bool
}

// New returns a Dispatcher reading runs from runs and events and
// deliveries from store. It returns an error naming the field for a bad
// Config.
func New(runs engine.RunStore, store delivery.Store, cfg *Config) (*Dispatcher, error) {
	if runs == nil || store == nil {
		return nil, errors.New("webhooks: run store and webhook store are required")
	}
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.RetrySchedule == nil {
		c.RetrySchedule = DefaultRetrySchedule
	}
	for i, d := range c.RetrySchedule {
		if d <= 0 {
			return nil, fmt.Errorf("webhooks: Config.RetrySchedule[%d] %s: want a positive duration", i, d)
		}
	}
	def := func(p *time.Duration, v time.Duration, name string) error {
		switch {
		case *p == 0:
			*p = v
		case *p < 0:
			return fmt.Errorf("webhooks: Config.%s %s: want a positive duration", name, *p)
		}
		return nil
	}
	for _, err := range []error{
		def(&c.Timeout, DefaultTimeout, "Timeout"),
		def(&c.PollInterval, DefaultPollInterval, "PollInterval"),
		def(&c.ClaimIdle, DefaultClaimIdle, "ClaimIdle"),
		def(&c.Retention, DefaultRetention, "Retention"),
	} {
		if err != nil {
			return nil, err
		}
	}
	switch {
	case c.Jitter == 0:
		c.Jitter = DefaultJitter
	case c.Jitter == -1:
		c.Jitter = 0
	case c.Jitter < 0 || c.Jitter >= 1:
		return nil, fmt.Errorf("webhooks: Config.Jitter %g: want a fraction in [0, 1) or -1", c.Jitter)
	}
	switch {
	case c.Concurrency == 0:
		c.Concurrency = DefaultConcurrency
	case c.Concurrency < 0:
		return nil, fmt.Errorf("webhooks: Config.Concurrency %d: want 1 or more", c.Concurrency)
	}
	if c.Consumer == "" {
		host, _ := os.Hostname()
		c.Consumer = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), randomHex(4))
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.TracerProvider == nil {
		c.TracerProvider = otel.GetTracerProvider()
	}
	if c.MeterProvider == nil {
		c.MeterProvider = otel.GetMeterProvider()
	}
	if c.Propagators == nil {
		c.Propagators = propagation.TraceContext{}
	}
	if c.Transport == nil {
		c.Transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	d := &Dispatcher{runs: runs, store: store, cfg: c, eps: map[string]*Endpoint{}, log: c.Logger,
		wake: make(chan struct{}, 1)}
	maxTimeout := c.Timeout
	for i, ep := range c.Endpoints {
		if ep == nil || ep.Key == "" {
			return nil, fmt.Errorf("webhooks: Config.Endpoints[%d]: not built by NewEndpoint", i)
		}
		if _, dup := d.eps[ep.Key]; dup {
			return nil, fmt.Errorf("webhooks: Config.Endpoints[%d]: %s configured twice", i, ep.URL)
		}
		d.eps[ep.Key] = ep
		d.keys = append(d.keys, ep.Key)
		maxTimeout = max(maxTimeout, ep.Timeout)
	}
	// A claim outlives any attempt: it only lapses when its holder died.
	d.lease = maxTimeout + 30*time.Second
	d.hc = &http.Client{Transport: c.Transport, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	d.tracer = c.TracerProvider.Tracer("github.com/pyoco/pyoco/webhooks")
	var err error
	if d.counter, err = newDeliveriesCounter(c.MeterProvider); err != nil {
		return nil, err
	}
	if d.lost, err = c.MeterProvider.Meter("github.com/pyoco/pyoco/webhooks").Int64Counter(MetricEventsLost,
		metric.WithDescription("Run events trimmed from the run-events stream before an endpoint's dispatchers read them.")); err != nil {
		return nil, fmt.Errorf("webhooks: counter %s: %w", MetricEventsLost, err)
	}
	return d, nil
}

// newDeliveriesCounter makes the pyoco_webhook_deliveries_total counter and
// starts its series of every event and outcome at 0 (a series that appears
// with its first increment hides it from rate(); a dashboard shows 0, not
// "No data"). The zero adds carry no exemplar.
func newDeliveriesCounter(mp metric.MeterProvider) (metric.Int64Counter, error) {
	c, err := mp.Meter("github.com/pyoco/pyoco/webhooks").Int64Counter(MetricDeliveries,
		metric.WithDescription("Webhook delivery attempts by event and outcome (success, retry, failed)."))
	if err != nil {
		return nil, fmt.Errorf("webhooks: counter %s: %w", MetricDeliveries, err)
	}
	for _, ev := range Events {
		for _, o := range []string{OutcomeSuccess, OutcomeRetry, OutcomeFailed} {
			c.Add(context.Background(), 0, metric.WithAttributes(attribute.String("event", ev), attribute.String("outcome", o)))
		}
	}
	return c, nil
}

// StartCounters starts pyoco_webhook_deliveries_total at 0 on mp for a
// process that runs no [Dispatcher] (no webhook configured), so that its
// dashboards show 0 deliveries rather than no data.
func StartCounters(mp metric.MeterProvider) error {
	_, err := newDeliveriesCounter(mp)
	return err
}

// Consumer returns the dispatcher's consumer name.
func (d *Dispatcher) Consumer() string { return d.cfg.Consumer }

// Start starts reading events and sending deliveries in the background,
// until [Dispatcher.Stop] (or ctx ending). It returns an error if already
// started.
func (d *Dispatcher) Start(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.started {
		return errors.New("webhooks: dispatcher already started")
	}
	for _, ep := range d.cfg.Endpoints {
		if err := d.store.WebhookEventInit(ctx, ep.Key); err != nil {
			// The read loop creates it on its first read; events until
			// then are not delivered to this endpoint.
			d.log.WarnContext(ctx, "webhooks: prepare the run-events read", "url", redactURL(ep.URL), engine.LogKeyError, err)
		}
	}
	d.started = true
	ctx, d.cancel = context.WithCancel(ctx)
	if len(d.cfg.Endpoints) == 0 {
		return nil
	}
	d.wg.Add(len(d.cfg.Endpoints) + 1)
	for _, ep := range d.cfg.Endpoints {
		go func() { defer d.wg.Done(); d.readLoop(ctx, ep) }()
	}
	go func() { defer d.wg.Done(); d.sendLoop(ctx) }()
	return nil
}

// Stop stops the dispatcher and waits for its goroutines, or for ctx.
// Attempts in flight are abandoned and their deliveries handed back (due
// at once), so another dispatcher, or this one after a restart, sends them.
func (d *Dispatcher) Stop(ctx context.Context) error {
	d.mu.Lock()
	cancel := d.cancel
	d.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
		if t, ok := d.cfg.Transport.(interface{ CloseIdleConnections() }); ok {
			t.CloseIdleConnections()
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *Dispatcher) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// sleep waits for t or ctx; false if ctx ended.
func sleep(ctx context.Context, t time.Duration) bool {
	tm := time.NewTimer(t)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}

// outage tracks the failures of one loop's store calls: it logs once when
// they start failing and once when they work again, and backs off with
// jitter in between.
type outage struct {
	what  string
	attrs []any
	since time.Time
	fails int
	bo    backoff.Backoff
}

// failed records a failure and returns how long to wait before trying
// again.
func (o *outage) failed(ctx context.Context, log *slog.Logger, err error) time.Duration {
	if o.fails == 0 {
		o.since = time.Now()
		log.WarnContext(ctx, "webhooks: "+o.what+" failing; retrying with back-off", append(o.attrs, engine.LogKeyError, err)...)
	}
	o.fails++
	o.bo.Min, o.bo.Max = 100*time.Millisecond, 5*time.Second
	return o.bo.Next()
}

// ok records a success.
func (o *outage) ok(ctx context.Context, log *slog.Logger) {
	if o.fails > 0 {
		log.InfoContext(ctx, "webhooks: "+o.what+" works again", append(o.attrs, "failures", o.fails,
			"after", time.Since(o.since).Round(time.Millisecond).String())...)
		o.fails = 0
		o.bo.Reset()
	}
}

// readLoop turns events into deliveries to ep, acknowledging each event
// once its delivery exists. An event whose handling fails stays
// unacknowledged and is taken over after ClaimIdle. Each endpoint has its
// own consumer group: every event reaches every endpoint, whichever servers
// know it.
func (d *Dispatcher) readLoop(ctx context.Context, ep *Endpoint) {
	lastReclaim := time.Now()
	out := outage{what: "read run events", attrs: []any{"url", redactURL(ep.URL)}}
	for ctx.Err() == nil {
		var minIdle time.Duration
		if time.Since(lastReclaim) >= d.cfg.ClaimIdle/2 {
			minIdle, lastReclaim = d.cfg.ClaimIdle, time.Now()
		}
		p := &delivery.EventReadParams{Consumer: d.cfg.Consumer, Group: ep.Key, Count: 100, Block: time.Second,
			MinIdle: minIdle}
		evs, err := d.store.WebhookEventRead(ctx, p)
		if p.Lost > 0 { // reported once, even if the read then failed
			d.lost.Add(ctx, p.Lost, metric.WithAttributes(attribute.String("endpoint", ep.Key)))
			d.log.ErrorContext(ctx, "webhooks: run events were trimmed from the run-events stream before being read; "+
				"their deliveries are lost (raise the events stream length, or keep a server running)", "url", redactURL(ep.URL),
				"lost", p.Lost)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			sleep(ctx, out.failed(ctx, d.log, err))
			continue
		}
		out.ok(ctx, d.log)
		var ack []string
		for _, ev := range evs {
			if err := d.handleEvent(ctx, ev, ep); err != nil {
				if ctx.Err() != nil {
					return
				}
				d.log.WarnContext(ctx, "webhooks: event not turned into a delivery; retried later", engine.LogKeyRunID, ev.RunID,
					"url", redactURL(ep.URL), engine.LogKeyError, err)
				continue
			}
			ack = append(ack, ev.ID)
		}
		if err := d.store.WebhookEventAck(ctx, ep.Key, ack); err != nil && ctx.Err() == nil {
			d.log.WarnContext(ctx, "webhooks: acknowledge run events", engine.LogKeyError, err)
		}
	}
}

// DeliveryID returns the stable ID of the delivery of event eventID of run
// runID to endpoint key: "msg_" and 26 hex digits.
func DeliveryID(eventID, runID, endpointKey string) string {
	s := sha256.Sum256([]byte(eventID + "\x00" + runID + "\x00" + endpointKey))
	return "msg_" + hex.EncodeToString(s[:13])
}

// handleEvent creates the delivery of one event to ep.
func (d *Dispatcher) handleEvent(ctx context.Context, ev engine.Event, ep *Endpoint) error {
	typ := EventType(ev.Status)
	if typ == "" || ev.RunID == "" || !ep.wants(typ, ev.FlowName) {
		return nil
	}
	run, err := d.runs.RunGet(ctx, ev.RunID)
	if errors.Is(err, engine.ErrNotFound) {
		d.log.WarnContext(ctx, "webhooks: run of an event is gone; not delivered", engine.LogKeyRunID, ev.RunID)
		return nil
	}
	if err != nil {
		return fmt.Errorf("get run %s: %w", ev.RunID, err)
	}
	at := ev.Time
	if at.IsZero() {
		at = run.EndedAt
	}
	id := DeliveryID(ev.ID, ev.RunID, ep.Key)
	body, err := Body(ep.Format, id, typ, at, run)
	if err != nil {
		d.log.ErrorContext(ctx, "webhooks: payload not built; not delivered", engine.LogKeyRunID, run.ID, engine.LogKeyError, err)
		return nil
	}
	// The log keeps the URL redacted: the request uses the endpoint's.
	dl := &delivery.Delivery{ID: id, Event: typ, EventID: ev.ID, RunID: run.ID,
		FlowName: run.FlowName, Endpoint: ep.Key, URL: redactURL(ep.URL), Body: body, TraceID: run.TraceID,
		ParentSpanID: run.ParentSpanID, CreatedAt: time.Now()}
	created, err := d.store.WebhookDeliveryCreate(ctx, dl, d.cfg.Retention)
	if err != nil {
		return err
	}
	if created {
		d.poke()
	}
	return nil
}

// sendLoop claims due deliveries and attempts each in its own goroutine,
// at most Concurrency at once.
func (d *Dispatcher) sendLoop(ctx context.Context) {
	sem := make(chan struct{}, d.cfg.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(d.cfg.PollInterval)
	defer tick.Stop()
	out := outage{what: "claim webhook deliveries"}
	for {
		more := false
		if free := cap(sem) - len(sem); free > 0 {
			// The lease runs on Redis's clock from about now.
			claimed := time.Now()
			ds, err := d.store.WebhookDeliveryClaim(ctx, &delivery.ClaimParams{Lease: d.lease,
				Limit: free, Token: randomHex(8), Endpoints: d.keys, Retention: d.cfg.Retention})
			if err != nil {
				if ctx.Err() != nil || !sleep(ctx, out.failed(ctx, d.log, err)) {
					return
				}
				continue
			}
			out.ok(ctx, d.log)
			for _, dl := range ds {
				sem <- struct{}{}
				wg.Add(1)
				go func() {
					defer wg.Done()
					d.attempt(ctx, dl, claimed)
					<-sem
					d.poke()
				}()
			}
			more = len(ds) == free
		}
		if more {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-d.wake:
		}
	}
}

// spanParent returns ctx carrying the run's trace: the submitter's span as
// remote parent when the run has one, else the run's trace id for a new
// root span (engine.IDGenerator honours it).
func spanParent(ctx context.Context, dl *delivery.Delivery) context.Context {
	tid, err := trace.TraceIDFromHex(dl.TraceID)
	if err != nil {
		return ctx
	}
	if sid, err := trace.SpanIDFromHex(dl.ParentSpanID); err == nil {
		return trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true}))
	}
	return engine.ContextWithTraceID(ctx, tid)
}

// updateMargin is how long before its claim's lease ends a dispatcher
// stops trying to record an attempt: after that another one may claim the
// delivery again.
const updateMargin = 5 * time.Second

// attempt sends one delivery, claimed at claimed, once and records the
// outcome.
func (d *Dispatcher) attempt(ctx context.Context, dl *delivery.Delivery, claimed time.Time) {
	// Recording the outcome is retried until shortly before the claim
	// lapses (an unrecorded outcome means a second request), even when the
	// dispatcher is stopping.
	deadline := claimed.Add(d.lease - updateMargin)
	ep := d.eps[dl.Endpoint]
	if ep == nil { // not claimed: the claim is filtered by endpoint
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		dl.NextAttempt, dl.UpdatedAt = time.Now(), time.Now()
		d.update(uctx, dl, "")
		return
	}
	attempt := dl.Attempts + 1
	sctx, span := d.tracer.Start(spanParent(ctx, dl), "webhook "+dl.Event, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(engine.AttrRunID.String(dl.RunID), engine.AttrFlowName.String(dl.FlowName),
			engine.AttrWebhookID.String(dl.ID), engine.AttrWebhookEvent.String(dl.Event),
			engine.AttrWebhookAttempt.Int(attempt), semconv.URLFull(redactURL(dl.URL)),
			semconv.HTTPRequestMethodPost))
	defer span.End()
	timeout := ep.Timeout
	if timeout == 0 {
		timeout = d.cfg.Timeout
	}
	actx, cancel := context.WithTimeout(sctx, timeout)
	defer cancel()
	hdr := http.Header{}
	d.cfg.Propagators.Inject(sctx, propagation.HeaderCarrier(hdr))
	ans, err := Send(actx, d.hc, &Request{URL: ep.URL, ID: dl.ID, Body: dl.Body, Format: ep.Format, Keys: ep.Keys, Header: hdr})
	if err != nil && ctx.Err() != nil {
		// Stopped mid-request: hand the delivery back unchanged, due now
		// (briefly: else the claim lapses and another dispatcher sends it).
		span.SetStatus(codes.Error, "dispatcher stopped")
		uctx, ucancel := context.WithTimeout(context.WithoutCancel(sctx), 5*time.Second)
		defer ucancel()
		dl.NextAttempt, dl.UpdatedAt = time.Now(), time.Now()
		d.update(uctx, dl, "")
		return
	}
	uctx, ucancel := context.WithDeadline(context.WithoutCancel(sctx), deadline)
	defer ucancel()
	// Wall clock only: the next attempt is shared through the store with
	// other dispatchers, which compare it with their own clocks (Redis's).
	now := time.Now().Round(0)
	dl.Attempts, dl.UpdatedAt = attempt, now
	var retryAfter time.Duration
	disable := ""
	switch {
	case err != nil:
		dl.LastStatusCode = 0
		if errors.Is(actx.Err(), context.DeadlineExceeded) {
			dl.LastError = fmt.Sprintf("no answer within %s", timeout)
		} else {
			dl.LastError = cut(err.Error(), 500)
		}
		dl.Status = delivery.Pending
	case ans.StatusCode >= 200 && ans.StatusCode < 300:
		dl.LastStatusCode, dl.LastError, dl.Status = ans.StatusCode, "", delivery.Succeeded
	case ans.StatusCode == http.StatusGone:
		dl.LastStatusCode, dl.Status = ans.StatusCode, delivery.Failed
		dl.LastError = "410 Gone: endpoint disabled (no more deliveries to it until a delivery is retried by hand)"
		disable = fmt.Sprintf("410 Gone at %s (delivery %s)", now.UTC().Format(time.RFC3339), dl.ID)
		d.log.WarnContext(sctx, "webhooks: endpoint answered 410 Gone: disabled", "url", redactURL(ep.URL), "delivery", dl.ID)
	default:
		dl.LastStatusCode, dl.Status = ans.StatusCode, delivery.Pending
		dl.LastError = answerError(ans)
		retryAfter = ans.RetryAfter
	}
	if ans != nil {
		span.SetAttributes(semconv.HTTPResponseStatusCode(ans.StatusCode))
	}
	outcome := OutcomeSuccess
	switch dl.Status {
	case delivery.Pending:
		schedule := ep.RetrySchedule
		if schedule == nil {
			schedule = d.cfg.RetrySchedule
		}
		if dl.Manual || attempt > len(schedule) {
			dl.Status, outcome = delivery.Failed, OutcomeFailed
			break
		}
		wait := d.jitter(schedule[attempt-1])
		wait = max(wait, retryAfter)
		dl.NextAttempt, outcome = now.Add(wait), OutcomeRetry
	case delivery.Failed:
		outcome = OutcomeFailed
	}
	if outcome != OutcomeSuccess {
		span.SetStatus(codes.Error, dl.LastError)
	}
	span.SetAttributes(attribute.String("pyoco.webhook.outcome", outcome))
	d.update(uctx, dl, disable)
	d.count(ctx, dl.Event, outcome)
	switch outcome {
	case OutcomeFailed:
		d.log.WarnContext(sctx, "webhooks: delivery failed", "delivery", dl.ID, "url", redactURL(ep.URL), "attempts", attempt,
			engine.LogKeyRunID, dl.RunID, engine.LogKeyError, dl.LastError)
	case OutcomeRetry:
		d.log.InfoContext(sctx, "webhooks: delivery attempt failed; retrying", "delivery", dl.ID, "attempt", attempt,
			"next_attempt", dl.NextAttempt, engine.LogKeyError, dl.LastError)
	}
}

// update records an attempt, trying again with back-off on a store error
// until ctx ends (shortly before the claim lapses): an unrecorded outcome
// waits for the claim's lease to lapse and is sent again.
func (d *Dispatcher) update(ctx context.Context, dl *delivery.Delivery, disable string) {
	var err error
	bo := backoff.Backoff{Min: 100 * time.Millisecond, Max: 2 * time.Second}
	for {
		err = d.store.WebhookDeliveryUpdate(ctx, &delivery.UpdateParams{Delivery: dl, Retention: d.cfg.Retention,
			DisableEndpoint: disable})
		if err == nil || errors.Is(err, engine.ErrConflict) || ctx.Err() != nil ||
			!bo.Sleep(ctx) {
			break
		}
	}
	switch {
	case errors.Is(err, engine.ErrConflict):
		d.log.InfoContext(ctx, "webhooks: delivery was claimed again meanwhile; outcome not recorded", "delivery", dl.ID)
	case err != nil:
		d.log.WarnContext(ctx, "webhooks: record delivery attempt", "delivery", dl.ID, engine.LogKeyError, err)
	}
}

func (d *Dispatcher) count(ctx context.Context, event, outcome string) {
	d.counter.Add(ctx, 1, metric.WithAttributes(attribute.String("event", event), attribute.String("outcome", outcome)))
}

// jitter spreads t by ± the configured fraction.
func (d *Dispatcher) jitter(t time.Duration) time.Duration {
	if d.cfg.Jitter == 0 {
		return t
	}
	f := 1 + d.cfg.Jitter*(2*rand.Float64()-1)
	return time.Duration(float64(t) * f)
}

// answerError describes a non-2xx answer.
func answerError(a *Answer) string {
	msg := fmt.Sprintf("HTTP %d", a.StatusCode)
	if a.StatusCode >= 300 && a.StatusCode < 400 {
		msg += " (redirects are not followed"
		if loc := a.Header.Get("Location"); loc != "" {
			msg += "; Location: " + loc
		}
		msg += ")"
	}
	if b := strings.TrimSpace(string(a.Body)); b != "" {
		msg += ": " + cut(b, 200)
	}
	return msg
}

// RedactURL returns the form of an endpoint URL shown in logs, spans, errors
// and the delivery log: scheme://host/…wxyz, keeping only the last 4
// characters of the path (a Slack webhook URL's path is its secret), with
// no user info, query or fragment (they may hold tokens).
func RedactURL(s string) string { return redactURL(s) }

func redactURL(s string) string {
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i]
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return "…" + lastRunes(s, 4)
	}
	host, path, slash := strings.Cut(rest, "/")
	if at := strings.LastIndex(host, "@"); at >= 0 {
		host = host[at+1:]
	}
	s = scheme + "://" + host
	if !slash {
		return s
	}
	s += "/"
	if len([]rune(path)) <= 4 {
		return s + path
	}
	return s + "…" + lastRunes(path, 4)
}

// lastRunes returns the last n runes of s.
func lastRunes(s string, n int) string {
	r := []rune(s)
	return string(r[max(len(r)-n, 0):])
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = crand.Read(b)
	return hex.EncodeToString(b)
}
