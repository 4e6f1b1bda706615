package cli

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/pyoco/pyoco/engine"
	"github.com/spf13/cobra"
)

type checkIssue struct {
	Message string `json:"message"`
	File    string `json:"file"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
}

type checkReport struct {
	Status   string       `json:"status"` // ok, warning or error
	Errors   []checkIssue `json:"errors"`
	Warnings []checkIssue `json:"warnings"`
}

func issueOf(le *engine.LoadError, file string) checkIssue {
	f := le.Pos.File
	if f == "" {
		f = file
	}
	return checkIssue{Message: le.Msg, File: f, Line: le.Pos.Line, Column: le.Pos.Col}
}

func newCheckCmd(e *env) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "check FLOW.yaml",
		Short: "Validate a flow file (exit 1 on errors)",
		Args:  exactArgs(1, "one flow file"),
		RunE: func(c *cobra.Command, args []string) error {
			reg, err := newRegistry(c.Context(), e, false)
			if err != nil {
				return err
			}
			path := args[0]
			rep := checkReport{Status: "ok", Errors: []checkIssue{}, Warnings: []checkIssue{}}
			f, err := engine.LoadFlowFile(path, reg)
			if err != nil {
				var les engine.LoadErrors
				var le *engine.LoadError
				switch {
				case errors.As(err, &les):
					for _, l := range les {
						rep.Errors = append(rep.Errors, issueOf(l, path))
					}
				case errors.As(err, &le):
					rep.Errors = append(rep.Errors, issueOf(le, path))
				default:
					rep.Errors = append(rep.Errors, checkIssue{Message: err.Error(), File: path})
				}
			} else {
				for _, w := range f.Warnings {
					rep.Warnings = append(rep.Warnings, issueOf(w, path))
				}
			}
			switch {
			case len(rep.Errors) > 0:
				rep.Status = "error"
			case len(rep.Warnings) > 0:
				rep.Status = "warning"
			}
			if asJSON {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				for _, i := range rep.Errors {
					fmt.Fprintf(e.stderr, "%s: error: %s\n", engine.Position{File: i.File, Line: i.Line, Col: i.Column}, i.Message)
				}
				for _, i := range rep.Warnings {
					fmt.Fprintf(e.stderr, "%s: warning: %s\n", engine.Position{File: i.File, Line: i.Line, Col: i.Column}, i.Message)
				}
				if f != nil {
					fmt.Fprintf(e.stdout, "%s: ok: flow %s, %d tasks, %d warnings\n", path, f.Name, len(f.Tasks), len(rep.Warnings))
				}
			}
			if rep.Status == "error" {
				return exitCode(ExitFailed)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, `print {"status","errors","warnings"} as JSON`)
	return c
}
