// Command pyoco is the pyoco workflow engine: `pyoco run flow.yaml` runs a
// flow locally; see `pyoco --help` and the README. Custom builds with Go
// task plug-ins use the same entry point through package pyococmd.
package main

import (
	"os"

	"github.com/pyoco/pyoco/cmd/pyococmd"
)

func main() {
	os.Exit(run())
}

// run is the whole program (the first SIGINT/SIGTERM cancels gracefully,
// the second exits with 130); tests call it as the `pyoco` command.
func run() int {
	return pyococmd.Status()
}
