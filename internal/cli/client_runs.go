package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pyoco/pyoco/api/apidoc"
	"github.com/pyoco/pyoco/engine"
)

// pollEvery is how often a client command polls a run's state.
const pollEvery = 200 * time.Millisecond

// submitRequest is the body of POST /runs.
type submitRequest struct {
	FlowName string         `json:"flow_name,omitempty"`
	FlowYAML string         `json:"flow_yaml,omitempty"`
	Params   map[string]any `json:"params,omitempty"`
	Tags     []string       `json:"tags,omitempty"`
}

type submitAnswer struct {
	RunID   string           `json:"run_id"`
	Status  engine.RunStatus `json:"status"`
	TraceID string           `json:"trace_id"`
	// replayed is true when the server answered with the run an earlier
	// submit with the same Idempotency-Key created (200, not 201).
	replayed bool
}

// isFlowFile tells a flow file argument from a flow name: a .yaml/.yml
// name or an existing file.
func isFlowFile(arg string) bool {
	ext := strings.ToLower(filepath.Ext(arg))
	if ext == ".yaml" || ext == ".yml" {
		return true
	}
	fi, err := os.Stat(arg)
	return err == nil && fi.Mode().IsRegular()
}

// submitRun posts a run of arg (flow file or flow name), with the
// Idempotency-Key key unless it is "".
func submitRun(ctx context.Context, cl *apiClient, arg string, params map[string]any, tags []string, key string) (*submitAnswer, error) {
	req := submitRequest{Params: params, Tags: tags}
	if isFlowFile(arg) {
		b, err := engine.ReadFlowFile(arg)
		if err != nil {
			return nil, usageErr("%v", err)
		}
		req.FlowYAML = string(b)
	} else {
		req.FlowName = arg
	}
	var header http.Header
	if key != "" {
		header = http.Header{"Idempotency-Key": {key}}
	}
	resp, err := cl.request(ctx, "POST", "/runs", req, header)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var ans submitAnswer
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&ans); err != nil {
		return nil, &exitError{code: ExitFailed, msg: fmt.Sprintf("server %s: bad answer to POST /runs: %v", cl.base, err)}
	}
	ans.replayed = resp.StatusCode == http.StatusOK
	return &ans, nil
}

func newSubmitCmd(e *env) *cobra.Command {
	var (
		co         clientOptions
		paramFlags []string
		tags       []string
		wait       bool
		asJSON     bool
		idemKey    string
	)
	c := &cobra.Command{
		Use:   "submit FLOW_NAME|FLOW.yaml",
		Short: "Submit a run to a pyoco server",
		Long: `Submit a run to a pyoco server: a flow the server offers by name, or a flow
file (a .yaml/.yml path), whose text is sent.

--idempotency-key KEY makes the submit safe to retry: the server answers a
second submit with the same key and the same request (within 24 h) with
the run the first one created (printed with "(existing run of this key)"),
and refuses the key with another request (exit 1).

With --wait, wait until the run ends; exit 0 COMPLETED, 1 FAILED, 130
CANCELLED (Ctrl+C stops waiting; the run goes on: 'pyoco runs cancel ID').`,
		Args: exactArgs(1, "a flow name or a flow file"),
		RunE: func(c *cobra.Command, args []string) error {
			params, err := parseParams(paramFlags)
			if err != nil {
				return err
			}
			cl, err := co.client(e)
			if err != nil {
				return err
			}
			ctx := c.Context()
			ans, err := submitRun(ctx, cl, args[0], params, tags, idemKey)
			if err != nil {
				return err
			}
			if !wait {
				if asJSON {
					return printJSON(e, ans)
				}
				fmt.Fprintf(e.stdout, "run %s %s  trace_id %s%s\n", ans.RunID, ans.Status, ans.TraceID, replayNote(ans))
				return nil
			}
			if !asJSON {
				fmt.Fprintf(e.stderr, "run %s %s  trace_id %s%s; waiting…\n", ans.RunID, ans.Status, ans.TraceID, replayNote(ans))
			}
			doc, raw, err := cl.waitRun(ctx, ans.RunID, pollEvery, nil)
			if err != nil {
				if ctx.Err() != nil {
					fmt.Fprintf(e.stderr, "pyoco: stopped waiting; run %s goes on ('pyoco runs cancel %s' cancels it)\n", ans.RunID, ans.RunID)
					return exitCode(ExitCancelled)
				}
				return err
			}
			if asJSON {
				_, err = e.stdout.Write(append(raw, '\n'))
				if err != nil {
					return err
				}
			} else {
				fmt.Fprintf(e.stdout, "run %s %s%s\n", doc.RunID, doc.Status, errSuffix(doc.Error))
			}
			return exitForStatus(doc.Status)
		},
	}
	co.register(c)
	c.Flags().StringArrayVarP(&paramFlags, "param", "p", nil, "set a param: key=value (JSON values keep their type); repeatable")
	c.Flags().StringArrayVar(&tags, "tag", nil, "tag the run; repeatable")
	c.Flags().BoolVar(&wait, "wait", false, "wait until the run ends; exit 0/1/130 like 'pyoco run'")
	c.Flags().StringVar(&idemKey, "idempotency-key", "", "Idempotency-Key header: a retried submit with the same key and request gets the same run")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON (with --wait: the finished Run)")
	return c
}

// replayNote marks an answer that is an earlier submit's run.
func replayNote(ans *submitAnswer) string {
	if ans.replayed {
		return " (existing run of this key)"
	}
	return ""
}

func errSuffix(s *string) string {
	if s == nil || *s == "" {
		return ""
	}
	return ": " + firstLine(*s)
}

func printJSON(e *env, v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newRunsCmd(e *env) *cobra.Command {
	c := &cobra.Command{Use: "runs", Short: "List, show, follow and cancel the runs of a pyoco server"}
	c.AddCommand(newRunsListCmd(e), newRunsShowCmd(e), newRunsLogsCmd(e), newRunsCancelCmd(e))
	return c
}

func newRunsListCmd(e *env) *cobra.Command {
	var (
		co       clientOptions
		statuses []string
		flow     string
		tag      string
		limit    int
		cursor   string
		asJSON   bool
	)
	c := &cobra.Command{
		Use:   "list",
		Short: "List runs, newest first",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := co.client(e)
			if err != nil {
				return err
			}
			q := url.Values{}
			for _, s := range statuses {
				q.Add("status", s)
			}
			if flow != "" {
				q.Set("flow", flow)
			}
			if tag != "" {
				q.Set("tag", tag)
			}
			if c.Flags().Changed("limit") {
				q.Set("limit", strconv.Itoa(limit))
			}
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			path := "/runs"
			if len(q) > 0 {
				path += "?" + q.Encode()
			}
			var page struct {
				Runs       []apidoc.RunSummaryDoc `json:"runs"`
				NextCursor *string                `json:"next_cursor"`
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
			fmt.Fprintln(tw, "RUN ID\tFLOW\tSTATUS\tCREATED\tDURATION\tTAGS\tERROR")
			for _, r := range page.Runs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.RunID, r.FlowName, r.Status, fmtTime(r.CreatedAt),
					fmtMS(r.RunDurationMS), orDash(strings.Join(r.Tags, ",")), orDash(strings.TrimPrefix(errSuffix(r.Error), ": ")))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if page.NextCursor != nil {
				fmt.Fprintf(e.stdout, "more: pyoco runs list --cursor %s\n", *page.NextCursor)
			}
			return nil
		},
	}
	co.register(c)
	c.Flags().StringArrayVar(&statuses, "status", nil, "only runs in these statuses (repeatable or comma list)")
	c.Flags().StringVar(&flow, "flow", "", "only runs of this flow")
	c.Flags().StringVar(&tag, "tag", "", "only runs with this tag")
	c.Flags().IntVar(&limit, "limit", 50, "runs per page (1..500)")
	c.Flags().StringVar(&cursor, "cursor", "", "the next page's cursor, from a previous list")
	c.Flags().BoolVar(&asJSON, "json", false, "print the server's JSON")
	return c
}

func fmtTime(t apidoc.Timestamp) string {
	tt := time.Time(t)
	if tt.IsZero() {
		return "-"
	}
	return tt.UTC().Format("2006-01-02 15:04:05")
}

func fmtMS(ms *int64) string {
	if ms == nil {
		return "-"
	}
	return fmtDur(time.Duration(*ms) * time.Millisecond)
}

// taskOrder sorts a run's tasks by start, then name (unstarted last).
func taskOrder(tasks map[string]apidoc.TaskDoc) []string {
	names := make([]string, 0, len(tasks))
	for n := range tasks {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := time.Time(tasks[names[i]].StartedAt), time.Time(tasks[names[j]].StartedAt)
		switch {
		case a.IsZero() != b.IsZero():
			return !a.IsZero()
		case !a.Equal(b):
			return a.Before(b)
		}
		return names[i] < names[j]
	})
	return names
}

func newRunsShowCmd(e *env) *cobra.Command {
	var (
		co     clientOptions
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "show RUN_ID",
		Short: "Show one run and its tasks",
		Args:  exactArgs(1, "a run id"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := co.client(e)
			if err != nil {
				return err
			}
			doc, raw, err := cl.runDoc(c.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				_, err := e.stdout.Write(raw)
				return err
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			for _, kv := range [][2]string{
				{"run", doc.RunID}, {"flow", doc.FlowName}, {"status", string(doc.Status)},
				{"created", fmtTime(doc.CreatedAt)}, {"started", fmtTime(doc.StartTime)}, {"ended", fmtTime(doc.EndTime)},
				{"duration", fmtMS(doc.RunDurationMS)}, {"queue wait", fmtMS(doc.QueueWaitMS)},
				{"attempt", strconv.Itoa(doc.Attempt)}, {"worker", orDash(doc.WorkerID)}, {"trace_id", doc.TraceID},
				{"tags", orDash(strings.Join(doc.Tags, ","))}, {"error", orDash(strings.TrimPrefix(errSuffix(doc.Error), ": "))},
			} {
				fmt.Fprintf(tw, "%s\t%s\n", kv[0], kv[1])
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintln(e.stdout)
			tw = tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TASK\tSTATE\tUSE\tATTEMPTS\tDURATION\tERROR")
			for _, name := range taskOrder(doc.Tasks) {
				t := doc.Tasks[name]
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", name, t.State, t.Use, t.Attempts, fmtMS(t.DurationMS),
					orDash(strings.TrimPrefix(errSuffix(t.Error), ": ")))
			}
			return tw.Flush()
		},
	}
	co.register(c)
	c.Flags().BoolVar(&asJSON, "json", false, "print the Run as JSON (SPEC §4)")
	return c
}

// printLogLine prints one log entry as "15:04:05.000 task [stream] text".
func printLogLine(e *env, le logEntry) {
	ts := time.Time(le.Timestamp).UTC().Format("15:04:05.000")
	stream := ""
	if le.Stream == engine.StreamStderr {
		stream = " [stderr]"
	} else if le.Stream == engine.StreamLog && le.Level != "" && le.Level != "INFO" {
		stream = " [" + le.Level + "]"
	}
	fmt.Fprintf(e.stdout, "%s %s%s %s\n", ts, le.Task, stream, le.Text)
}

func newRunsLogsCmd(e *env) *cobra.Command {
	var (
		co     clientOptions
		tail   int
		task   string
		follow bool
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "logs RUN_ID",
		Short: "Print a run's logs; --follow streams them until the run ends",
		Args:  exactArgs(1, "a run id"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := co.client(e)
			if err != nil {
				return err
			}
			q := url.Values{}
			if c.Flags().Changed("tail") {
				q.Set("tail", strconv.Itoa(tail))
			}
			if task != "" {
				q.Set("task", task)
			}
			ctx := c.Context()
			if follow {
				_, err := cl.followLogs(ctx, args[0], q, func(raw []byte, le logEntry) {
					if asJSON {
						fmt.Fprintf(e.stdout, "%s\n", raw)
					} else {
						printLogLine(e, le)
					}
				})
				return err
			}
			// The server answers a page at a time (limit): without --tail,
			// continue after each full page; --tail N is one page of N.
			page := max(tail, 1000)
			q.Set("limit", strconv.Itoa(page))
			type logsPage struct {
				RunID     string            `json:"run_id"`
				RunStatus string            `json:"run_status"`
				Logs      []json.RawMessage `json:"logs"`
				NextAfter int64             `json:"next_after"`
			}
			all := logsPage{Logs: []json.RawMessage{}}
			for {
				var doc logsPage
				if _, err := cl.call(ctx, "GET", "/runs/"+url.PathEscape(args[0])+"/logs?"+q.Encode(), nil, &doc); err != nil {
					return err
				}
				for _, raw := range doc.Logs {
					var le logEntry
					if !asJSON && json.Unmarshal(raw, &le) == nil {
						printLogLine(e, le)
					}
				}
				all.RunID, all.RunStatus, all.NextAfter = doc.RunID, doc.RunStatus, doc.NextAfter
				if asJSON {
					all.Logs = append(all.Logs, doc.Logs...)
				}
				if tail > 0 || len(doc.Logs) < page {
					break
				}
				q.Set("after", strconv.FormatInt(doc.NextAfter, 10))
			}
			if asJSON {
				b, err := json.Marshal(all)
				if err != nil {
					return err
				}
				_, err = e.stdout.Write(append(b, '\n'))
				return err
			}
			return nil
		},
	}
	co.register(c)
	c.Flags().IntVar(&tail, "tail", 0, "only the last N entries (1..10000)")
	c.Flags().StringVar(&task, "task", "", "only this task's entries")
	c.Flags().BoolVarP(&follow, "follow", "f", false, "stream new entries until the run ends")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON (with --follow: one entry per line)")
	return c
}

func newRunsCancelCmd(e *env) *cobra.Command {
	var co clientOptions
	c := &cobra.Command{
		Use:   "cancel RUN_ID",
		Short: "Cancel a run (PENDING: at once; RUNNING: its tasks are stopped)",
		Args:  exactArgs(1, "a run id"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := co.client(e)
			if err != nil {
				return err
			}
			var ans struct {
				RunID  string           `json:"run_id"`
				Status engine.RunStatus `json:"status"`
			}
			if _, err := cl.call(c.Context(), "POST", "/runs/"+url.PathEscape(args[0])+"/cancel", nil, &ans); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "run %s %s\n", ans.RunID, ans.Status)
			return nil
		},
	}
	co.register(c)
	return c
}
