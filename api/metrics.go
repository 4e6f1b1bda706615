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
// names them pyoco_runs_queued and pyoco_workers (SPEC §5).
const (
	MetricRunsQueued = "pyoco.runs.queued"
	MetricWorkers    = "pyoco.workers"
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
	qs, _ := s.store.(engine.QueueStats)
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
		if ws, err := s.workers(ctx); err == nil {
			o.ObserveInt64(workers, int64(len(ws)))
		} else {
			s.log.DebugContext(ctx, "api metrics: workers", engine.LogKeyError, err)
		}
		return nil
	}, queued, workers)
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
	offered := map[string]bool{}
	if s.cfg.Flows != nil {
		flows, _ := s.cfg.Flows.FlowList()
		for _, f := range flows {
			offered[f.Name] = true
			g.flows[f.Name] = true
		}
	}
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

func (g *gauges) close() error {
	if g == nil || g.reg == nil {
		return nil
	}
	return g.reg.Unregister()
}
