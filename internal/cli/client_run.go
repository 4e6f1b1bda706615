package cli

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/pyoco/pyoco/api/apidoc"
	"github.com/pyoco/pyoco/engine"
)

// runRemote is `pyoco run FLOW --server URL`: it submits the flow (a file's
// text, or a flow name) and follows the run like a local run (the same
// lines, and the live board on a terminal): task starts, retries and ends
// from the run's attempt log, polled, and its log lines from the log stream
// (SSE), put in order by remoteTracker. Ctrl+C cancels the remote run and
// waits for it to end.
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
	doc, _, err := cl.runDoc(bg, ans.RunID)
	if err != nil {
		return err
	}
	pr := e.newProgress(o, out, len(doc.Tasks))
	defer pr.close()
	tr := &remoteTracker{pr: pr, cl: cl, runID: ans.RunID, traceID: ans.TraceID, tasks: map[string]*remoteTask{}}
	tr.observe(doc)

	// Log lines, as they come.
	logCtx, stopLogs := context.WithCancel(bg)
	defer stopLogs()
	var wg sync.WaitGroup
	wg.Go(func() {
		_, _ = cl.followLogs(logCtx, ans.RunID, url.Values{}, func(_ []byte, le logEntry) { tr.log(logCtx, le) })
	})

	cancelled := false
	var final *apidoc.RunDoc
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
	tr.flush()
	pr.summary(docRun(final), taskOrder(final.Tasks))
	if asJSON {
		if _, err := e.stdout.Write(append(raw, '\n')); err != nil {
			return err
		}
	}
	return exitForStatus(final.Status)
}

// remoteTracker turns successive Run documents and log entries into the
// progress reports of a local run, in the order they happened. It is safe
// for concurrent use (the poller and the log stream both feed it).
//
// The reports read from a document (an attempt's start, its end with a
// retry to come, a task's end, the run's end) are held, in the order of
// their times, until no log entry written before them can still come: the
// stream has delivered every entry the server had when the document was
// read (entries are stored as they are written, before the task's state
// changes), or an entry written after them. A log entry of an attempt not
// reported yet first reads the run's document again, so that "run started"
// and the attempt's "started" come before it.
type remoteTracker struct {
	mu         sync.Mutex
	pr         *progress
	cl         *apiClient
	runID      string
	traceID    string
	flow       string
	started    bool
	cancelling bool
	finished   bool
	tasks      map[string]*remoteTask
	// seq is the last log entry shown; queue holds the reports waiting
	// for the log stream, by time.
	seq   int64
	queue []heldReport
}

// remoteTask is what has been reported of one task.
type remoteTask struct {
	starts, ends int // attempts reported started; ended with another to come
	finished     bool
	spans        map[string]int // attempt span id → attempt number
}

// heldReport is a report shown once the log stream has reached seq (or an
// entry written after p.Time).
type heldReport struct {
	seq int64
	p   engine.Progress
}

func (t *remoteTracker) observe(doc *apidoc.RunDoc) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.observeLocked(context.Background(), doc)
}

// log shows one entry of the stream, after the reports that came before it.
func (t *remoteTracker) log(ctx context.Context, le logEntry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	rt := t.tasks[le.Task]
	if !t.started || rt == nil || (rt.starts == rt.ends && !rt.finished) || (le.SpanID != "" && rt.spans[le.SpanID] == 0) {
		// The run's document is behind the stream: read it again.
		if doc, _, err := t.cl.runDoc(ctx, t.runID); err == nil {
			t.observeLocked(ctx, doc)
		}
	}
	if !t.started {
		t.started = true
		t.pr.observe(t.fill(engine.Progress{Kind: engine.ProgressRunStarted, Time: time.Time(le.Timestamp)}))
	}
	rt = t.task(le.Task)
	// What happened before the entry's millisecond (its timestamps have
	// milliseconds) came before it, and so did its own attempt's start.
	at := time.Time(le.Timestamp)
	var start time.Time
	k := rt.spans[le.SpanID]
	for _, h := range t.queue {
		if h.p.Kind == engine.ProgressTaskStarted && h.p.Task == le.Task && h.p.Attempt == k {
			start = h.p.Time
		}
	}
	n := 0
	for _, h := range t.queue {
		before := h.p.Kind != engine.ProgressRunFinished && (h.p.Time.Before(at) || (!start.IsZero() && !h.p.Time.After(start)))
		if h.seq >= le.Seq && !before {
			break
		}
		t.pr.observe(h.p)
		n++
	}
	t.queue = t.queue[n:]
	if k == 0 && !rt.finished && rt.starts == rt.ends {
		// The store has not shown this attempt yet (it writes task
		// changes in batches): a new attempt has begun.
		rt.starts++
		t.pr.observe(t.fill(engine.Progress{Kind: engine.ProgressTaskStarted, Task: le.Task, Attempt: rt.starts, Time: time.Time(le.Timestamp)}))
	}
	t.pr.observe(t.fill(engine.Progress{Kind: engine.ProgressTaskLog, Task: le.Task, Stream: le.Stream, Level: le.Level,
		Text: le.Text, Time: time.Time(le.Timestamp)}))
	t.seq = max(t.seq, le.Seq)
	t.release(false)
}

// flush shows every report still held (the log stream has ended).
func (t *remoteTracker) flush() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.release(true)
}

// release shows the held reports whose entries have all been shown (all of
// them with all).
func (t *remoteTracker) release(all bool) {
	n := 0
	for _, h := range t.queue {
		if !all && h.seq > t.seq {
			break
		}
		t.pr.observe(h.p)
		n++
	}
	t.queue = t.queue[n:]
}

func (t *remoteTracker) task(name string) *remoteTask {
	rt := t.tasks[name]
	if rt == nil {
		rt = &remoteTask{spans: map[string]int{}}
		t.tasks[name] = rt
	}
	return rt
}

func (t *remoteTracker) fill(p engine.Progress) engine.Progress {
	p.RunID, p.FlowName, p.TraceID = t.runID, t.flow, t.traceID
	return p
}

// hold queues p until the stream reaches seq, in the order of the times
// (a run's end last).
func (t *remoteTracker) hold(p engine.Progress, seq int64) {
	p = t.fill(p)
	i := len(t.queue)
	if p.Kind != engine.ProgressRunFinished {
		for i > 0 && (t.queue[i-1].p.Time.After(p.Time) || t.queue[i-1].p.Kind == engine.ProgressRunFinished) {
			i--
		}
	}
	t.queue = slices.Insert(t.queue, i, heldReport{seq: seq, p: p})
}

func (t *remoteTracker) observeLocked(ctx context.Context, doc *apidoc.RunDoc) {
	t.flow = doc.FlowName
	if t.finished {
		return
	}
	// serverSeq is the last log entry the server has now: every entry
	// written before what this document shows.
	serverSeq := t.seq
	var page struct {
		NextAfter int64 `json:"next_after"`
	}
	if _, err := t.cl.call(ctx, "GET", "/runs/"+url.PathEscape(t.runID)+"/logs?tail=1", nil, &page); err == nil {
		serverSeq = max(serverSeq, page.NextAfter)
	}
	if !t.started && doc.Status != engine.RunPending {
		t.started = true
		t.pr.observe(t.fill(engine.Progress{Kind: engine.ProgressRunStarted, Time: time.Time(doc.StartTime)}))
	}
	for _, name := range taskOrder(doc.Tasks) {
		td := doc.Tasks[name]
		rt := t.task(name)
		if rt.finished {
			continue
		}
		for i, a := range td.AttemptLog {
			if a.SpanID != "" {
				rt.spans[a.SpanID] = a.Number
			}
			if i >= rt.starts {
				rt.starts = i + 1
				t.hold(engine.Progress{Kind: engine.ProgressTaskStarted, Task: name, Attempt: a.Number, Time: a.StartedAt}, serverSeq)
			}
			last := i == len(td.AttemptLog)-1
			if !a.EndedAt.IsZero() && i >= rt.ends && (!last || !td.State.Terminal()) {
				// Ended, and another attempt follows (or will).
				rt.ends = i + 1
				t.hold(engine.Progress{Kind: engine.ProgressTaskRetrying, Task: name, Attempt: a.Number, Error: a.Error,
					RetryIn: -1, Time: a.EndedAt}, serverSeq)
			}
		}
		if td.State == engine.TaskRunning && len(td.AttemptLog) == 0 && rt.starts == 0 {
			// Running, and its attempt not in the document yet. (A task
			// whose last attempt has ended is waiting for its retry.)
			rt.starts++
			t.hold(engine.Progress{Kind: engine.ProgressTaskStarted, Task: name, Attempt: 1, Time: time.Time(td.StartedAt)}, serverSeq)
		}
		if td.State.Terminal() {
			rt.finished = true
			p := engine.Progress{Kind: engine.ProgressTaskFinished, Task: name, Attempt: td.Attempts, Status: string(td.State),
				Time: time.Time(td.EndedAt)}
			if td.Error != nil {
				p.Error = *td.Error
			}
			if td.DurationMS != nil {
				p.Duration = time.Duration(*td.DurationMS) * time.Millisecond
			}
			// The last attempt's end has nanoseconds; ended_at only
			// milliseconds (its latest possible time, then).
			if n := len(td.AttemptLog); n > 0 && !td.AttemptLog[n-1].EndedAt.IsZero() {
				p.Time = td.AttemptLog[n-1].EndedAt
			} else if !p.Time.IsZero() {
				p.Time = p.Time.Add(time.Millisecond - 1)
			}
			t.hold(p, serverSeq)
		}
	}
	if doc.Status == engine.RunCancelling && !t.cancelling {
		t.cancelling = true
		t.pr.observe(t.fill(engine.Progress{Kind: engine.ProgressRunCancelling}))
	}
	if doc.Status.Terminal() {
		t.finished = true
		p := engine.Progress{Kind: engine.ProgressRunFinished, Status: string(doc.Status), Time: time.Time(doc.EndTime)}
		if doc.Error != nil {
			p.Error = *doc.Error
		}
		if doc.RunDurationMS != nil {
			p.Duration = time.Duration(*doc.RunDurationMS) * time.Millisecond
		}
		t.hold(p, serverSeq)
	}
	t.release(false)
}

// docRun rebuilds enough of a Run from its document for the summary table.
func docRun(d *apidoc.RunDoc) *engine.Run {
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
