package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/memstore"
	"github.com/pyoco/pyoco/telemetry"
	"github.com/spf13/cobra"
)

func newRunCmd(e *env) *cobra.Command {
	var (
		paramFlags []string
		plain      bool
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
Progress is cute on a terminal; --plain, NO_COLOR or a non-terminal output
gives plain lines (PYOCO_PROGRESS=cute|plain forces either).

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
				return runRemote(c.Context(), e, server, args[0], params, plain, asJSON)
			}
			reg, err := newRegistry(c.Context(), e, popts.strict)
			if err != nil {
				return err
			}
			flow, err := loadFlow(e, args[0], reg)
			if err != nil {
				return err
			}
			return runLocal(c.Context(), e, flow, reg, params, plain, asJSON)
		},
	}
	c.Flags().StringArrayVarP(&paramFlags, "param", "p", nil, "set a param: key=value (JSON values keep their type); repeatable")
	c.Flags().BoolVar(&plain, "plain", false, "plain progress lines, no emoji")
	c.Flags().BoolVar(&asJSON, "json", false, "print only the finished run as JSON on stdout (progress goes to stderr)")
	c.Flags().StringVar(&server, "server", "", "submit to this pyoco server and follow the run there")
	popts.register(c)
	return c
}

func (e *env) cuteOutput(plain bool, w io.Writer) bool {
	switch e.getenv("PYOCO_PROGRESS") {
	case "cute":
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

func runLocal(ctx context.Context, e *env, flow *engine.Flow, reg *engine.Registry, params map[string]any, plain, asJSON bool) error {
	out := e.stdout
	if asJSON {
		out = e.stderr
	}
	pr := &progress{w: out, cute: e.cuteOutput(plain, out)}
	for _, w := range flow.Warnings {
		fmt.Fprintf(e.stderr, "pyoco: warning: %s\n", w.Error())
	}

	tel, err := telemetry.Setup(context.WithoutCancel(ctx), telemetry.Config{ConsoleWriter: e.stderr, Env: e.getenv})
	if err != nil {
		return usageErr("telemetry: %v", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			fmt.Fprintf(e.stderr, "pyoco: warning: telemetry shutdown: %v\n", err)
		}
	}()

	store := memstore.New()
	eng, err := engine.New(store, reg, &engine.Config{
		TracerProvider: tel.TracerProvider,
		MeterProvider:  tel.MeterProvider,
		Observer:       pr.observe,
		LookupEnv:      e.lookupEnv,
	})
	if err != nil {
		return err
	}
	run, err := eng.Submit(context.WithoutCancel(ctx), &engine.SubmitParams{Flow: flow, Params: params})
	if err != nil {
		return err
	}
	final, err := eng.Execute(ctx, run.ID)
	if err != nil {
		return err
	}
	pr.summary(final, flow.Order)
	if asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(engine.NewRunDoc(final, -1)); err != nil {
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
