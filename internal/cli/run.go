package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/pyoco/pyoco/api/apidoc"
	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/memstore"
	"github.com/pyoco/pyoco/telemetry"
	"github.com/spf13/cobra"
)

func newRunCmd(e *env) *cobra.Command {
	var (
		paramFlags []string
		plain      bool
		quiet      bool
		asJSON     bool
		server     string
		popts      pluginOptions
	)
	c := &cobra.Command{
		Use:   "run FLOW.yaml | run FLOW --server URL",
		Short: "Run a flow locally on the embedded store, with live progress",
		Long: `Run a flow locally on the embedded in-memory store (no Redis needed).

Exit status: 0 when the run COMPLETED, 1 when it FAILED, 130 when Ctrl+C
cancelled it (a second Ctrl+C stops at once), 2 for a bad flow file or flags.
On a terminal, a live board shows the running tasks (attempt, elapsed time)
below the progress lines, redrawn in place; --plain, NO_COLOR or an output that
is not a terminal gives plain lines instead (PYOCO_PROGRESS=board|cute|plain
forces the board, cute lines without the board, or plain lines). What tasks say
(log messages, shell stdout and stderr) is shown as it happens, prefixed by
the task ("[task] text"); --quiet hides it.

With --server URL, the run goes to that pyoco server instead (FLOW is a flow
file, whose text is sent, or the name of a flow the server offers) and is
followed the same way: progress from its task states, its log lines, the
same exit status; Ctrl+C cancels the remote run.`,
		Args: exactArgs(1, "one flow file"),
		RunE: func(c *cobra.Command, args []string) error {
			params, err := parseParams(paramFlags)
			if err != nil {
				return err
			}
			if server != "" {
				return runRemote(c.Context(), e, server, args[0], params, outputOpts{plain: plain, quiet: quiet, asJSON: asJSON})
			}
			ctx := c.Context()
			reg, err := newRegistry(ctx, e, popts.strict)
			if err != nil {
				return cancelledOr(ctx, e, err)
			}
			flow, err := loadFlow(e, args[0], reg)
			if err != nil {
				return cancelledOr(ctx, e, err)
			}
			return runLocal(ctx, e, flow, reg, params, outputOpts{plain: plain, quiet: quiet, asJSON: asJSON})
		},
	}
	c.Flags().StringArrayVarP(&paramFlags, "param", "p", nil, "set a param: key=value (JSON values keep their type); repeatable")
	c.Flags().BoolVar(&plain, "plain", false, "plain progress lines, no emoji")
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "do not show what tasks print and log (the run's logs keep it)")
	c.Flags().BoolVar(&asJSON, "json", false, "print only the finished run as JSON on stdout (progress goes to stderr)")
	c.Flags().StringVar(&server, "server", "", "submit to this pyoco server and follow the run there")
	popts.register(c)
	return c
}

func (e *env) cuteOutput(plain bool, w io.Writer) bool {
	switch e.getenv("PYOCO_PROGRESS") {
	case "cute", "board":
		return true
	case "plain":
		return false
	}
	if plain {
		return false
	}
	if _, ok := e.lookupEnv("NO_COLOR"); ok {
		return false
	}
	return e.isTTY(w)
}

// boardOutput reports whether w gets the live board: a terminal (not TERM=
// dumb) with cute output, unless PYOCO_PROGRESS says cute or plain lines;
// PYOCO_PROGRESS=board forces it.
func (e *env) boardOutput(plain bool, w io.Writer) bool {
	switch e.getenv("PYOCO_PROGRESS") {
	case "board":
		return true
	case "cute", "plain":
		return false
	}
	return e.cuteOutput(plain, w) && e.getenv("TERM") != "dumb" && e.isTTY(w)
}

// newProgress shows a run's progress on w: a live board of the running
// tasks over the cute lines on a terminal, else cute or plain lines (see
// cuteOutput). total is the run's number of tasks (0: unknown). Call close
// (summary does) to stop the board.
func (e *env) newProgress(o outputOpts, w io.Writer, total int) *progress {
	pr := &progress{w: w, cute: e.cuteOutput(o.plain, w), quiet: o.quiet}
	if e.boardOutput(o.plain, w) {
		pr.board = startBoard(w, total)
	}
	return pr
}

// cancelledOr returns err, or the Ctrl+C exit if ctx was cancelled
// meanwhile (the error is then a consequence of the interruption).
func cancelledOr(ctx context.Context, e *env, err error) error {
	if ctx.Err() == nil {
		return err
	}
	fmt.Fprintln(e.stderr, "pyoco: interrupted before the run started")
	return exitCode(ExitCancelled)
}

// outputOpts are the output flags of `pyoco run`.
type outputOpts struct {
	plain, quiet, asJSON bool
}

func runLocal(ctx context.Context, e *env, flow *engine.Flow, reg *engine.Registry, params map[string]any, o outputOpts) error {
	asJSON := o.asJSON
	out := e.stdout
	if asJSON {
		out = e.stderr
	}
	for _, w := range flow.Warnings {
		fmt.Fprintf(e.stderr, "pyoco: warning: %s\n", w.Error())
	}

	tel, err := telemetry.Setup(context.WithoutCancel(ctx), telemetry.Config{ConsoleWriter: e.stderr, Env: e.getenv})
	if err != nil {
		return cancelledOr(ctx, e, usageErr("telemetry: %v", err))
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			fmt.Fprintf(e.stderr, "pyoco: warning: telemetry shutdown: %v\n", err)
		}
	}()

	pr := e.newProgress(o, out, len(flow.Order))
	defer pr.close()
	store := memstore.New()
	eng, err := engine.New(store, reg, &engine.Config{
		TracerProvider: tel.TracerProvider,
		MeterProvider:  tel.MeterProvider,
		LoggerProvider: tel.Logs(),
		Observer:       pr.observe,
		LookupEnv:      e.lookupEnv,
	})
	if err != nil {
		return cancelledOr(ctx, e, err)
	}
	eng.CountersStart(flow)
	bg := context.WithoutCancel(ctx)
	run, err := eng.Submit(bg, &engine.SubmitParams{Flow: flow, Params: params})
	if err != nil {
		return cancelledOr(ctx, e, err)
	}
	var final *engine.Run
	if ctx.Err() != nil {
		// Ctrl+C before the run started: it ends CANCELLED without running.
		if _, err := eng.Cancel(bg, run.ID); err != nil {
			return cancelledOr(ctx, e, err)
		}
		if final, err = store.RunGet(bg, run.ID); err != nil {
			return cancelledOr(ctx, e, err)
		}
		pr.observe(engine.Progress{Kind: engine.ProgressRunFinished, RunID: final.ID, FlowName: final.FlowName, TraceID: final.TraceID,
			Status: string(final.Status), Error: "cancelled before it started"})
	} else if final, err = eng.Execute(ctx, &engine.ExecuteParams{RunID: run.ID}); err != nil {
		return cancelledOr(ctx, e, err)
	}
	pr.summary(final, flow.Order)
	if asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(apidoc.NewRunDoc(final, -1)); err != nil {
			return err
		}
	}
	switch final.Status {
	case engine.RunCompleted:
		return nil
	case engine.RunCancelled:
		return exitCode(ExitCancelled)
	default:
		return exitCode(ExitFailed)
	}
}
