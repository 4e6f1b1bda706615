// Command pyoco is the pyoco workflow engine: `pyoco run flow.yaml` runs a
// flow locally; see `pyoco --help` and the README.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/internal/cli"
)

func main() {
	os.Exit(run())
}

// run wires signals: the first SIGINT/SIGTERM cancels the context (a
// running flow is cancelled gracefully), the second exits at once with 130.
func run() int {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-sigs:
			cancel(engine.ErrRunCancelled)
		case <-done:
			return
		}
		select {
		case <-sigs:
			fmt.Fprintln(os.Stderr, "pyoco: interrupted again, stopping now")
			os.Exit(cli.ExitCancelled)
		case <-done:
		}
	}()
	return cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
}
