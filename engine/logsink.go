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

	"go.opentelemetry.io/otel/attribute"
	otellog "go.opentelemetry.io/otel/log"
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
	maxEntries int64 // entries one run stores, the marker included
	maxBytes   int
	now        func() time.Time
	onErr      func(error)
	// onEntry, if set, sees each entry as stored (caps applied), for live
	// display ([ProgressTaskLog]).
	onEntry func(LogEntry)
	// traceID fills entries written outside a recording span (tracing
	// off): the run's trace id is known even then.
	traceID string
	// otel, if set, also receives each stored entry as a log record;
	// flow names the run's flow in its attributes.
	otel otellog.Logger
	flow string

	n atomic.Int64 // entries of the run so far (earlier executions included)
}

// setCap sets the run's entry cap (-1: none) and the number of entries it
// already has from earlier executions: the cap is per run.
func (s *logSink) setCap(maxEntries, stored int64) {
	if maxEntries < 0 {
		maxEntries = 1<<63 - 1
	}
	s.maxEntries = maxEntries
	s.n.Store(stored)
}

func (s *logSink) write(ctx context.Context, e LogEntry) {
	n := s.n.Add(1)
	switch {
	case n > s.maxEntries:
		return
	case n == s.maxEntries:
		// The last slot holds the marker.
		e.Text = LogTruncatedMarker
		e.Stream = StreamLog
		e.Level = "WARN"
	}
	if len(e.Text) > s.maxBytes {
		e.Text = cutUTF8(e.Text, s.maxBytes) + " " + LogTruncatedMarker
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
	if s.onEntry != nil {
		s.onEntry(entries[0])
	}
	if s.otel != nil {
		s.emit(ctx, &entries[0])
	}
}

// emit sends e as an OpenTelemetry log record: body the text, severity
// from the level, in the context of the attempt's span (so the SDK sets
// the record's trace and span ids from it), with the run, flow, task,
// stream and seq as attributes.
func (s *logSink) emit(ctx context.Context, e *LogEntry) {
	sc := trace.SpanContextFromContext(ctx)
	if sid, err := trace.SpanIDFromHex(e.SpanID); err == nil && sid != sc.SpanID() {
		tid, _ := trace.TraceIDFromHex(e.TraceID)
		sc = trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: sc.TraceFlags()})
	}
	var r otellog.Record
	r.SetTimestamp(e.Timestamp)
	r.SetObservedTimestamp(s.now())
	r.SetBody(attribute.StringValue(e.Text))
	r.SetSeverity(logSeverity(e.Level))
	r.SetSeverityText(e.Level)
	r.AddAttributes(
		AttrRunID.String(s.runID),
		AttrFlowName.String(s.flow),
		AttrTaskName.String(e.Task),
		AttrLogStream.String(e.Stream),
		AttrLogSeq.Int64(e.Seq),
	)
	s.otel.Emit(trace.ContextWithSpanContext(context.WithoutCancel(ctx), sc), r)
}

// Attribute keys of task log records (besides pyoco.run.id,
// pyoco.flow.name and pyoco.task.name).
const (
	AttrLogStream = attribute.Key("pyoco.log.stream") // stdout, stderr or log
	AttrLogSeq    = attribute.Key("pyoco.log.seq")    // the entry's seq in the run's logs
)

// logSeverity maps a log entry's level (slog's names: DEBUG, INFO, WARN,
// ERROR, with offsets such as "INFO+2") to an OpenTelemetry severity.
func logSeverity(level string) otellog.Severity {
	switch {
	case strings.HasPrefix(level, "DEBUG"):
		return otellog.SeverityDebug
	case strings.HasPrefix(level, "INFO"):
		return otellog.SeverityInfo
	case strings.HasPrefix(level, "WARN"):
		return otellog.SeverityWarn
	case strings.HasPrefix(level, "ERROR"):
		return otellog.SeverityError
	}
	return otellog.SeverityUndefined
}

// cutUTF8 returns the longest prefix of s of at most n bytes that does not
// split a rune (a rune longer than n is cut anyway).
func cutUTF8[T string | []byte](s T, n int) T {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	if cut == 0 {
		cut = n
	}
	return s[:cut]
}

// attemptGate lets an attempt's writers (its logger, stdout, stderr) write
// until the attempt is abandoned; after close returns nothing more is written.
type attemptGate struct {
	mu     sync.RWMutex
	closed bool
}

// enter reports whether writing is allowed; if so the caller must call leave.
func (g *attemptGate) enter() bool {
	if g == nil {
		return true
	}
	g.mu.RLock()
	if g.closed {
		g.mu.RUnlock()
		return false
	}
	return true
}

func (g *attemptGate) leave() {
	if g != nil {
		g.mu.RUnlock()
	}
}

// close waits for writes in progress and refuses the later ones.
func (g *attemptGate) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// taskLogHandler is the slog.Handler behind TaskContext.Logger: records go
// into the run's logs with stream "log".
type taskLogHandler struct {
	sink   *logSink
	gate   *attemptGate
	task   string
	sc     trace.SpanContext
	attrs  []slog.Attr
	groups []string
}

func (h *taskLogHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *taskLogHandler) Handle(ctx context.Context, r slog.Record) error {
	if !h.gate.enter() {
		return nil
	}
	defer h.gate.leave()
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
	gate   *attemptGate
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
	// A very long line without newline is cut into entries (never inside
	// a rune) rather than buffered without bound.
	for len(w.buf) > w.sink.maxBytes {
		chunk := cutUTF8(w.buf, w.sink.maxBytes)
		w.emit(chunk)
		w.buf = w.buf[len(chunk):]
	}
	if len(w.buf) == 0 {
		w.buf = nil
	}
	return len(p), nil
}

func (w *lineWriter) emit(line []byte) {
	if !w.gate.enter() {
		return
	}
	defer w.gate.leave()
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
