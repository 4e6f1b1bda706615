package engine

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/trace"
)

// LogTruncatedMarker ends a log entry that was cut, and is the text of the
// last entry a run stores once it reaches its entry cap.
const LogTruncatedMarker = "[log truncated]"

// logSink writes one execution's log entries into the store, enforcing the
// per-entry and per-run caps. It is safe for concurrent use.
type logSink struct {
	store      LogStore
	runID      string
	maxEntries int64
	maxBytes   int
	now        func() time.Time
	onErr      func(error)
	// traceID fills entries written outside a recording span (tracing
	// off): the run's trace id is known even then.
	traceID string

	n         atomic.Int64 // entries accepted so far
	truncated atomic.Bool
}

func (s *logSink) write(ctx context.Context, e LogEntry) {
	n := s.n.Add(1)
	if n > s.maxEntries {
		if s.truncated.CompareAndSwap(false, true) {
			e.Text = LogTruncatedMarker
			e.Stream = StreamLog
			e.Level = "WARN"
		} else {
			return
		}
	}
	if len(e.Text) > s.maxBytes {
		cut := s.maxBytes
		for cut > 0 && !utf8.RuneStart(e.Text[cut]) {
			cut--
		}
		e.Text = e.Text[:cut] + " " + LogTruncatedMarker
	}
	if e.Timestamp.IsZero() {
		e.Timestamp = s.now()
	}
	if e.TraceID == "" {
		e.TraceID = s.traceID
	}
	entries := []LogEntry{e}
	if err := s.store.LogAppend(context.WithoutCancel(ctx), s.runID, entries); err != nil && s.onErr != nil {
		s.onErr(err)
	}
}

// taskLogHandler is the slog.Handler behind TaskContext.Logger: records go
// into the run's logs with stream "log".
type taskLogHandler struct {
	sink   *logSink
	task   string
	sc     trace.SpanContext
	attrs  []slog.Attr
	groups []string
}

func (h *taskLogHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *taskLogHandler) Handle(ctx context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	prefix := strings.Join(h.groups, ".")
	write := func(a slog.Attr) {
		a.Value = a.Value.Resolve()
		if a.Equal(slog.Attr{}) {
			return
		}
		b.WriteByte(' ')
		if prefix != "" {
			b.WriteString(prefix + ".")
		}
		b.WriteString(a.Key)
		b.WriteByte('=')
		v := a.Value.String()
		if strings.ContainsAny(v, " \t\n\"=") {
			v = fmt.Sprintf("%q", v)
		}
		b.WriteString(v)
	}
	for _, a := range h.attrs {
		write(a)
	}
	r.Attrs(func(a slog.Attr) bool { write(a); return true })
	sc := h.sc
	if s := trace.SpanContextFromContext(ctx); s.IsValid() {
		sc = s
	}
	ts := r.Time
	if ts.IsZero() {
		ts = h.sink.now()
	}
	h.sink.write(ctx, LogEntry{
		Task: h.task, Stream: StreamLog, Level: r.Level.String(), Text: b.String(),
		Timestamp: ts.UTC(), TraceID: traceIDString(sc), SpanID: spanIDString(sc),
	})
	return nil
}

func (h *taskLogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), attrs...)
	return &c
}

func (h *taskLogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.groups = append(append([]string(nil), h.groups...), name)
	return &c
}

// lineWriter turns raw output into one log entry per line. Flush writes a
// final partial line. It is safe for concurrent use.
type lineWriter struct {
	ctx    context.Context
	sink   *logSink
	task   string
	stream string
	level  string
	sc     trace.SpanContext

	mu  sync.Mutex
	buf []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.emit(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	// A very long line without newline is cut into entries rather than
	// buffered without bound.
	for len(w.buf) >= w.sink.maxBytes {
		w.emit(w.buf[:w.sink.maxBytes])
		w.buf = w.buf[w.sink.maxBytes:]
	}
	if len(w.buf) == 0 {
		w.buf = nil
	}
	return len(p), nil
}

func (w *lineWriter) emit(line []byte) {
	line = bytes.TrimSuffix(line, []byte{'\r'})
	w.sink.write(w.ctx, LogEntry{
		Task: w.task, Stream: w.stream, Level: w.level, Text: strings.ToValidUTF8(string(line), "\uFFFD"),
		TraceID: traceIDString(w.sc), SpanID: spanIDString(w.sc),
	})
}

// Flush writes what is left of an unfinished line.
func (w *lineWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(w.buf)
		w.buf = nil
	}
}

func traceIDString(sc trace.SpanContext) string {
	if !sc.TraceID().IsValid() {
		return ""
	}
	return sc.TraceID().String()
}

func spanIDString(sc trace.SpanContext) string {
	if !sc.SpanID().IsValid() {
		return ""
	}
	return sc.SpanID().String()
}
