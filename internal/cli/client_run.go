package cli

import (
	"context"
	"errors"
	"net/url"
	"sync"
	"time"

	"github.com/pyoco/pyoco/engine"
)

// runRemote is `pyoco run FLOW --server URL`: it submits the flow (a file's
// text, or a flow name) and follows the run like a local run, with
// progress lines from the run's task states and its log lines from the log
// stream. Ctrl+C cancels the remote run and waits for it to end.
func runRemote(ctx context.Context, e *env, server, arg string, params map[string]any, o outputOpts) error {
	asJSON := o.asJSON
	cl, err := newAPIClient(server, e.getenv("PYOCO_API_TOKEN"))
	if err != nil {
		return err
	}
	bg := context.WithoutCancel(ctx)
	ans, err := submitRun(bg, cl, arg, params, nil, "")
	if err != nil {
		return err
	}
	out := e.stdout
	if asJSON {
		out = e.stderr
	}
	pr := &progress{w: out, cute: e.cuteOutput(o.plain, out), quiet: o.quiet}

	// Log lines, as they come.
	logCtx, stopLogs := context.WithCancel(bg)
	defer stopLogs()
	var wg sync.WaitGroup
	wg.Go(func() {
		_, _ = cl.followLogs(logCtx, ans.RunID, url.Values{}, func(_ []byte, le logEntry) {
			pr.observe(engine.Progress{Kind: engine.ProgressTaskLog, Task: le.Task, Stream: le.Stream, Level: le.Level, Text: le.Text})
		})
	})

	tr := &remoteTracker{pr: pr, runID: ans.RunID, traceID: ans.TraceID, tasks: map[string]engine.TaskStatus{}}
	cancelled := false
	var final *engine.RunDoc
	var raw []byte
	for final == nil {
		waitCtx := ctx
		if cancelled {
			waitCtx = bg
		}
		doc, r, err := cl.waitRun(waitCtx, ans.RunID, pollEvery, tr.observe)
		switch {
		case err == nil:
			final, raw = doc, r
		case !cancelled && ctx.Err() != nil:
			cancelled = true
			if _, cerr := cl.call(bg, "POST", "/runs/"+url.PathEscape(ans.RunID)+"/cancel", nil, nil); cerr != nil {
				var ee *exitError
				if !errors.As(cerr, &ee) {
					return cerr
				}
				// 409: it finished meanwhile; the next poll sees it.
			}
		default:
			return err
		}
	}
	// Let the log stream deliver its last entries (it ends by itself).
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		stopLogs()
		<-done
	}
	pr.summary(docRun(final), taskOrder(final.Tasks))
	if asJSON {
		if _, err := e.stdout.Write(append(raw, '\n')); err != nil {
			return err
		}
	}
	return exitForStatus(final.Status)
}

// remoteTracker turns successive Run documents into progress lines.
type remoteTracker struct {
	pr         *progress
	runID      string
	traceID    string
	started    bool
	cancelling bool
	tasks      map[string]engine.TaskStatus
}

func (t *remoteTracker) observe(doc *engine.RunDoc) {
	base := engine.Progress{RunID: t.runID, FlowName: doc.FlowName, TraceID: t.traceID}
	if !t.started && (doc.Status != engine.RunPending) {
		t.started = true
		p := base
		p.Kind = engine.ProgressRunStarted
		t.pr.observe(p)
	}
	for _, name := range taskOrder(doc.Tasks) {
		td := doc.Tasks[name]
		prev := t.tasks[name]
		if td.State == prev {
			continue
		}
		t.tasks[name] = td.State
		p := base
		p.Task, p.Attempt, p.Status = name, td.Attempts, string(td.State)
		if td.Error != nil {
			p.Error = *td.Error
		}
		if td.DurationMS != nil {
			p.Duration = time.Duration(*td.DurationMS) * time.Millisecond
		}
		switch {
		case td.State == engine.TaskRunning:
			p.Kind = engine.ProgressTaskStarted
			p.Attempt = max(td.Attempts, 1)
		case td.State.Terminal():
			p.Kind = engine.ProgressTaskFinished
		default:
			continue
		}
		t.pr.observe(p)
	}
	if doc.Status == engine.RunCancelling && !t.cancelling {
		t.cancelling = true
		p := base
		p.Kind = engine.ProgressRunCancelling
		t.pr.observe(p)
	}
	if doc.Status.Terminal() {
		p := base
		p.Kind, p.Status = engine.ProgressRunFinished, string(doc.Status)
		if doc.Error != nil {
			p.Error = *doc.Error
		}
		if doc.RunDurationMS != nil {
			p.Duration = time.Duration(*doc.RunDurationMS) * time.Millisecond
		}
		t.pr.observe(p)
	}
}

// docRun rebuilds enough of a Run from its document for the summary table.
func docRun(d *engine.RunDoc) *engine.Run {
	r := &engine.Run{ID: d.RunID, FlowName: d.FlowName, Status: d.Status, TraceID: d.TraceID, Tasks: map[string]*engine.TaskState{}}
	for name, td := range d.Tasks {
		ts := &engine.TaskState{Name: name, Use: td.Use, Status: td.State, StartedAt: time.Time(td.StartedAt),
			EndedAt: time.Time(td.EndedAt), Attempts: make([]engine.Attempt, td.Attempts)}
		if td.Error != nil {
			ts.Error = *td.Error
		}
		r.Tasks[name] = ts
	}
	return r
}
