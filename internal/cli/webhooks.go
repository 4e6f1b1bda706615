package cli

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pyoco/pyoco/api"
	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/webhooks"
	"github.com/pyoco/pyoco/webhooks/delivery"
)

func newWebhooksCmd(e *env) *cobra.Command {
	c := &cobra.Command{
		Use:   "webhooks",
		Short: "Inspect webhook deliveries and test a receiver",
		Long: `Webhooks notify receivers when runs end (docs/webhooks.md). They are
configured in the server's config file (webhooks:) or with PYOCO_WEBHOOK_URL,
PYOCO_WEBHOOK_SECRET and PYOCO_WEBHOOK_EVENTS.`,
	}
	c.AddCommand(newWebhooksDeliveriesCmd(e), newWebhooksRetryCmd(e), newWebhooksTestCmd(e))
	return c
}

func newWebhooksDeliveriesCmd(e *env) *cobra.Command {
	var (
		co     clientOptions
		status string
		limit  int
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "deliveries",
		Short: "List webhook deliveries, newest first",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(c *cobra.Command, args []string) error {
			if status != "" && !delivery.Status(status).Valid() {
				return usageErr("--status %q: want pending, succeeded or failed", status)
			}
			cl, err := co.client(e)
			if err != nil {
				return err
			}
			q := url.Values{}
			if status != "" {
				q.Set("status", status)
			}
			if c.Flags().Changed("limit") {
				q.Set("limit", strconv.Itoa(limit))
			}
			path := "/webhooks/deliveries"
			if len(q) > 0 {
				path += "?" + q.Encode()
			}
			var page struct {
				Deliveries []api.WebhookDeliveryDoc `json:"deliveries"`
			}
			raw, err := cl.call(c.Context(), "GET", path, nil, &page)
			if err != nil {
				return err
			}
			if asJSON {
				_, err := e.stdout.Write(raw)
				return err
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tEVENT\tRUN ID\tSTATUS\tATTEMPTS\tCODE\tNEXT ATTEMPT\tURL\tLAST ERROR")
			for _, d := range page.Deliveries {
				code := "-"
				if d.LastStatusCode != nil {
					code = strconv.Itoa(*d.LastStatusCode)
				}
				lastErr := "-"
				if d.LastError != nil {
					lastErr = oneLine(*d.LastError, 80)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", d.ID, d.Event, d.RunID, d.Status, d.Attempts, code,
					fmtTime(d.NextAttempt), d.URL, lastErr)
			}
			return tw.Flush()
		},
	}
	co.register(c)
	c.Flags().StringVar(&status, "status", "", "only deliveries in this status: pending, succeeded or failed")
	c.Flags().IntVar(&limit, "limit", 50, "at most this many deliveries (1..500)")
	c.Flags().BoolVar(&asJSON, "json", false, "print the server's JSON")
	return c
}

func newWebhooksRetryCmd(e *env) *cobra.Command {
	var co clientOptions
	c := &cobra.Command{
		Use:   "retry ID",
		Short: "Send a webhook delivery again now",
		Args:  exactArgs(1, "a delivery ID (msg_…)"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := co.client(e)
			if err != nil {
				return err
			}
			var d api.WebhookDeliveryDoc
			if _, err := cl.call(c.Context(), "POST", "/webhooks/deliveries/"+url.PathEscape(args[0])+"/retry", nil, &d); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s: %s, due now (attempts so far: %d)\n", d.ID, d.Status, d.Attempts)
			return nil
		},
	}
	co.register(c)
	return c
}

func newWebhooksTestCmd(e *env) *cobra.Command {
	var (
		secret  string
		format  string
		event   string
		timeout time.Duration
	)
	c := &cobra.Command{
		Use:   "test URL",
		Short: "Send a signed sample delivery to URL and print the receiver's answer",
		Long: `Send one sample delivery (a made-up run of flow sample_flow) to URL, in the
standard format (signed with --secret or PYOCO_WEBHOOK_SECRET, several
space-separated secrets give several signatures) or the slack format, and
print the receiver's answer. Exits 1 unless the answer is 2xx.`,
		Args: exactArgs(1, "a receiver URL"),
		RunE: func(c *cobra.Command, args []string) error {
			if secret == "" {
				secret = e.getenv("PYOCO_WEBHOOK_SECRET")
			}
			ep, err := webhooks.NewEndpoint(webhooks.EndpointConfig{URL: args[0], Secret: secret, Format: format,
				Events: []string{event}}, nil)
			if err != nil && !(format != webhooks.FormatSlack && secret == "" && strings.Contains(err.Error(), "secret or secret_env is required")) {
				return usageErr("%v", err)
			}
			if ep == nil { // unsigned standard delivery: allowed for a test
				ep = &webhooks.Endpoint{URL: args[0], Format: webhooks.FormatStandard}
			}
			now := time.Now()
			run := webhooks.SampleRun(now)
			switch event {
			case webhooks.EventRunCompleted:
				run.Status, run.Error = engine.RunCompleted, ""
				run.Tasks["load"].Status, run.Tasks["load"].Error = engine.TaskSucceeded, ""
			case webhooks.EventRunCancelled:
				run.Status, run.Error = engine.RunCancelled, "cancelled"
			}
			id := "msg_test_" + strconv.FormatInt(now.UnixNano(), 36)
			body, err := webhooks.Body(ep.Format, id, event, now, run)
			if err != nil {
				return err
			}
			ans, err := webhooks.Send(c.Context(), webhooks.NewHTTPClient(timeout),
				&webhooks.Request{URL: ep.URL, ID: id, Body: body, Format: ep.Format, Keys: ep.Keys, Time: now})
			if err != nil {
				var ue *url.Error
				if errors.As(err, &ue) {
					err = ue.Err
				}
				return &exitError{code: ExitFailed, msg: fmt.Sprintf("%s: no answer: %v", args[0], err)}
			}
			signed := "unsigned"
			if len(ep.Keys) > 0 && ep.Format != webhooks.FormatSlack {
				signed = fmt.Sprintf("signed with %d secret(s)", len(ep.Keys))
			}
			fmt.Fprintf(e.stdout, "sent %s %s (%s, %d bytes, webhook-id %s)\n", event, ep.Format, signed, len(body), id)
			fmt.Fprintf(e.stdout, "answer: %s\n", ans.Status)
			if b := strings.TrimSpace(string(ans.Body)); b != "" {
				fmt.Fprintln(e.stdout, b)
			}
			if ans.StatusCode < 200 || ans.StatusCode > 299 {
				return exitCode(ExitFailed)
			}
			return nil
		},
	}
	c.Flags().StringVar(&secret, "secret", "", "whsec_ secret(s) to sign with, space-separated [PYOCO_WEBHOOK_SECRET]")
	c.Flags().StringVar(&format, "format", webhooks.FormatStandard, "standard, slack or cloudevents")
	c.Flags().StringVar(&event, "event", webhooks.EventRunFailed, "the sample's event: run.completed, run.failed or run.cancelled")
	c.Flags().DurationVar(&timeout, "timeout", webhooks.DefaultTimeout, "how long to wait for the answer")
	return c
}

// oneLine flattens s to one line of at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
