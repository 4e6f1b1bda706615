// Package schedule provides [Runner], which starts the runs of flow
// schedules (flow.schedule in a flow file, [engine.Schedule]) on time:
// `pyoco server` owns one and runs it until it stops.
//
// Many servers may run the same schedules on one Redis: each tick is
// claimed in the store together with the creation of its run
// ([engine.ScheduleStore]), so each tick starts exactly one run, and a
// crash can neither lose nor double one. Ticks missed while no server ran
// follow the schedule's catchup policy (none, one, all). docs/flows.md
// describes schedules, docs/redis.md the claim key, docs/telemetry.md the
// pyoco_schedule_runs_total metric.
//
// schedule imports engine and the OpenTelemetry metric API only; it must
// not import api, redisstore or any other edge package.
package schedule
