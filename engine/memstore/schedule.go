package memstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pyoco/pyoco/engine"
)

type scheduleKey struct{ flow, name string }

// ScheduleClaim implements [engine.ScheduleStore]: under the store's one
// mutex it checks that the schedule's last tick is still p.Prev, records
// p.Tick and creates p.Run (when set), so the claim and the run appear
// together or not at all.
func (s *Store) ScheduleClaim(ctx context.Context, p *engine.ScheduleClaimParams) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if p == nil || p.Flow == "" || p.Name == "" || p.Tick.IsZero() {
		return errors.New("claim schedule: flow, name and tick are required")
	}
	tick, prev := p.Tick.UTC().Truncate(time.Millisecond), p.Prev.UTC().Truncate(time.Millisecond)
	var r *engine.Run
	if p.Run != nil {
		var err error
		if r, err = newRunCopy(p.Run); err != nil {
			return fmt.Errorf("claim schedule %s/%s: %w", p.Flow, p.Name, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := scheduleKey{p.Flow, p.Name}
	st, ok := s.schedules[k]
	last := st.LastTick
	if !ok {
		last = time.Time{}
	}
	if !last.Equal(prev) || !tick.After(last) {
		return fmt.Errorf("claim schedule %s/%s tick %s: last tick is %s: %w", p.Flow, p.Name,
			tick.Format(time.RFC3339Nano), fmtTick(last), engine.ErrConflict)
	}
	st = engine.ScheduleState{Flow: p.Flow, Name: p.Name, LastTick: tick, LastRunID: st.LastRunID, LastRunAt: st.LastRunAt}
	if r != nil {
		if err := s.insertRun(r); err != nil {
			return fmt.Errorf("claim schedule %s/%s: %w", p.Flow, p.Name, err)
		}
		st.LastRunID, st.LastRunAt = r.ID, r.CreatedAt
	}
	if s.schedules == nil {
		s.schedules = make(map[scheduleKey]engine.ScheduleState)
	}
	s.schedules[k] = st
	return nil
}

func fmtTick(t time.Time) string {
	if t.IsZero() {
		return "none"
	}
	return t.Format(time.RFC3339Nano)
}

// ScheduleGet implements [engine.ScheduleStore].
func (s *Store) ScheduleGet(ctx context.Context, flow, name string) (*engine.ScheduleState, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.schedules[scheduleKey{flow, name}]
	if !ok {
		return nil, fmt.Errorf("schedule %s/%s: %w", flow, name, engine.ErrNotFound)
	}
	return &st, nil
}

var _ engine.ScheduleStore = (*Store)(nil)
