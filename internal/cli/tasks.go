package cli

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/pyoco/pyoco/engine"
	"github.com/spf13/cobra"
)

// taskDoc is the JSON shape of a registered task (`pyoco tasks list --json`, GET /tasks).
type taskDoc struct {
	Name     string         `json:"name"`
	Plugin   string         `json:"plugin"`
	Summary  string         `json:"summary"`
	Tags     []string       `json:"tags"`
	Category string         `json:"category"`
	Inputs   []engine.Param `json:"inputs"`
	Outputs  []engine.Param `json:"outputs"`
}

func newTasksCmd(e *env) *cobra.Command {
	c := &cobra.Command{Use: "tasks", Short: "Inspect the registered tasks"}
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the tasks this binary can run",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(c *cobra.Command, args []string) error {
			reg, err := newRegistry(c.Context(), e, false)
			if err != nil {
				return err
			}
			defs := reg.List()
			if asJSON {
				docs := make([]taskDoc, 0, len(defs))
				for _, d := range defs {
					docs = append(docs, taskDoc{Name: d.Name, Plugin: d.Plugin, Summary: d.Summary, Tags: nonNil(d.Tags),
						Category: d.Category, Inputs: nonNilP(d.Inputs), Outputs: nonNilP(d.Outputs)})
				}
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{"tasks": docs})
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tPLUGIN\tCATEGORY\tTAGS\tSUMMARY")
			for _, d := range defs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.Name, d.Plugin, d.Category, strings.Join(d.Tags, ","), d.Summary)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.AddCommand(list)
	return c
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nonNilP(s []engine.Param) []engine.Param {
	if s == nil {
		return []engine.Param{}
	}
	return s
}
