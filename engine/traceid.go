package engine

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"

	"go.opentelemetry.io/otel/trace"
)

type traceIDKey struct{}

// ContextWithTraceID returns a context in which a root span started through a
// tracer provider using [IDGenerator] gets traceID. The scheduler uses it so
// that every attempt of a run, on any worker, belongs to the trace fixed when
// the run was created.
func ContextWithTraceID(ctx context.Context, traceID trace.TraceID) context.Context {
	return context.WithValue(ctx, traceIDKey{}, traceID)
}

type spanIDKey struct{}

// wantedSpanID is the value of a context from [ContextWithSpanID].
type wantedSpanID struct {
	id trace.SpanID
	// parent is the span context current when the id was asked for: only
	// a span started directly in that context takes the id, not its
	// children (whose contexts carry the value too).
	parent trace.SpanContext
}

// ContextWithSpanID returns a context in which the next span started
// through a tracer provider using [IDGenerator] gets spanID: the span whose
// id was fixed in advance (a run's span, fixed when the run was created, or
// the span of an attempt a lost worker never ended). Spans started in the
// new span's context get random ids as usual.
func ContextWithSpanID(ctx context.Context, spanID trace.SpanID) context.Context {
	return context.WithValue(ctx, spanIDKey{}, wantedSpanID{id: spanID, parent: trace.SpanContextFromContext(ctx)})
}

// spanIDFrom returns the span id ctx asks for, or a random one.
func spanIDFrom(ctx context.Context) trace.SpanID {
	if w, ok := ctx.Value(spanIDKey{}).(wantedSpanID); ok && w.id.IsValid() && w.parent.Equal(trace.SpanContextFromContext(ctx)) {
		return w.id
	}
	return newSpanID()
}

// IDGenerator makes span and trace ids at random, except that a root span
// started in a context from [ContextWithTraceID] takes that trace id, and a
// span started in a context from [ContextWithSpanID] takes that span id. It
// satisfies go.opentelemetry.io/otel/sdk/trace.IDGenerator; the telemetry
// package installs it, and a tracer provider given to the engine should use
// it: without it a run's span cannot be emitted under the id its task spans
// point to, and each execution of a run makes a span of its own. It is safe
// for concurrent use.
type IDGenerator struct{}

// NewIDs returns the trace id wanted by ctx (or a random one) and the span
// id wanted by ctx (or a random one).
func (IDGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	tid, ok := ctx.Value(traceIDKey{}).(trace.TraceID)
	if !ok || !tid.IsValid() {
		tid = NewTraceID()
	}
	return tid, spanIDFrom(ctx)
}

// NewSpanID returns the span id wanted by ctx, or a random one.
func (IDGenerator) NewSpanID(ctx context.Context, _ trace.TraceID) trace.SpanID {
	return spanIDFrom(ctx)
}

// NewSpanID returns a random, valid span id.
func NewSpanID() trace.SpanID { return newSpanID() }

// NewTraceID returns a random, valid trace id.
func NewTraceID() trace.TraceID {
	var t trace.TraceID
	for !t.IsValid() {
		_, _ = crand.Read(t[:])
	}
	return t
}

func newSpanID() trace.SpanID {
	var s trace.SpanID
	for !s.IsValid() {
		_, _ = crand.Read(s[:])
	}
	return s
}

// ParseTraceParent parses a W3C traceparent header value
// ("00-<trace id>-<span id>-<flags>"). ok is false for anything malformed.
func ParseTraceParent(s string) (sc trace.SpanContext, ok bool) {
	if len(s) != 55 || s[2] != '-' || s[35] != '-' || s[52] != '-' || s[:2] == "ff" {
		return sc, false
	}
	if _, err := hex.DecodeString(s[:2]); err != nil {
		return sc, false
	}
	tid, err := trace.TraceIDFromHex(s[3:35])
	if err != nil {
		return sc, false
	}
	sid, err := trace.SpanIDFromHex(s[36:52])
	if err != nil {
		return sc, false
	}
	fb, err := hex.DecodeString(s[53:55])
	if err != nil {
		return sc, false
	}
	return trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: tid, SpanID: sid, TraceFlags: trace.TraceFlags(fb[0]) & trace.FlagsSampled, Remote: true,
	}), true
}

// FormatTraceParent formats sc as a W3C traceparent header value, or "" if
// sc is invalid.
func FormatTraceParent(sc trace.SpanContext) string {
	if !sc.IsValid() {
		return ""
	}
	return "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-" + sc.TraceFlags().String()
}
