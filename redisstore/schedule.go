package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/pyoco/pyoco/engine"
)

// ScheduleClaim implements [engine.ScheduleStore] with one script
// (schedule_claim.lua spliced into create.lua): the compare-and-set of the
// schedule hash's tick and the run's creation (indexes, event, queue entry)
// are one atomic step, on a single Redis and on Cluster alike (the schedule
// hash shares the namespace's hash tag).
func (s *Store) ScheduleClaim(ctx context.Context, p *engine.ScheduleClaimParams) error {
	if p == nil || p.Flow == "" || p.Name == "" || p.Tick.IsZero() {
		return errors.New("claim schedule: flow, name and tick are required")
	}
	if err := s.ready(ctx); err != nil {
		return fmt.Errorf("claim schedule %s/%s: %w", p.Flow, p.Name, err)
	}
	if len(s.parts) > 1 {
		return s.scheduleClaimPartitions(ctx, p)
	}
	var (
		ks   []string
		args []any
		mode = "skip"
	)
	if p.Run != nil {
		var err error
		if ks, args, err = s.createArgs(p.Run); err != nil {
			return fmt.Errorf("claim schedule %s/%s: %w", p.Flow, p.Name, err)
		}
		mode = "run"
		s.maybeSweep(ctx)
	}
	prev := ""
	if !p.Prev.IsZero() {
		prev = ms(p.Prev)
	}
	ks = append(ks, s.keys.schedule(p.Flow, p.Name))
	args = append(args, ms(p.Tick), prev, mode)
	if err := scheduleClaimScript.Run(ctx, s.client, ks, args...).Err(); err != nil {
		return fmt.Errorf("claim schedule %s/%s tick %s: %w", p.Flow, p.Name, p.Tick.UTC().Format(time.RFC3339Nano), interpretError(err))
	}
	return nil
}

// ScheduleGet implements [engine.ScheduleStore].
func (s *Store) ScheduleGet(ctx context.Context, flow, name string) (*engine.ScheduleState, error) {
	m, err := s.client.HGetAll(ctx, s.keys.schedule(flow, name)).Result()
	if err != nil {
		return nil, fmt.Errorf("get schedule %s/%s: %w", flow, name, interpretError(err))
	}
	if len(s.parts) > 1 {
		if err := s.carryOutIntents(ctx, s.keys.schedule(flow, name), m); err != nil {
			return nil, fmt.Errorf("get schedule %s/%s: %w", flow, name, err)
		}
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("schedule %s/%s: %w", flow, name, engine.ErrNotFound)
	}
	st := &engine.ScheduleState{Flow: flow, Name: name, LastRunID: m["run_id"]}
	var bad error
	msTime := func(field string) time.Time {
		v, ok := m[field]
		if !ok || v == "" {
			return time.Time{}
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			bad = fmt.Errorf("get schedule %s/%s: bad %s %q", flow, name, field, v)
		}
		return time.UnixMilli(n).UTC()
	}
	st.LastTick, st.LastRunAt = msTime("tick"), msTime("run_at")
	if bad != nil {
		return nil, bad
	}
	return st, nil
}

var _ engine.ScheduleStore = (*Store)(nil)
