package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// Exit codes.
const (
	ExitOK        = 0
	ExitFailed    = 1   // the run FAILED, or check found errors
	ExitUsage     = 2   // bad flags, unreadable or invalid flow file
	ExitCancelled = 130 // cancelled by Ctrl+C
)

// exitError carries an exit code out of a command. Its message, if any, has
// already been printed unless printed is false.
type exitError struct {
	code    int
	msg     string
	printed bool
}

func (e *exitError) Error() string { return e.msg }

func exitCode(code int) error { return &exitError{code: code, printed: true} }

func usageErr(format string, a ...any) error {
	return &exitError{code: ExitUsage, msg: fmt.Sprintf(format, a...)}
}

// env is the process environment a command sees; tests replace it.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	lookupEnv      func(string) (string, bool)
	isTTY          func(io.Writer) bool
}

// Main runs the pyoco command line with args (without the program name) and
// returns the process exit code. Cancelling ctx is a Ctrl+C: a running flow
// is cancelled gracefully.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr, getenv: os.Getenv, lookupEnv: os.LookupEnv, isTTY: isTerminal}
	root := newRoot(e)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if !ee.printed && ee.msg != "" {
			fmt.Fprintln(stderr, "pyoco: "+ee.msg)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "pyoco: "+err.Error())
	return ExitUsage
}

func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:           "pyoco",
		Short:         "pyoco: an OpenTelemetry-native workflow engine",
		Long:          "pyoco runs flows of tasks defined in YAML, locally or on workers sharing one Redis,\nwith every run a trace, every task attempt a span, and Prometheus metrics.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageErr("%v (see 'pyoco %s --help')", err, c.Name())
	})
	root.AddCommand(newRunCmd(e), newCheckCmd(e), newGraphCmd(e), newTasksCmd(e), newPluginsCmd(e), newVersionCmd(e), newWorkerCmd(e),
		newServerCmd(e), newSubmitCmd(e), newRunsCmd(e), newWebhooksCmd(e), newSchedulesCmd(e))
	return root
}

// exactArgs is cobra.ExactArgs with an exit code for usage errors.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != n {
			return usageErr("%s: want %s, got %d argument(s) (see 'pyoco %s --help')", c.CommandPath(), what, len(args), c.Name())
		}
		return nil
	}
}
