package engine

import (
	"context"
	"fmt"
	"time"
)

// ScheduleTick is the tick of a flow schedule that a submit claims
// ([SubmitParams.Tick]).
type ScheduleTick struct {
	// Schedule is the schedule's name ([Schedule.Name]).
	Schedule string
	Tick     time.Time
	// Prev is the schedule's last claimed tick as the caller read it (zero:
	// none), as in [ScheduleClaimParams].
	Prev time.Time
}

// createRun stores a new run: through RunCreate, or, for a schedule tick,
// through the store's ScheduleClaim.
func (e *Engine) createRun(ctx context.Context, run *Run, tick *ScheduleTick) error {
	if tick == nil {
		return e.store.RunCreate(ctx, run)
	}
	ss, ok := e.store.(ScheduleStore)
	if !ok {
		return fmt.Errorf("schedule %s: the store %T keeps no schedule state", tick.Schedule, e.store)
	}
	return ss.ScheduleClaim(ctx, &ScheduleClaimParams{Flow: run.FlowName, Name: tick.Schedule, Tick: tick.Tick, Prev: tick.Prev, Run: run})
}

// Names of flow schedules in logs and metrics (docs/telemetry.md).
const (
	// LogKeySchedule is the log record key of a schedule's name.
	LogKeySchedule = "schedule"
	// MetricScheduleRuns counts schedule ticks by outcome; the Prometheus
	// exporter names it pyoco_schedule_runs_total.
	MetricScheduleRuns = "pyoco.schedule.runs"
	// LabelOutcome is the outcome label of MetricScheduleRuns.
	LabelOutcome = "outcome"
)

// Outcomes of a schedule tick (the outcome label of pyoco_schedule_runs_total).
const (
	// ScheduleSubmitted: this process claimed the tick and created its run.
	ScheduleSubmitted = "submitted"
	// ScheduleSkipped: a tick missed while no server ran the schedule and
	// not run by its catch-up policy, counted by the process that claimed
	// past it.
	ScheduleSkipped = "skipped"
	// ScheduleError: a claim or submit failed (store unreachable, …); the
	// tick is tried again.
	ScheduleError = "error"
)
