package api

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/pyoco/pyoco/engine"
)

// Instrument names of the gauges the API serves. The Prometheus exporter
// names them pyoco_runs_queued, pyoco_workers (SPEC §5),
// pyoco_queue_oldest_age_seconds and pyoco_queue_lag (the backlog signals
// autoscalers watch).
const (
	MetricRunsQueued     = "pyoco.runs.queued"
	MetricWorkers        = "pyoco.workers"
	MetricQueueOldestAge = "pyoco.queue.oldest_age"
	MetricQueueLag       = "pyoco.queue.lag"
)

// scrapeTimeout bounds the store reads of one collection.
const scrapeTimeout = 2 * time.Second

// gauges reads pyoco_runs_queued and pyoco_workers from the store at each
// collection (scrape).
type gauges struct {
	reg metric.Registration

	mu    sync.Mutex
	flows map[string]bool // flows once seen queued: reported as 0 when drained
}

func newGauges(s *Server, mp metric.MeterProvider) (*gauges, error) {
	g := &gauges{flows: make(map[string]bool)}
	m := mp.Meter("github.com/pyoco/pyoco/api")
	queued, err := m.Int64ObservableGauge(MetricRunsQueued, metric.WithUnit("{run}"),
		metric.WithDescription("Runs waiting in the queue, read from the store."))
	if err != nil {
		return nil, fmt.Errorf("api: create %s: %w", MetricRunsQueued, err)
	}
	workers, err := m.Int64ObservableGauge(MetricWorkers, metric.WithUnit("{worker}"),
		metric.WithDescription("Live workers, read from the store's worker registry."))
	if err != nil {
		return nil, fmt.Errorf("api: create %s: %w", MetricWorkers, err)
	}
	oldestAge, err := m.Float64ObservableGauge(MetricQueueOldestAge, metric.WithUnit("s"),
		metric.WithDescription("Age of the oldest PENDING run, by flow (0 when none waits), read from the store."))
	if err != nil {
		return nil, fmt.Errorf("api: create %s: %w", MetricQueueOldestAge, err)
	}
	lag, err := m.Int64ObservableGauge(MetricQueueLag, metric.WithUnit("{entry}"),
		metric.WithDescription("Queue entries not yet delivered to any worker, read from the store."))
	if err != nil {
		return nil, fmt.Errorf("api: create %s: %w", MetricQueueLag, err)
	}
	qs, _ := s.store.(engine.QueueStats)
	qb, _ := s.store.(engine.QueueBacklog)
	g.reg, err = m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, scrapeTimeout)
		defer cancel()
		if qs != nil {
			if depth, err := qs.QueueDepth(ctx); err == nil {
				g.observeQueued(o, queued, depth, s)
			} else {
				s.log.DebugContext(ctx, "api metrics: queue depth", engine.LogKeyError, err)
			}
		}
		if qb != nil {
			if oldest, err := qb.QueueOldest(ctx); err == nil {
				g.observeOldest(o, oldestAge, oldest, s, time.Now())
			} else {
				s.log.DebugContext(ctx, "api metrics: queue oldest", engine.LogKeyError, err)
			}
			if n, err := qb.QueueLag(ctx); err == nil {
				o.ObserveInt64(lag, n)
			} else {
				s.log.DebugContext(ctx, "api metrics: queue lag", engine.LogKeyError, err)
			}
		}
		if ws, err := s.workers(ctx); err == nil {
			o.ObserveInt64(workers, int64(len(ws)))
		} else {
			s.log.DebugContext(ctx, "api metrics: workers", engine.LogKeyError, err)
		}
		return nil
	}, queued, workers, oldestAge, lag)
	if err != nil {
		return nil, fmt.Errorf("api: register gauges: %w", err)
	}
	return g, nil
}

// observeQueued reports each offered flow's depth, and 0 for the flows
// offered or seen before, so a drained queue reads 0 rather than vanishing.
// The depth of flows this server does not offer (inline flow_yaml runs)
// is summed under [engine.LabelInline]: their names are any caller's, and
// each would be a series.
func (g *gauges) observeQueued(o metric.Observer, queued metric.Int64ObservableGauge, depth map[string]int64, s *Server) {
	g.mu.Lock()
	defer g.mu.Unlock()
	offered := g.offeredLocked(s)
	byLabel := make(map[string]int64, len(offered)+1)
	for f, d := range depth {
		if !offered[f] {
			f = engine.LabelInline
		}
		byLabel[f] += d
		g.flows[f] = true
	}
	for f := range g.flows {
		o.ObserveInt64(queued, byLabel[f], metric.WithAttributeSet(attribute.NewSet(attribute.String("flow", f))))
	}
}

// observeOldest reports the age of each flow's oldest PENDING run, folded
// and kept at 0 as observeQueued does (the oldest of the folded flows counts).
func (g *gauges) observeOldest(o metric.Observer, age metric.Float64ObservableGauge, oldest map[string]time.Time, s *Server, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	offered := g.offeredLocked(s)
	byLabel := make(map[string]time.Time, len(offered)+1)
	for f, at := range oldest {
		if !offered[f] {
			f = engine.LabelInline
		}
		if cur, ok := byLabel[f]; !ok || at.Before(cur) {
			byLabel[f] = at
		}
		g.flows[f] = true
	}
	for f := range g.flows {
		v := 0.0
		if at, ok := byLabel[f]; ok {
			v = max(now.Sub(at).Seconds(), 0)
		}
		o.ObserveFloat64(age, v, metric.WithAttributeSet(attribute.NewSet(attribute.String("flow", f))))
	}
}

// offeredLocked returns the flows the server offers, recording them as
// seen. The caller holds g.mu.
func (g *gauges) offeredLocked(s *Server) map[string]bool {
	offered := map[string]bool{}
	if s.cfg.Flows != nil {
		flows, _ := s.cfg.Flows.FlowList()
		for _, f := range flows {
			offered[f.Name] = true
			g.flows[f.Name] = true
		}
	}
	return offered
}

func (g *gauges) close() error {
	if g == nil || g.reg == nil {
		return nil
	}
	return g.reg.Unregister()
}
