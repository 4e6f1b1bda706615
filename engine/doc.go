// Package engine is pyoco's core: flow files and the graph DSL
// ([LoadFlow], [ParseGraph]), references ([ResolveInputs]), the task
// [Registry] and Go plug-ins ([RegisterPlugin]), the [Store] interfaces that
// state backends implement (with optional capabilities such as [Queue] and
// [CancelNotifier]), and the scheduler ([Engine.Submit], [Engine.Execute],
// [Engine.Cancel]) that runs a flow's tasks with parallelism, triggers,
// fail policies, retries, enforced time-outs and graceful cancellation,
// emitting the spans, metrics and logs of SPEC §5–7.
//
// Flow schedules ([Schedule], flow.schedule) are parsed here; the
// [ScheduleStore] capability claims their ticks, and package schedule runs
// them.
//
// engine imports only the standard library, the OpenTelemetry API, a YAML
// parser that reports positions and a cron expression parser
// (robfig/cron/v3, no dependencies). It never imports a store, the API,
// the CLI or the telemetry SDK: those import it. Stores live in
// engine/memstore and redisstore and are checked by engine/storetest.
package engine
