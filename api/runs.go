package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/trace"

	"github.com/pyoco/pyoco/api/apidoc"
	"github.com/pyoco/pyoco/engine"
)

// Limits of a POST /runs body.
const (
	maxTags           = 64
	maxIdempotencyKey = 255
	// idemWait bounds how long a retried submit waits for the run of a
	// concurrent first request with the same Idempotency-Key to appear.
	idemWait = 2 * time.Second
	// idemStale is the age after which a key whose run never appeared is
	// taken as a failed earlier request.
	idemStale = 10 * time.Second
)

// runCreateRequest is the body of POST /runs.
type runCreateRequest struct {
	FlowName *string         `json:"flow_name"`
	FlowYAML *string         `json:"flow_yaml"`
	Params   json.RawMessage `json:"params"`
	Tags     []string        `json:"tags"`
}

// runCreatedDoc answers POST /runs.
type runCreatedDoc struct {
	RunID   string           `json:"run_id"`
	Status  engine.RunStatus `json:"status"`
	TraceID string           `json:"trace_id"`
}

// runStatusDoc answers POST /runs/{run_id}/cancel.
type runStatusDoc struct {
	RunID  string           `json:"run_id"`
	Status engine.RunStatus `json:"status"`
}

// runListDoc answers GET /runs.
type runListDoc struct {
	Runs       []apidoc.RunSummaryDoc `json:"runs"`
	NextCursor *string                `json:"next_cursor"`
}

// decodeBody decodes exactly one JSON value from r's body into v, refusing
// unknown fields.
func decodeBody(r *http.Request, v any) error {
	// Read the whole (limited) body first: a body over the limit is 413
	// even when it is not JSON and its size was not announced (chunked).
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return errBadRequest("request body: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.Is(err, io.EOF):
			return errBadRequest("request body is empty: want a JSON object")
		case errors.As(err, &se):
			return errBadRequest("request body is not valid JSON: %v (at byte %d)", se, se.Offset)
		case errors.As(err, &te):
			if te.Field != "" {
				return errBadRequest("request body: field %q: want %s, got JSON %s", te.Field, te.Type, te.Value)
			}
			return errBadRequest("request body: want a JSON object, got JSON %s", te.Value)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return errBadRequest("request body: %s", strings.TrimPrefix(err.Error(), "json: "))
		}
		return errBadRequest("request body: %v", err)
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errBadRequest("request body: want exactly one JSON object, found more after it")
	}
	return nil
}

func (s *Server) runCreate(w http.ResponseWriter, r *http.Request) error {
	key := r.Header.Get("Idempotency-Key")
	if len(key) > maxIdempotencyKey || strings.IndexFunc(key, func(c rune) bool { return c < 0x20 || c > 0x7e }) >= 0 {
		return errBadParam("Idempotency-Key", "want 1 to %d printable ASCII characters", maxIdempotencyKey)
	}
	var req runCreateRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	flow, err := s.requestFlow(&req)
	if err != nil {
		return err
	}
	params, err := decodeParams(req.Params)
	if err != nil {
		return err
	}
	if err := checkParams(flow, params); err != nil {
		return err
	}
	if len(req.Tags) > maxTags {
		return errBadRequest("tags: at most %d tags, got %d", maxTags, len(req.Tags))
	}
	for _, t := range req.Tags {
		if t == "" || utf8.RuneCountInString(t) > maxFilterLen {
			return errBadRequest("tags: each tag must have 1 to %d characters", maxFilterLen)
		}
	}

	ctx := r.Context()
	runID := engine.NewRunID()
	binding := runID
	if key != "" {
		// The key is bound to the run and to what was asked: the same key
		// with another request is a client bug, not a replay.
		binding = runID + " " + requestHash(flow, &req, params)
		prior, err := s.bindIdempotencyKey(ctx, key, binding)
		if err != nil {
			return err
		}
		if prior != nil {
			writeJSON(w, http.StatusOK, runCreatedDoc{RunID: prior.ID, Status: prior.Status, TraceID: prior.TraceID})
			return nil
		}
	}
	run, err := s.eng.Submit(ctx, &engine.SubmitParams{
		Flow: flow, Params: params, Tags: req.Tags, RunID: runID,
		TraceParent: s.traceParent(r),
	})
	if err != nil {
		if key != "" {
			// Free the key for a retry. If the store cannot be reached now
			// (often why Submit failed), this server remembers the failure,
			// and any server takes the binding as stale after idemStale.
			if rerr := s.idem.IdempotencyRelease(context.WithoutCancel(ctx), key, binding); rerr != nil {
				s.failed.add(runID)
			}
		}
		return err
	}
	writeJSON(w, http.StatusCreated, runCreatedDoc{RunID: run.ID, Status: run.Status, TraceID: run.TraceID})
	return nil
}

// requestFlow resolves flow_name or flow_yaml (exactly one).
func (s *Server) requestFlow(req *runCreateRequest) (*engine.Flow, error) {
	switch {
	case req.FlowName != nil && req.FlowYAML != nil:
		return nil, errBadRequest("give flow_name or flow_yaml, not both")
	case req.FlowName != nil:
		name := *req.FlowName
		if name == "" {
			return nil, errBadRequest("flow_name: must not be empty")
		}
		if s.cfg.Flows == nil {
			return nil, errNotFound("flow %q not found: this server offers no flows by name (send flow_yaml)", clip(name))
		}
		f, err := s.cfg.Flows.FlowGet(name)
		if errors.Is(err, engine.ErrNotFound) {
			return nil, errNotFound("flow %q not found (see GET /flows)", clip(name))
		}
		return f, err
	case req.FlowYAML != nil:
		if strings.TrimSpace(*req.FlowYAML) == "" {
			return nil, errBadRequest("flow_yaml: must not be empty")
		}
		var tasks engine.TaskLookup = s.eng.Registry()
		if s.cfg.FlowTasks != nil {
			tasks = s.cfg.FlowTasks
		}
		return engine.LoadFlow(engine.InlineFlowFile, []byte(*req.FlowYAML), engine.WithFlows(tasks, s.serverFlow))
	}
	return nil, errBadRequest("give flow_name (a flow of GET /flows) or flow_yaml (a flow file's text)")
}

// decodeParams decodes the params member: absent or null means none; any
// other value must be a JSON object.
func decodeParams(raw json.RawMessage) (map[string]any, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] != '{' {
		return nil, errBadRequest("params: want a JSON object, got %s", jsonKind(raw[0]))
	}
	var params map[string]any
	if err := json.Unmarshal(raw, &params); err != nil {
		return nil, errBadRequest("params: %v", err)
	}
	return params, nil
}

func jsonKind(c byte) string {
	switch {
	case c == '[':
		return "an array"
	case c == '"':
		return "a string"
	case c == 't' || c == 'f':
		return "a boolean"
	default:
		return "a number"
	}
}

// checkParams reports params that the flow's tasks reference but that
// neither the run nor the flow's defaults give (422, at the tasks'
// positions): the run would otherwise fail on an unresolved reference.
func checkParams(f *engine.Flow, params map[string]any) error {
	var details []ErrorDetail
	for _, name := range f.Order {
		t := f.Tasks[name]
		seen := map[string]bool{}
		for _, ref := range engine.RefsIn(t.Inputs) {
			if ref.Kind != engine.RefParams || seen[ref.Name] {
				continue
			}
			seen[ref.Name] = true
			if _, ok := params[ref.Name]; ok {
				continue
			}
			if _, ok := f.Defaults[ref.Name]; ok {
				continue
			}
			details = append(details, ErrorDetail{
				Message: fmt.Sprintf("param %q is required: task %s references it (%s) and the flow has no default", ref.Name, name, ref.Text),
				File:    t.Pos.File, Line: t.Pos.Line, Column: t.Pos.Col,
			})
		}
	}
	if len(details) == 0 {
		return nil
	}
	msg := "invalid params: " + details[0].Message
	if len(details) > 1 {
		msg += fmt.Sprintf(" (and %d more)", len(details)-1)
	}
	return errUnprocessable(msg, details)
}

// traceParent returns the W3C traceparent the run continues: the API's
// own server span when the caller sent a valid traceparent (so the trace
// reads caller → POST /runs → run), "" otherwise (the run starts a trace).
func (s *Server) traceParent(r *http.Request) string {
	h := r.Header.Get("traceparent")
	in, ok := engine.ParseTraceParent(h)
	if !ok {
		return ""
	}
	if sc := trace.SpanContextFromContext(r.Context()); sc.IsValid() && sc.TraceID() == in.TraceID() {
		return engine.FormatTraceParent(sc)
	}
	return h
}

// bindIdempotencyKey binds the Idempotency-Key key to runID, the run this
// request is about to create, and returns nil; or it returns the run an
// earlier request with key created (a replay, answered 200).
//
// A binding whose run does not exist yet belongs to a concurrent request
// still submitting: wait up to idemWait for its run, then 409. It is stale
// when the request that made it failed without releasing it: this server
// saw its Submit fail (s.failed), or the run id is older than idemStale (a
// submit takes milliseconds). A stale binding is released (compare-and-
// delete, so a newer binding is left alone) and the key bound again; of
// concurrent retries, one binds it and the others replay its run.
//
// A binding is "<run id> <request hash>" (see [requestHash]); a binding of
// another request is 422, whatever became of its run. (Bindings made
// before the hash was stored hold a run id alone and replay as before.)
func (s *Server) bindIdempotencyKey(ctx context.Context, key, binding string) (*engine.Run, error) {
	_, hash, _ := strings.Cut(binding, " ")
	deadline := time.Now().Add(idemWait)
	for {
		existingBinding, err := s.idem.IdempotencyGetOrSet(ctx, key, binding, s.cfg.IdempotencyTTL)
		if err != nil {
			return nil, fmt.Errorf("idempotency key: %w", err)
		}
		if existingBinding == "" {
			return nil, nil
		}
		existing, prevHash, hashed := strings.Cut(existingBinding, " ")
		if hashed && prevHash != hash {
			return nil, errUnprocessable(fmt.Sprintf("Idempotency-Key %q was used within %s for a different request (run %s): send the same body to get that run, or use a new key",
				clip(key), shortDuration(s.cfg.IdempotencyTTL), clip(existing)), nil)
		}
		run, err := s.store.RunGet(ctx, existing)
		if err == nil {
			return run, nil
		}
		if !errors.Is(err, engine.ErrNotFound) {
			return nil, err
		}
		if t, ok := runIDTime(existing); s.failed.has(existing) || (ok && time.Since(t) > idemStale) {
			if err := s.idem.IdempotencyRelease(ctx, key, existingBinding); err != nil {
				return nil, fmt.Errorf("idempotency key: %w", err)
			}
			continue
		}
		if time.Now().After(deadline) {
			return nil, errConflict("Idempotency-Key %q belongs to an earlier request whose run does not exist yet (it is in progress, or failed on another server less than %s ago); retry later", clip(key), idemStale)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// requestHash is the hex SHA-256 of what a POST /runs asks for: the flow
// (its name, or the text of flow_yaml), the params as decoded (so key order
// and spacing do not matter) and the tags.
func requestHash(flow *engine.Flow, req *runCreateRequest, params map[string]any) string {
	doc := struct {
		FlowName string         `json:"flow_name,omitempty"`
		FlowYAML string         `json:"flow_yaml,omitempty"`
		Params   map[string]any `json:"params,omitempty"`
		Tags     []string       `json:"tags,omitempty"`
	}{Params: params, Tags: req.Tags}
	if req.FlowYAML != nil {
		doc.FlowYAML = *req.FlowYAML
	} else {
		doc.FlowName = flow.Name
	}
	b, err := json.Marshal(doc)
	if err != nil { // params came from JSON: cannot happen
		b = []byte(fmt.Sprint(doc))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// shortDuration is d without zero trailing units: "24h", "1h30m".
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// runIDTime reads the creation time out of a UUIDv7 run id.
func runIDTime(id string) (time.Time, bool) {
	h := strings.ReplaceAll(id, "-", "")
	if len(h) != 32 || h[12] != '7' {
		return time.Time{}, false
	}
	b, err := hex.DecodeString(h[:12])
	if err != nil {
		return time.Time{}, false
	}
	var ms int64
	for _, c := range b {
		ms = ms<<8 | int64(c)
	}
	return time.UnixMilli(ms), true
}

func (s *Server) runList(w http.ResponseWriter, r *http.Request) error {
	p, err := parseRunsQuery(r.URL.Query())
	if err != nil {
		return err
	}
	key := fmt.Sprintf("list\x00%q\x00%q\x00%q\x00%d\x00%q", p.Statuses, p.Flow, p.Tag, p.Limit, p.Cursor)
	body, err := s.sharedRead(r.Context(), key, func(ctx context.Context) ([]byte, error) {
		page, err := s.store.RunList(ctx, p)
		if err != nil {
			return nil, err
		}
		doc := runListDoc{Runs: make([]apidoc.RunSummaryDoc, 0, len(page.Runs))}
		for _, run := range page.Runs {
			doc.Runs = append(doc.Runs, apidoc.NewRunSummaryDoc(run))
		}
		if page.NextCursor != "" {
			doc.NextCursor = &page.NextCursor
		}
		return marshalJSON(doc)
	})
	if err != nil {
		return err
	}
	writeJSONBody(w, http.StatusOK, body)
	return nil
}

// sharedRead answers a read through the coalescer (see [coalescer]), or
// directly when Config.NoCoalescing is set.
func (s *Server) sharedRead(ctx context.Context, key string, read func(context.Context) ([]byte, error)) ([]byte, error) {
	if s.reads == nil {
		return read(ctx)
	}
	return s.reads.do(ctx, key, read)
}

// maxRunIDLen bounds run ids looked up; longer ones cannot exist.
const maxRunIDLen = 128

// getRun returns the run of the request's {run_id}, or a 404.
func (s *Server) getRun(ctx context.Context, id string) (*engine.Run, error) {
	if id == "" || len(id) > maxRunIDLen {
		return nil, errNotFound("run %q not found", clip(id))
	}
	run, err := s.store.RunGet(ctx, id)
	if errors.Is(err, engine.ErrNotFound) {
		return nil, errNotFound("run %q not found", clip(id))
	}
	return run, err
}

func (s *Server) runGet(w http.ResponseWriter, r *http.Request) error {
	if err := checkKnown(r.URL.Query()); err != nil {
		return err
	}
	id := r.PathValue("run_id")
	body, err := s.sharedRead(r.Context(), "get\x00"+id, func(ctx context.Context) ([]byte, error) {
		run, err := s.getRun(ctx, id)
		if err != nil {
			return nil, err
		}
		return marshalJSON(apidoc.NewRunDoc(run, s.cfg.OutputMaxBytes))
	})
	if err != nil {
		return err
	}
	writeJSONBody(w, http.StatusOK, body)
	return nil
}

func (s *Server) runCancel(w http.ResponseWriter, r *http.Request) error {
	if err := checkKnown(r.URL.Query()); err != nil {
		return err
	}
	ctx := r.Context()
	id := r.PathValue("run_id")
	if _, err := s.getRun(ctx, id); err != nil {
		return err
	}
	st, err := s.eng.Cancel(ctx, id)
	switch {
	case errors.Is(err, engine.ErrConflict):
		if run, gerr := s.store.RunGet(ctx, id); gerr == nil {
			return errConflict("run %s is already %s: a finished run cannot be cancelled", id, run.Status)
		}
		return errConflict("run %s is already finished: it cannot be cancelled", id)
	case errors.Is(err, engine.ErrNotFound):
		return errNotFound("run %q not found", clip(id))
	case err != nil:
		return err
	}
	writeJSON(w, http.StatusAccepted, runStatusDoc{RunID: id, Status: st})
	return nil
}

// sortedStrings returns a sorted copy of ss, never nil.
func sortedStrings(ss []string) []string {
	out := slices.Clone(ss)
	if out == nil {
		out = []string{}
	}
	slices.Sort(out)
	return out
}

// serverFlow is a flow of the server, for `use: flow/<name>` in an inline flow.
func (s *Server) serverFlow(name string) (*engine.Flow, bool) {
	if s.cfg.Flows == nil {
		return nil, false
	}
	f, err := s.cfg.Flows.FlowGet(name)
	return f, err == nil
}
