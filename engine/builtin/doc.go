// Package builtin provides pyoco's built-in tasks (SPEC §2): shell, http,
// sleep, log, fail and noop. [Register] adds them to an [engine.Registry]
// under plug-in name [engine.BuiltinPlugin].
//
// Every task decodes its inputs through [engine.Typed], so an input of the
// wrong type fails the attempt with an [*engine.InputError] naming the input.
// Every task returns promptly once its context is done, with an error that
// wraps [context.Cause] so the engine can tell a timeout from a cancel.
//
// The package imports only the standard library, the engine package and the
// OpenTelemetry API (for trace context propagation); it must not import
// stores, the API server, telemetry set-up or other plug-ins.
package builtin
