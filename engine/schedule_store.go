package engine

import (
	"context"
	"time"
)

// ScheduleStore is an optional [Store] capability: the claim state of flow
// schedules, shared by every server on the store, so that each tick of a
// schedule starts exactly one run however many servers run the schedule.
// Both stores of this module implement it.
//
// A schedule is known by its flow and name ([Schedule.Name]); its state
// is the last tick claimed (run or skipped) and the last run it started.
type ScheduleStore interface {
	// ScheduleClaim claims tick p.Tick of schedule (p.Flow, p.Name) and,
	// when p.Run is set, creates that run as [RunStore.RunCreate] does
	// (indexes, event, queue) in the same atomic step: a crash can neither
	// lose the tick's run nor make two. It succeeds only while the
	// schedule's last claimed tick is still p.Prev (the zero time: never
	// claimed) and p.Tick is after it; otherwise nothing changes and the
	// error wraps [ErrConflict] (another server claimed a tick since the
	// caller read the state, or the run ID exists). A nil p.Run records
	// the tick as skipped: LastTick moves, LastRunID and LastRunAt stay.
	// Times are kept to the millisecond.
	ScheduleClaim(ctx context.Context, p *ScheduleClaimParams) error
	// ScheduleGet returns the state of schedule (flow, name), or an error
	// wrapping [ErrNotFound] if none of its ticks was ever claimed.
	ScheduleGet(ctx context.Context, flow, name string) (*ScheduleState, error)
}

// ScheduleClaimParams are the arguments of [ScheduleStore.ScheduleClaim].
type ScheduleClaimParams struct {
	Flow string
	Name string
	// Tick is the tick being claimed.
	Tick time.Time
	// Prev is the LastTick the caller read (zero when the schedule had no
	// state): the compare-and-set guard.
	Prev time.Time
	// Run is the PENDING run to create for the tick (as for RunCreate);
	// nil skips the tick.
	Run *Run
}

// ScheduleState is the stored state of one schedule.
type ScheduleState struct {
	Flow string
	Name string
	// LastTick is the latest tick claimed, run or skipped.
	LastTick time.Time
	// LastRunID and LastRunAt (its CreatedAt) are the latest run the
	// schedule started; empty and zero until it starts one.
	LastRunID string
	LastRunAt time.Time
}

// ScheduleInfo describes one schedule for the API (GET /schedules) and
// `pyoco schedules list`.
type ScheduleInfo struct {
	Flow     string
	Name     string
	Spec     string
	Timezone string
	Catchup  Catchup
	Tag      string
	// NextFireTime is the next tick after the last one claimed (or after
	// now when none was); zero when unknown.
	NextFireTime time.Time
	LastTickTime time.Time
	LastRunID    string
	LastRunTime  time.Time
}
