// Package engine is pyoco's core: flow files and the graph DSL
// ([LoadFlow], [ParseGraph]), references ([ResolveInputs]), the task
// [Registry] and Go plug-ins ([RegisterPlugin]), the [Store] interfaces that
// state backends implement (with optional capabilities such as [Queue] and
// [CancelNotifier]), and the scheduler ([Engine.Submit], [Engine.Execute],
// [Engine.Cancel]) that runs a flow's tasks with parallelism, triggers,
// fail policies, retries, enforced time-outs and graceful cancellation,
// emitting the spans, metrics and logs of SPEC §5–7.
//
// engine imports only the standard library, the OpenTelemetry API and a
// YAML parser that reports positions. It never imports a store, the API,
// the CLI or the telemetry SDK: those import it. Stores live in
// engine/memstore and redisstore and are checked by engine/storetest.
package engine
