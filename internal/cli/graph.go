package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/pyoco/pyoco/engine"
	"github.com/spf13/cobra"
)

func newGraphCmd(e *env) *cobra.Command {
	var format string
	c := &cobra.Command{
		Use:   "graph FLOW.yaml",
		Short: "Print a flow's graph as Mermaid or Graphviz dot",
		Args:  exactArgs(1, "one flow file"),
		RunE: func(c *cobra.Command, args []string) error {
			if format != "mermaid" && format != "dot" {
				return usageErr("--format %q: want mermaid or dot", format)
			}
			reg, err := newRegistry(c.Context(), e, false)
			if err != nil {
				return err
			}
			f, err := loadFlow(e, args[0], reg)
			if err != nil {
				return err
			}
			if format == "dot" {
				writeDot(e.stdout, f)
			} else {
				writeMermaid(e.stdout, f)
			}
			return nil
		},
	}
	c.Flags().StringVar(&format, "format", "mermaid", "mermaid or dot")
	return c
}

// mermaidID makes a node id Mermaid accepts (names may hold '.' and '-').
func mermaidID(name string) string {
	return "n_" + strings.NewReplacer(".", "_2e_", "-", "_2d_").Replace(name)
}

func writeMermaid(w io.Writer, f *engine.Flow) {
	fmt.Fprintln(w, "flowchart LR")
	for _, name := range f.Order {
		t := f.Tasks[name]
		fmt.Fprintf(w, "  %s[\"%s<br/><small>%s</small>\"]\n", mermaidID(name), name, t.Use)
	}
	for _, name := range f.Order {
		t := f.Tasks[name]
		arrow := "-->"
		if t.Trigger == engine.TriggerAny {
			arrow = "-.->|any|"
		}
		for _, up := range t.Upstream {
			fmt.Fprintf(w, "  %s %s %s\n", mermaidID(up), arrow, mermaidID(name))
		}
	}
}

func writeDot(w io.Writer, f *engine.Flow) {
	fmt.Fprintf(w, "digraph %q {\n  rankdir=LR;\n  node [shape=box, style=rounded];\n", f.Name)
	for _, name := range f.Order {
		fmt.Fprintf(w, "  %q [label=%q];\n", name, name+"\n"+f.Tasks[name].Use)
	}
	for _, name := range f.Order {
		t := f.Tasks[name]
		attr := ""
		if t.Trigger == engine.TriggerAny {
			attr = ` [style=dashed, label="any"]`
		}
		for _, up := range t.Upstream {
			fmt.Fprintf(w, "  %q -> %q%s;\n", up, name, attr)
		}
	}
	fmt.Fprintln(w, "}")
}
