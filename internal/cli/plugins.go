package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/builtin"
	"github.com/pyoco/pyoco/plugins"
	"github.com/spf13/cobra"
)

// pluginCacheEnv names the describe cache directory of exec plug-ins
// ("off" disables it); default <user cache dir>/pyoco/plugins.
const pluginCacheEnv = "PYOCO_PLUGIN_CACHE"

// pluginOptions are the plug-in flags of the commands that run tasks
// (run; server and worker too): add them with register.
type pluginOptions struct {
	strict bool
}

func (o *pluginOptions) register(c *cobra.Command) {
	c.Flags().BoolVar(&o.strict, "strict", false, "make plug-in problems (broken, clashing or failing plug-ins) fatal")
}

// loadRegistry returns a registry holding the built-in tasks, then the
// tasks of the Go plug-ins linked into this binary and of the exec plug-ins
// in PYOCO_PLUGIN_PATH, and the plug-in report. With strict, a plug-in
// problem is an error (the report is still returned).
func loadRegistry(ctx context.Context, e *env, strict bool) (*engine.Registry, *plugins.Report, error) {
	reg := engine.NewRegistry()
	if err := builtin.Register(reg); err != nil {
		return nil, nil, fmt.Errorf("register built-in tasks: %w", err)
	}
	cfg := &plugins.Config{Strict: strict, Getenv: e.getenv, CacheDir: e.getenv(pluginCacheEnv)}
	rep, err := plugins.Load(ctx, reg, cfg)
	return reg, rep, err
}

// registryWithWarnings is newRegistry's body: plug-in problems are printed
// on stderr as warnings, or, with strict, as errors ending the command
// with exit status 2.
func registryWithWarnings(ctx context.Context, e *env, strict bool) (*engine.Registry, error) {
	reg, rep, err := loadRegistry(ctx, e, strict)
	if rep == nil {
		if err != nil {
			return nil, err
		}
		return reg, nil
	}
	kind := "warning"
	if err != nil {
		kind = "error"
	}
	for _, p := range rep.Problems() {
		fmt.Fprintf(e.stderr, "pyoco: %s: %s\n", kind, p)
	}
	if err != nil {
		fmt.Fprintln(e.stderr, "pyoco: --strict: plug-in problems are fatal; see 'pyoco plugins lint'")
		return nil, exitCode(ExitUsage)
	}
	return reg, nil
}

func newPluginsCmd(e *env) *cobra.Command {
	c := &cobra.Command{
		Use:   "plugins",
		Short: "Inspect the task plug-ins (Go plug-ins built in, exec plug-ins in PYOCO_PLUGIN_PATH)",
	}
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List each plug-in: origin (go/exec), version, path, tasks, warnings and errors",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(c *cobra.Command, args []string) error {
			_, rep, err := loadRegistry(c.Context(), e, false)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			if len(rep.Plugins) == 0 {
				fmt.Fprintf(e.stdout, "no plug-ins (exec plug-ins are searched in %s)\n", strings.Join(rep.Path, ", "))
				return nil
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tORIGIN\tVERSION\tSTATUS\tTASKS\tPATH")
			for _, p := range rep.Plugins {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.Origin, orDash(p.Version), pluginStatus(p), orDash(strings.Join(p.Tasks, ",")), orDash(p.Path))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			for _, p := range rep.Problems() {
				fmt.Fprintln(e.stdout, "! "+p)
			}
			return nil
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	lint := &cobra.Command{
		Use:   "lint",
		Short: "Check the plug-ins; exit 1 with the reasons (missing summary, untyped inputs, describe errors, clashes)",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(c *cobra.Command, args []string) error {
			reg, rep, err := loadRegistry(c.Context(), e, false)
			if err != nil {
				return err
			}
			reasons := plugins.Lint(rep, reg)
			if len(reasons) == 0 {
				n := 0
				for _, p := range rep.Plugins {
					n += len(p.Tasks)
				}
				fmt.Fprintf(e.stdout, "ok: %d plug-in(s), %d task(s)\n", len(rep.Plugins), n)
				return nil
			}
			for _, r := range reasons {
				fmt.Fprintln(e.stdout, r)
			}
			fmt.Fprintf(e.stderr, "pyoco: plugins lint: %d problem(s)\n", len(reasons))
			return exitCode(ExitFailed)
		},
	}
	c.AddCommand(list, lint)
	return c
}

func pluginStatus(p plugins.PluginReport) string {
	switch {
	case len(p.Errors) > 0:
		return "error"
	case len(p.Warnings) > 0:
		return "warning"
	}
	return "ok"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
