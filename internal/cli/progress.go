package cli

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/pyoco/pyoco/engine"
)

// progress prints a run's steps as they happen: cute (emoji) lines on a
// terminal, plain key=value lines otherwise; on a terminal the cute lines
// scroll above a live board of the running tasks (board). It is safe for
// concurrent use.
type progress struct {
	mu   sync.Mutex
	w    io.Writer
	cute bool
	// quiet hides what tasks say (their log entries, stdout and stderr).
	quiet bool
	// board, when set, draws the running tasks below the lines; summary
	// (or close) stops it.
	board *board
	// run is the run being followed (the first one started); the tasks of
	// other runs (its sub-flows' child runs) are shown as
	// "<flow>[<run id prefix>]/<task>".
	run string
}

// close stops the board, if any; the lines printed stay. It may be called
// more than once.
func (p *progress) close() {
	if p.board != nil {
		p.board.stop()
	}
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(time.Microsecond).String()
	}
}

// fmtTaskDur is a task's duration in a line or the summary: a task that
// ran in less than the clock's (or the API's millisecond) precision shows
// "<1ms", never "0s".
func fmtTaskDur(d time.Duration) string {
	if d <= 0 {
		return "<1ms"
	}
	return fmtDur(d)
}

// retryIn says when the next attempt comes: "retrying in 1s", or just
// "retrying" when the delay is not known (negative: a remote run).
func retryIn(d time.Duration) string {
	if d < 0 {
		return "retrying"
	}
	return "retrying in " + fmtDur(d)
}

func quoteIfNeeded(s string) string {
	if s == "" || strings.ContainsAny(s, " \t\n\"=") {
		return fmt.Sprintf("%q", s)
	}
	return s
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}

func (p *progress) observe(ev engine.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.run == "" && ev.Kind == engine.ProgressRunStarted {
		p.run = ev.RunID
	}
	if p.run != "" && ev.RunID != p.run && ev.Task != "" {
		ev.Task = childTask(ev)
	}
	if p.board != nil {
		var line strings.Builder
		p.line(&line, ev)
		p.board.event(ev, line.String())
		return
	}
	p.line(p.w, ev)
}

// childTask names a task of a sub-flow's child run in the lines and the
// board: "<flow>[<first 8 characters of the run id>]/<task>".
func childTask(ev engine.Progress) string {
	id := ev.RunID
	if len(id) > 8 {
		id = id[:8]
	}
	return ev.FlowName + "[" + id + "]/" + ev.Task
}

// line writes the line of ev (none for some) to w.
func (p *progress) line(w io.Writer, ev engine.Progress) {
	if ev.Kind == engine.ProgressTaskLog {
		if !p.quiet {
			io.WriteString(w, taskLine(ev.Task, ev.Stream, ev.Level, ev.Text))
		}
		return
	}
	if p.cute {
		cuteLine(w, ev)
	} else {
		plainLine(w, ev)
	}
}

func cuteLine(w io.Writer, ev engine.Progress) {
	switch ev.Kind {
	case engine.ProgressRunStarted:
		fmt.Fprintf(w, "🐇 %s started  run %s  trace %s\n", ev.FlowName, ev.RunID, ev.TraceID)
	case engine.ProgressTaskStarted:
		if ev.Attempt > 1 {
			fmt.Fprintf(w, "🏃 %s (attempt %d)\n", ev.Task, ev.Attempt)
		} else {
			fmt.Fprintf(w, "🏃 %s\n", ev.Task)
		}
	case engine.ProgressTaskRetrying:
		fmt.Fprintf(w, "💥 %s: %s (attempt %d), %s\n", ev.Task, firstLine(ev.Error), ev.Attempt, retryIn(ev.RetryIn))
	case engine.ProgressTaskFinished:
		switch engine.TaskStatus(ev.Status) {
		case engine.TaskSucceeded:
			fmt.Fprintf(w, "✅ %s (%s)\n", ev.Task, fmtTaskDur(ev.Duration))
		case engine.TaskFailed:
			fmt.Fprintf(w, "💥 %s: %s\n", ev.Task, firstLine(ev.Error))
		case engine.TaskSkipped:
			fmt.Fprintf(w, "⏭️  %s skipped (%s)\n", ev.Task, firstLine(ev.Error))
		case engine.TaskCancelled:
			fmt.Fprintf(w, "🚫 %s cancelled\n", ev.Task)
		}
	case engine.ProgressRunCancelling:
		fmt.Fprintf(w, "🛑 cancelling %s (Ctrl+C again to force)\n", ev.FlowName)
	case engine.ProgressRunFinished:
		switch engine.RunStatus(ev.Status) {
		case engine.RunCompleted:
			fmt.Fprintf(w, "🥕 %s COMPLETED in %s\n", ev.FlowName, fmtDur(ev.Duration))
		case engine.RunFailed:
			fmt.Fprintf(w, "💥 %s FAILED in %s: %s\n", ev.FlowName, fmtDur(ev.Duration), firstLine(ev.Error))
		default:
			fmt.Fprintf(w, "🚫 %s %s in %s\n", ev.FlowName, ev.Status, fmtDur(ev.Duration))
		}
	}
}

func plainLine(w io.Writer, ev engine.Progress) {
	switch ev.Kind {
	case engine.ProgressRunStarted:
		fmt.Fprintf(w, "run started flow=%s run_id=%s trace_id=%s\n", ev.FlowName, ev.RunID, ev.TraceID)
	case engine.ProgressTaskStarted:
		if ev.Attempt == 0 {
			// A foreach task: its iterations have the attempts.
			fmt.Fprintf(w, "task started task=%s\n", ev.Task)
			return
		}
		fmt.Fprintf(w, "task started task=%s attempt=%d\n", ev.Task, ev.Attempt)
	case engine.ProgressTaskRetrying:
		line := fmt.Sprintf("task retrying task=%s attempt=%d error=%s", ev.Task, ev.Attempt, quoteIfNeeded(firstLine(ev.Error)))
		if ev.RetryIn >= 0 {
			line += " retry_in=" + fmtDur(ev.RetryIn)
		}
		fmt.Fprintln(w, line)
	case engine.ProgressTaskFinished:
		line := fmt.Sprintf("task %s task=%s", ev.Status, ev.Task)
		if ev.Attempt > 0 {
			line += fmt.Sprintf(" attempt=%d duration=%s", ev.Attempt, fmtTaskDur(ev.Duration))
		}
		if ev.Error != "" {
			line += " error=" + quoteIfNeeded(firstLine(ev.Error))
		}
		fmt.Fprintln(w, line)
	case engine.ProgressRunCancelling:
		fmt.Fprintf(w, "run CANCELLING flow=%s run_id=%s\n", ev.FlowName, ev.RunID)
	case engine.ProgressRunFinished:
		line := fmt.Sprintf("run %s flow=%s duration=%s", ev.Status, ev.FlowName, fmtDur(ev.Duration))
		if ev.Error != "" {
			line += " error=" + quoteIfNeeded(firstLine(ev.Error))
		}
		fmt.Fprintln(w, line)
	}
}

// taskLine is one thing a task said, prefixed by the task: "[task] text"
// for stdout and info logs, "[task] stderr: text" for stderr,
// "[task] WARN: text" for logs at other levels.
// A text of several lines gets the prefix on each.
func taskLine(task, stream, level, text string) string {
	prefix := "[" + task + "] "
	switch {
	case stream == engine.StreamStderr:
		prefix += "stderr: "
	case stream == engine.StreamLog && level != "" && level != "INFO":
		prefix += level + ": "
	}
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		b.WriteString(prefix + l + "\n")
	}
	return b.String()
}

// summary prints the final table of tasks and the trace id.
func (p *progress) summary(run *engine.Run, order []string) {
	p.close()
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintln(p.w)
	tw := tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TASK\tSTATE\tATTEMPTS\tDURATION\tERROR")
	order = engine.TaskRows(run.Tasks, order)
	for _, name := range order {
		t := run.Tasks[name]
		if t == nil {
			continue
		}
		dur := "-"
		if !t.StartedAt.IsZero() && !t.EndedAt.IsZero() {
			dur = fmtTaskDur(t.Duration())
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", name, t.Status, len(t.Attempts), dur, firstLine(t.Error))
	}
	tw.Flush()
	// Errors longer than the table shows (a shell task's stderr tail), whole.
	for _, name := range order {
		t := run.Tasks[name]
		if t == nil || !strings.Contains(t.Error, "\n") {
			continue
		}
		fmt.Fprintf(p.w, "\n%s %s:\n", name, t.Status)
		for _, l := range strings.Split(t.Error, "\n") {
			fmt.Fprintf(p.w, "  %s\n", l)
		}
	}
	fmt.Fprintf(p.w, "\nrun %s %s  trace_id %s\n", run.ID, run.Status, run.TraceID)
}
