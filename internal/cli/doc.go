// Package cli implements the pyoco command line: flag parsing, wiring of the
// engine, store, telemetry and tasks, and the human and JSON output. The
// binary in cmd/pyoco only calls [Main].
//
// It may import every pyoco package; nothing imports it but cmd/pyoco.
package cli
