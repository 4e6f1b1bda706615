package engine

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// AttrLinkKind says why a task attempt's span links to another attempt's:
// [LinkRetry] (the previous attempt of the task failed) or [LinkTakeover]
// (the previous attempt was made by an earlier execution of the run, on a
// worker that stopped or was lost).
const AttrLinkKind = attribute.Key("pyoco.link.kind")

// Values of [AttrLinkKind].
const (
	LinkRetry    = "retry"
	LinkTakeover = "takeover"
)

// startRunSpan starts the "run <flow>" span of run in ctx's values (not its
// cancellation). When the run has a SpanID (fixed at submit) the span takes
// it and starts at the run's first start, so that every execution of the
// run, on any worker, makes task spans that are children of one run span;
// fixed reports whether the tracer provider honoured the id (it uses
// [IDGenerator]). A fixed span must be ended only by the execution that
// finishes the run, so that it is emitted once; one that is not fixed is
// this execution's own and is ended when it returns.
func (e *Engine) startRunSpan(ctx context.Context, run *Run, attrs ...attribute.KeyValue) (sctx context.Context, span trace.Span, fixed bool) {
	tid, _ := trace.TraceIDFromHex(run.TraceID)
	base := context.WithoutCancel(ctx)
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(attrs...)}
	if psid, err := trace.SpanIDFromHex(run.ParentSpanID); err == nil && tid.IsValid() {
		flags := trace.FlagsSampled
		if run.ParentUnsampled {
			flags = 0
		}
		base = trace.ContextWithRemoteSpanContext(base, trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: tid, SpanID: psid, TraceFlags: flags, Remote: true,
		}))
	} else {
		base = trace.ContextWithSpanContext(base, trace.SpanContext{})
		if tid.IsValid() {
			base = ContextWithTraceID(base, tid)
		}
		opts = append(opts, trace.WithNewRoot())
	}
	sid, err := trace.SpanIDFromHex(run.SpanID)
	if err != nil || !tid.IsValid() {
		sctx, span = e.tracer.Start(base, "run "+run.FlowName, opts...)
		return sctx, span, false
	}
	if !run.StartedAt.IsZero() {
		opts = append(opts, trace.WithTimestamp(run.StartedAt))
	}
	_, span = e.tracer.Start(ContextWithSpanID(base, sid), "run "+run.FlowName, opts...)
	// The span's context must not ask its children for sid.
	return trace.ContextWithSpan(base, span), span, span.SpanContext().SpanID() == sid
}

// emitInterruptedAttempt emits, on behalf of a worker that was lost, the
// span of attempt a of task st that it started and never ended: same span
// id (stored in the attempt), same start, ended at a.EndedAt with the error
// a lost worker's attempts get, as a child of parent (the run's span).
func (e *Engine) emitInterruptedAttempt(parent context.Context, run *Run, st *TaskState, a *Attempt) {
	sid, err := trace.SpanIDFromHex(a.SpanID)
	if err != nil || !trace.SpanContextFromContext(parent).IsValid() {
		return
	}
	end := a.EndedAt
	if end.IsZero() {
		end = time.Now().UTC()
	}
	_, span := e.tracer.Start(ContextWithSpanID(parent, sid), "task "+st.Name,
		trace.WithTimestamp(a.StartedAt),
		trace.WithAttributes(
			AttrRunID.String(run.ID), AttrFlowName.String(run.FlowName),
			AttrTaskName.String(st.Name), AttrTaskUse.String(st.Use), AttrTaskAttempt.Int(a.Number),
			AttrWorkerID.String(a.WorkerID),
			AttrCICDPipelineName.String(run.FlowName), AttrCICDPipelineRunID.String(run.ID),
			AttrCICDPipelineTaskName.String(st.Name),
			AttrTaskStatus.String(string(a.Status)), AttrCICDTaskRunResult.String(cicdResult(string(a.Status))),
			attribute.Bool("pyoco.task.interrupted", true),
		))
	span.SetStatus(codes.Error, a.Error)
	span.RecordError(errors.New(a.Error), trace.WithTimestamp(end))
	span.End(trace.WithTimestamp(end))
}

// attemptLink is the previous attempt of a task, which the span of its
// next attempt links to.
type attemptLink struct {
	spanID string
	kind   string
}

// prevAttempt returns the attempt of task name that its next attempt's span
// links to: the last one this execution made (a retry), else the last one
// stored by an earlier execution (a takeover), else none.
func (x *execution) prevAttempt(name string) attemptLink {
	x.mu.Lock()
	defer x.mu.Unlock()
	if l, ok := x.links[name]; ok {
		return l
	}
	if st := x.run.Tasks[name]; st != nil && len(st.Attempts) > 0 {
		return attemptLink{spanID: st.Attempts[len(st.Attempts)-1].SpanID, kind: LinkTakeover}
	}
	return attemptLink{}
}

// setPrevAttempt records sc as the span of task name's latest attempt.
func (x *execution) setPrevAttempt(name string, sc trace.SpanContext) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.links == nil {
		x.links = make(map[string]attemptLink)
	}
	x.links[name] = attemptLink{spanID: spanIDString(sc), kind: LinkRetry}
}

// linkOpt returns the start option linking an attempt's span to l's, or nil.
func (l attemptLink) linkOpt(runSpan trace.SpanContext) trace.SpanStartOption {
	sid, err := trace.SpanIDFromHex(l.spanID)
	if err != nil || !runSpan.TraceID().IsValid() {
		return nil
	}
	return trace.WithLinks(trace.Link{
		SpanContext: trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: runSpan.TraceID(), SpanID: sid, TraceFlags: runSpan.TraceFlags(),
		}),
		Attributes: []attribute.KeyValue{AttrLinkKind.String(l.kind)},
	})
}
