// Package plugins builds the task plug-ins of a pyoco process into an
// [engine.Registry] and reports on them.
//
// Go plug-ins are compiled in: they call [engine.RegisterPlugin] from
// init() and [Load] adds their tasks. Exec plug-ins are found at run time:
// executables named "pyoco-plugin-<name>" in the directories of
// PYOCO_PLUGIN_PATH (default ~/.pyoco/plugins), speaking protocol 1
// (docs/plugins.md): `describe` prints the plug-in's tasks as JSON, and
// `run <task>` runs one attempt with a JSON request on stdin, its stderr
// streamed into the run's logs and a JSON result on stdout.
//
// A broken plug-in never stops pyoco: [Load] records what went wrong in
// its [Report] and goes on; Config.Strict turns any problem into an error.
//
// The package may import engine and the standard library, never api,
// webhooks or telemetry.
package plugins
