// Package pyococmd is the pyoco command line as a library, for building
// your own pyoco binary with Go task plug-ins linked in (see
// docs/plugins.md), the way caddycmd serves custom Caddy builds:
//
//	package main
//
//	import (
//		"github.com/pyoco/pyoco/cmd/pyococmd"
//
//		_ "example.com/vision" // calls engine.RegisterPlugin from init()
//	)
//
//	func main() { pyococmd.Main() }
//
// It imports internal/cli and must not be imported by engine or plugins.
package pyococmd

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	// The IANA time zone database, so that flow.schedule timezones load
	// the same on a host (or image) without /usr/share/zoneinfo.
	_ "time/tzdata"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/internal/cli"
	"github.com/pyoco/pyoco/internal/procgroup"
)

// Main runs the pyoco command line with os.Args and exits with its status.
// The first SIGINT or SIGTERM cancels a running flow gracefully; a second
// one kills the process group of every running task (shell commands, exec
// plug-ins, and whatever they started) with SIGKILL and exits at once with
// status 130.
func Main() {
	os.Exit(Status())
}

// Status is [Main] without the exit: it runs the command line with os.Args,
// handling signals as Main does, and returns the exit status.
func Status() int {
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
			// Kill what the tasks started first: the shells and plug-ins
			// are in their own process groups, so our exit would not
			// reach them, and children that ignore SIGTERM would stay.
			n := procgroup.KillAll()
			fmt.Fprintf(os.Stderr, "pyoco: interrupted again, stopping now (killed %d task process groups)\n", n)
			os.Exit(cli.ExitCancelled)
		case <-done:
		}
	}()
	return Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
}

// Run runs the pyoco command line with args (without the program name) and
// returns the exit status: 0 ok, 1 a run FAILED (or check/lint found
// problems), 2 a usage error, 130 cancelled. Cancelling ctx is a Ctrl+C.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cli.Main(ctx, args, stdout, stderr)
}
