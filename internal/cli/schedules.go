package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/pyoco/pyoco/api"
)

func newSchedulesCmd(e *env) *cobra.Command {
	c := &cobra.Command{
		Use:   "schedules",
		Short: "Inspect the flow schedules a server runs",
		Long: `Flow schedules (flow.schedule in a flow file, docs/flows.md) start runs on
their own: every 'pyoco server' runs the schedules of its --flows, and each
tick starts exactly one run however many servers share one Redis.`,
	}
	c.AddCommand(newSchedulesListCmd(e))
	return c
}

func newSchedulesListCmd(e *env) *cobra.Command {
	var (
		co     clientOptions
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "list",
		Short: "List the schedules of the server's flows, with their next fire time and last run",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := co.client(e)
			if err != nil {
				return err
			}
			var page struct {
				Schedules []api.ScheduleDoc `json:"schedules"`
			}
			raw, err := cl.call(c.Context(), "GET", "/schedules", nil, &page)
			if err != nil {
				return err
			}
			if asJSON {
				_, err := e.stdout.Write(raw)
				return err
			}
			if len(page.Schedules) == 0 {
				fmt.Fprintln(e.stdout, "no schedules")
				return nil
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "FLOW\tNAME\tSPEC\tTIMEZONE\tCATCHUP\tNEXT FIRE (UTC)\tLAST RUN (UTC)\tLAST RUN ID")
			for _, s := range page.Schedules {
				tz, id := "-", "-"
				if s.Timezone != nil {
					tz = *s.Timezone
				}
				if s.LastRunID != nil {
					id = *s.LastRunID
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Flow, s.Name, s.Spec, tz, s.Catchup,
					fmtTime(s.NextFireTime), fmtTime(s.LastRunTime), id)
			}
			return tw.Flush()
		},
	}
	co.register(c)
	c.Flags().BoolVar(&asJSON, "json", false, "print the server's JSON")
	return c
}
