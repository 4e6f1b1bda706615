package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/pyoco/pyoco/api/apidoc"
	"github.com/pyoco/pyoco/engine"
)

// logEntryDoc is a LogEntry as the API writes it (SPEC §4).
type logEntryDoc struct {
	Seq       int64            `json:"seq"`
	Task      string           `json:"task"`
	Stream    string           `json:"stream"`
	Level     string           `json:"level"`
	Text      string           `json:"text"`
	Timestamp apidoc.Timestamp `json:"timestamp"`
	TraceID   string           `json:"trace_id"`
	SpanID    string           `json:"span_id"`
}

func newLogEntryDoc(e engine.LogEntry) logEntryDoc {
	return logEntryDoc{Seq: e.Seq, Task: e.Task, Stream: e.Stream, Level: e.Level, Text: e.Text,
		Timestamp: apidoc.Timestamp(e.Timestamp), TraceID: e.TraceID, SpanID: e.SpanID}
}

// logsDoc answers GET /runs/{run_id}/logs.
type logsDoc struct {
	RunID     string           `json:"run_id"`
	RunStatus engine.RunStatus `json:"run_status"`
	Logs      []logEntryDoc    `json:"logs"`
	NextAfter int64            `json:"next_after"`
}

// sseEndDoc is the data of the final "end" event of a followed log stream.
type sseEndDoc struct {
	RunID     string           `json:"run_id"`
	RunStatus engine.RunStatus `json:"run_status"`
	NextAfter int64            `json:"next_after"`
}

func (s *Server) runLogs(w http.ResponseWriter, r *http.Request) error {
	lq, err := parseLogsQuery(r.URL.Query())
	if err != nil {
		return err
	}
	resuming := false
	if lq.follow {
		if v := r.Header.Get("Last-Event-ID"); v != "" {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil || n < 0 {
				return errBadParam("Last-Event-ID", "want the seq of the last event received, got %q", clip(v))
			}
			lq.after = max(lq.after, n)
			lq.tail = 0 // resuming: everything after the last event, not a tail
			resuming = true
		}
	}
	ctx := r.Context()
	run, err := s.getRun(ctx, r.PathValue("run_id"))
	if err != nil {
		return err
	}
	// The run's status is read before its entries: a terminal status means
	// every entry is in the store by now.
	entries, err := s.store.LogList(ctx, &engine.LogListParams{RunID: run.ID, Task: lq.task, After: lq.after, Tail: lq.tail, Limit: lq.limit})
	if err != nil {
		return err
	}
	if !lq.follow {
		writeLogsPage(w, run, lq.after, entries)
		return nil
	}
	if resuming && run.Status.Terminal() && len(entries) == 0 {
		// A reconnect after the stream's end (EventSource reconnects by
		// itself): nothing more will come, and 204 stops the reconnects.
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return s.followLogs(w, r, run, lq, entries)
}

// writeLogsPage answers GET /runs/{run_id}/logs with one page of entries,
// encoding them one at a time (a page may be tens of megabytes of JSON).
// The members are those of logsDoc, in its order.
func writeLogsPage(w http.ResponseWriter, run *engine.Run, after int64, entries []engine.LogEntry) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 32<<10)
	id, _ := json.Marshal(run.ID)
	st, _ := json.Marshal(run.Status)
	fmt.Fprintf(bw, `{"run_id":%s,"run_status":%s,"logs":[`, id, st)
	for i, e := range entries {
		if i > 0 {
			_ = bw.WriteByte(',')
		}
		b, _ := json.Marshal(newLogEntryDoc(e)) // strings, numbers and a Timestamp: cannot fail
		_, _ = bw.Write(b)
		after = e.Seq
	}
	fmt.Fprintf(bw, "],\"next_after\":%d}\n", after)
	_ = bw.Flush()
}

// followLogs streams a run's log entries as Server-Sent Events: one event
// per entry ("id: <seq>", "data: <LogEntry>"), a comment as heartbeat, and a
// final "event: end" (its id the last seq, so that a reconnect is answered
// 204) once the run is terminal and every entry was sent. Entries are read
// lq.limit at a time: a full page is followed by the next one at once. It
// returns when the run ends, the client goes away or the server shuts down.
func (s *Server) followLogs(w http.ResponseWriter, r *http.Request, run *engine.Run, lq *logsQuery, first []engine.LogEntry) error {
	ctx := r.Context()
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // a stream outlives the server's WriteTimeout
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriter(w)
	flush := func() error {
		if err := bw.Flush(); err != nil {
			return err
		}
		return rc.Flush()
	}
	// Advise clients to reconnect soon after a cut.
	fmt.Fprintf(bw, "retry: 1000\n\n")
	after := lq.after
	send := func(entries []engine.LogEntry) error {
		for _, e := range entries {
			b, err := json.Marshal(newLogEntryDoc(e))
			if err != nil {
				return err
			}
			fmt.Fprintf(bw, "id: %d\ndata: %s\n\n", e.Seq, b)
			after = e.Seq
		}
		return flush()
	}
	status := run.Status
	entries := first
	poll := time.NewTicker(s.cfg.LogPollInterval)
	defer poll.Stop()
	beat := time.NewTicker(s.cfg.HeartbeatInterval)
	defer beat.Stop()
	for {
		if err := send(entries); err != nil {
			return err
		}
		full := len(entries) >= lq.limit
		// status was read before entries were listed, so a terminal status
		// and a page that is not full mean every entry of the run was sent.
		if status.Terminal() && !full {
			b, _ := json.Marshal(sseEndDoc{RunID: run.ID, RunStatus: status, NextAfter: after})
			fmt.Fprintf(bw, "id: %d\nevent: end\ndata: %s\n\n", after, b)
			_ = flush()
			return nil
		}
		entries = nil
		if !full {
			select {
			case <-ctx.Done():
				return nil
			case <-beat.C:
				fmt.Fprintf(bw, ": keep-alive\n\n")
				if err := flush(); err != nil {
					return nil
				}
				continue
			case <-poll.C:
			}
		} else if ctx.Err() != nil {
			return nil
		}
		if !status.Terminal() {
			cur, err := s.store.RunGet(ctx, run.ID)
			if err != nil {
				return s.sseError(bw, flush, err)
			}
			status = cur.Status
		}
		var err error
		entries, err = s.store.LogList(ctx, &engine.LogListParams{RunID: run.ID, Task: lq.task, After: after, Limit: lq.limit})
		if err != nil {
			return s.sseError(bw, flush, err)
		}
	}
}

// sseError ends a stream with an "error" event carrying the JSON error; the
// client may reconnect with Last-Event-ID.
func (s *Server) sseError(bw *bufio.Writer, flush func() error, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	status, doc := errorAnswer(err)
	if status >= 500 {
		s.log.Warn("api log stream ended by an error", engine.LogKeyError, err)
	}
	b, _ := json.Marshal(ErrorBody{Error: doc})
	fmt.Fprintf(bw, "event: error\ndata: %s\n\n", b)
	_ = flush()
	return nil
}
