package schedule

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/pyoco/pyoco/engine"
)

// Defaults of [Config].
const (
	DefaultPollInterval  = time.Second
	DefaultRetryInterval = 5 * time.Second
	// DefaultOnTime is the most a tick may be late and still count as on
	// time for catchup: none (capped by half the gap to the next tick).
	DefaultOnTime = 10 * time.Second
)

// maxScan bounds the missed ticks counted one by one in a catch-up; past
// it the skipped count is a lower bound.
const maxScan = 100000

// Config tunes a [Runner]. The zero value (or nil) means every default.
type Config struct {
	// Logger receives a record per tick submitted, skipped or failed.
	// Defaults to discarding them.
	Logger *slog.Logger
	// MeterProvider makes pyoco_schedule_runs_total. Defaults to
	// otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
	// NowFunc returns the current time. Defaults to time.Now; tests set a
	// controllable clock.
	NowFunc func() time.Time
	// PollInterval bounds how long the runner sleeps before it looks at
	// the clock again (so a clock that jumps, or a NowFunc a test moves, is
	// noticed within it). Defaults to 1s.
	PollInterval time.Duration
	// RetryInterval is the wait before a schedule whose claim failed (the
	// store unreachable) is tried again. Defaults to 5s.
	RetryInterval time.Duration
	// OnTime is how late a tick may be and still run under catchup: none.
	// Defaults to 10s; it is capped by half the gap to the schedule's next
	// tick.
	OnTime time.Duration
}

func (c *Config) withDefaults() (Config, error) {
	var cfg Config
	if c != nil {
		cfg = *c
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.MeterProvider == nil {
		cfg.MeterProvider = otel.GetMeterProvider()
	}
	if cfg.NowFunc == nil {
		cfg.NowFunc = time.Now
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"PollInterval", &cfg.PollInterval, DefaultPollInterval},
		{"RetryInterval", &cfg.RetryInterval, DefaultRetryInterval},
		{"OnTime", &cfg.OnTime, DefaultOnTime},
	} {
		switch {
		case *d.v == 0:
			*d.v = d.def
		case *d.v < 0:
			return cfg, fmt.Errorf("schedule config: %s %s: want a positive duration", d.name, *d.v)
		}
	}
	return cfg, nil
}

// Runner starts the runs of flow schedules ([engine.Schedule]) on time.
// Any number of Runners, in any number of processes, may run the same
// schedules on one store: each tick is claimed in the store
// ([engine.ScheduleStore]) together with the creation of its run, so each
// tick starts exactly one run. Create one with [New] and call [Runner.Run].
type Runner struct {
	eng   *engine.Engine
	store engine.ScheduleStore
	cfg   Config
	log   *slog.Logger
	runs  metric.Int64Counter

	mu      sync.Mutex
	items   []*item
	running bool
}

// item is one schedule of one flow and what the runner knows of it.
type item struct {
	flow  *engine.Flow
	sched *engine.Schedule
	// armed is when the runner first looked at the schedule: a schedule
	// with no stored state has nothing to catch up from before it.
	armed time.Time
	// due is when to look at the schedule next (the zero time: at once).
	due time.Time
}

// New returns a Runner of the schedules of flows (flows without schedules
// are ignored). The engine's store must implement [engine.ScheduleStore]
// when any flow has a schedule. It returns an error for a nil engine, two
// flows of one name, or a bad Config.
func New(eng *engine.Engine, flows []*engine.Flow, cfg *Config) (*Runner, error) {
	if eng == nil {
		return nil, errors.New("schedule: engine is required")
	}
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &Runner{eng: eng, cfg: c, log: c.Logger}
	seen := make(map[string]bool)
	for _, f := range flows {
		if f == nil || len(f.Schedules) == 0 {
			continue
		}
		if seen[f.Name] {
			return nil, fmt.Errorf("schedule: two flows named %q", f.Name)
		}
		seen[f.Name] = true
		for _, s := range f.Schedules {
			r.items = append(r.items, &item{flow: f, sched: s})
		}
	}
	if len(r.items) > 0 {
		ss, ok := eng.Store().(engine.ScheduleStore)
		if !ok {
			return nil, fmt.Errorf("schedule: the store %T keeps no schedule state", eng.Store())
		}
		r.store = ss
	}
	m := c.MeterProvider.Meter("github.com/pyoco/pyoco/schedule")
	if r.runs, err = m.Int64Counter(engine.MetricScheduleRuns,
		metric.WithDescription("Schedule ticks by outcome: submitted (this process started the tick's run), skipped (missed and not run by the catch-up policy), error (claim failed; retried).")); err != nil {
		return nil, fmt.Errorf("schedule: create instruments: %w", err)
	}
	// Start every series at 0: a counter series that appears with its
	// first increment hides that increment from rate() and increase().
	for name := range seen {
		for _, o := range []string{engine.ScheduleSubmitted, engine.ScheduleSkipped, engine.ScheduleError} {
			r.runs.Add(context.Background(), 0, outcomeAttrs(name, o))
		}
	}
	return r, nil
}

func outcomeAttrs(flow, outcome string) metric.MeasurementOption {
	return metric.WithAttributes(engine.LabelFlow.String(flow), attribute.String(engine.LabelOutcome, outcome))
}

// Len returns the number of schedules the runner runs.
func (r *Runner) Len() int { return len(r.items) }

// Run runs the schedules until ctx ends, then returns nil. Its one
// goroutine is the caller's: Run returns only when it has stopped. It
// returns an error if the Runner is already running.
func (r *Runner) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.running {
		r.mu.Unlock()
		return errors.New("schedule: runner already running")
	}
	r.running = true
	now := r.cfg.NowFunc()
	for _, it := range r.items {
		it.armed, it.due = now, time.Time{}
	}
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.running = false
		r.mu.Unlock()
	}()
	if len(r.items) == 0 {
		<-ctx.Done()
		return nil
	}
	r.log.InfoContext(ctx, "schedules running", "schedules", len(r.items))
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		wait := r.cfg.PollInterval
		for _, it := range r.items {
			now := r.cfg.NowFunc()
			if !now.Before(it.due) {
				r.fire(ctx, it, now)
				if ctx.Err() != nil {
					return nil
				}
			}
			if d := it.due.Sub(r.cfg.NowFunc()); d < wait {
				wait = d
			}
		}
		timer.Reset(max(wait, time.Millisecond))
	}
}

// fire claims the ticks of it that are due at now, as its catch-up policy
// says, and sets it.due to when to look again.
func (r *Runner) fire(ctx context.Context, it *item, now time.Time) {
	s, flow := it.sched, it.flow.Name
	for range 10 { // each round lost to another server re-reads the state
		st, err := r.store.ScheduleGet(ctx, flow, s.Name)
		var prev time.Time
		base := it.armed
		switch {
		case errors.Is(err, engine.ErrNotFound):
		case err != nil:
			r.failed(ctx, it, now, err)
			return
		default:
			prev, base = st.LastTick, st.LastTick
		}
		p := plan(s, base, now, r.cfg.OnTime)
		if len(p.run) == 0 && p.skipTo.IsZero() {
			it.due = nextAfter(s, base)
			return
		}
		lost := false
		for _, tick := range p.run {
			run, err := r.eng.Submit(ctx, &engine.SubmitParams{
				Flow: it.flow, Params: s.Params, Tags: []string{s.Tag()},
				Tick: &engine.ScheduleTick{Schedule: s.Name, Tick: tick, Prev: prev},
			})
			if errors.Is(err, engine.ErrConflict) {
				lost = true
				break
			}
			if err != nil {
				r.failed(ctx, it, now, err)
				return
			}
			if p.skipped > 0 {
				r.runs.Add(ctx, int64(p.skipped), outcomeAttrs(flow, engine.ScheduleSkipped))
				r.log.InfoContext(ctx, "schedule ticks skipped", engine.LogKeyFlow, flow, engine.LogKeySchedule, s.Name,
					"skipped", p.skipped, "catchup", string(s.Catchup))
				p.skipped = 0
			}
			r.runs.Add(ctx, 1, outcomeAttrs(flow, engine.ScheduleSubmitted))
			r.log.InfoContext(ctx, "schedule tick submitted", engine.LogKeyFlow, flow, engine.LogKeySchedule, s.Name,
				"tick", tick.UTC().Format(time.RFC3339Nano), engine.LogKeyRunID, run.ID)
			prev = tick
		}
		if !lost && !p.skipTo.IsZero() {
			err := r.store.ScheduleClaim(ctx, &engine.ScheduleClaimParams{Flow: flow, Name: s.Name, Tick: p.skipTo, Prev: prev})
			switch {
			case errors.Is(err, engine.ErrConflict):
				lost = true
			case err != nil:
				r.failed(ctx, it, now, err)
				return
			default:
				r.runs.Add(ctx, int64(p.skipped), outcomeAttrs(flow, engine.ScheduleSkipped))
				r.log.InfoContext(ctx, "schedule ticks skipped", engine.LogKeyFlow, flow, engine.LogKeySchedule, s.Name,
					"skipped", p.skipped, "catchup", string(s.Catchup))
				prev = p.skipTo
			}
		}
		if !lost {
			it.due = nextAfter(s, prev)
			return
		}
		if ctx.Err() != nil {
			return
		}
	}
	it.due = now.Add(r.cfg.PollInterval)
}

// failed counts and logs a failed claim and retries it after RetryInterval.
func (r *Runner) failed(ctx context.Context, it *item, now time.Time, err error) {
	if ctx.Err() != nil {
		return // stopping: not a failure of the schedule
	}
	r.runs.Add(ctx, 1, outcomeAttrs(it.flow.Name, engine.ScheduleError))
	r.log.WarnContext(ctx, "schedule tick failed: retrying", engine.LogKeyFlow, it.flow.Name, engine.LogKeySchedule, it.sched.Name,
		"retry_in", r.cfg.RetryInterval.String(), engine.LogKeyError, err)
	it.due = now.Add(r.cfg.RetryInterval)
}

// nextAfter is the schedule's next tick after t, or, for a schedule that
// never fires again, a day later (looked at again then).
func nextAfter(s *engine.Schedule, t time.Time) time.Time {
	if n := s.Next(t); !n.IsZero() {
		return n
	}
	return t.Add(24 * time.Hour)
}

// tickPlan is what to claim for the ticks due: run these ticks in order,
// then (if set) record skipTo as skipped; skipped ticks are not run.
type tickPlan struct {
	run     []time.Time
	skipTo  time.Time
	skipped int
}

// plan applies s's catch-up policy to the ticks in (base, now].
func plan(s *engine.Schedule, base, now time.Time, onTime time.Duration) tickPlan {
	keep := 1
	if s.Catchup == engine.CatchupAll {
		keep = engine.MaxCatchupRuns
	}
	ticks, n := dueTicks(s, base, now, keep)
	if n == 0 {
		return tickPlan{}
	}
	latest := ticks[len(ticks)-1]
	switch s.Catchup {
	case engine.CatchupNone:
		grace := onTime
		if next := s.Next(latest); !next.IsZero() {
			grace = min(grace, next.Sub(latest)/2)
		}
		if now.Sub(latest) < grace {
			return tickPlan{run: []time.Time{latest}, skipped: n - 1}
		}
		return tickPlan{skipTo: latest, skipped: n}
	default:
		return tickPlan{run: ticks, skipped: n - len(ticks)}
	}
}

// dueTicks returns the last keep ticks of s in (after, upto], oldest first,
// and how many there are in all (a lower bound past maxScan).
func dueTicks(s *engine.Schedule, after, upto time.Time, keep int) ([]time.Time, int) {
	first := s.Next(after)
	if first.IsZero() || first.After(upto) {
		return nil, 0
	}
	if s.Every > 0 {
		n := int(upto.Sub(first)/s.Every) + 1
		k := min(keep, n)
		out := make([]time.Time, k)
		last := first.Add(time.Duration(n-1) * s.Every)
		for i := range k {
			out[k-1-i] = last.Add(-time.Duration(i) * s.Every)
		}
		return out, n
	}
	var ring []time.Time
	n := 0
	for t := first; !t.IsZero() && !t.After(upto); t = s.Next(t) {
		n++
		ring = append(ring, t)
		if len(ring) > keep {
			ring = ring[1:]
		}
		if n >= maxScan {
			return lastTicks(s, after, upto, keep), n
		}
	}
	return slices.Clone(ring), n
}

// lastTicks finds the last keep ticks of s in (after, upto] by looking back
// from upto over windows that double, for outages too long to walk.
func lastTicks(s *engine.Schedule, after, upto time.Time, keep int) []time.Time {
	for w := time.Hour; ; w *= 2 {
		start := upto.Add(-w)
		if !start.After(after) || w > 50*365*24*time.Hour {
			start = after
		}
		var ticks []time.Time
		for t := s.Next(start); !t.IsZero() && !t.After(upto); t = s.Next(t) {
			ticks = append(ticks, t)
		}
		if len(ticks) >= keep || start.Equal(after) {
			if len(ticks) > keep {
				ticks = ticks[len(ticks)-keep:]
			}
			return ticks
		}
	}
}

// ScheduleList returns every schedule the runner runs, by flow then in
// file order, with its stored state: the last tick claimed and the last
// run started, and the next tick. It reads the store once per schedule.
func (r *Runner) ScheduleList(ctx context.Context) ([]engine.ScheduleInfo, error) {
	out := make([]engine.ScheduleInfo, 0, len(r.items))
	now := r.cfg.NowFunc()
	for _, it := range r.items {
		s := it.sched
		info := engine.ScheduleInfo{Flow: it.flow.Name, Name: s.Name, Spec: s.Spec(), Timezone: s.Timezone,
			Catchup: s.Catchup, Tag: s.Tag()}
		if info.Timezone == "" && s.Cron != "" {
			info.Timezone = "UTC"
		}
		st, err := r.store.ScheduleGet(ctx, it.flow.Name, s.Name)
		switch {
		case errors.Is(err, engine.ErrNotFound):
			info.NextFireTime = s.Next(now)
		case err != nil:
			return nil, fmt.Errorf("list schedules: %w", err)
		default:
			info.LastTickTime, info.LastRunID, info.LastRunTime = st.LastTick, st.LastRunID, st.LastRunAt
			info.NextFireTime = s.Next(st.LastTick)
		}
		out = append(out, info)
	}
	slices.SortStableFunc(out, func(a, b engine.ScheduleInfo) int {
		if a.Flow < b.Flow {
			return -1
		}
		if a.Flow > b.Flow {
			return 1
		}
		return 0
	})
	return out, nil
}
