package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/pyoco/pyoco/engine"
)

// Error codes of the {"error": {"code", ...}} body. They are public: clients
// switch on them.
const (
	CodeBadRequest       = "bad_request"
	CodeUnauthorized     = "unauthorized"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeConflict         = "conflict"
	CodeUnprocessable    = "unprocessable"
	CodePayloadTooLarge  = "payload_too_large"
	CodeUnavailable      = "unavailable"
	CodeInternal         = "internal"
)

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error ErrorDoc `json:"error"`
}

// ErrorDoc is the "error" object of an [ErrorBody].
type ErrorDoc struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Param names the query parameter or header that was wrong (400s only).
	Param string `json:"param,omitempty"`
	// Details lists every problem of an invalid flow or params (422), each
	// with its position in the flow file when known.
	Details []ErrorDetail `json:"details,omitempty"`
}

// ErrorDetail is one problem of a 422 answer.
type ErrorDetail struct {
	Message string `json:"message"`
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
}

// apiError is an error that already knows its answer.
type apiError struct {
	status int
	doc    ErrorDoc
}

func (e *apiError) Error() string { return e.doc.Message }

func errBadParam(param, format string, a ...any) error {
	return &apiError{status: http.StatusBadRequest, doc: ErrorDoc{Code: CodeBadRequest, Param: param,
		Message: param + ": " + fmt.Sprintf(format, a...)}}
}

func errBadRequest(format string, a ...any) error {
	return &apiError{status: http.StatusBadRequest, doc: ErrorDoc{Code: CodeBadRequest, Message: fmt.Sprintf(format, a...)}}
}

func errNotFound(format string, a ...any) error {
	return &apiError{status: http.StatusNotFound, doc: ErrorDoc{Code: CodeNotFound, Message: fmt.Sprintf(format, a...)}}
}

func errConflict(format string, a ...any) error {
	return &apiError{status: http.StatusConflict, doc: ErrorDoc{Code: CodeConflict, Message: fmt.Sprintf(format, a...)}}
}

func errUnprocessable(msg string, details []ErrorDetail) error {
	return &apiError{status: http.StatusUnprocessableEntity, doc: ErrorDoc{Code: CodeUnprocessable, Message: msg, Details: details}}
}

// errorAnswer maps any error to its status and body. It is the one place
// where errors become HTTP answers: typed API errors answer for themselves,
// engine sentinels map to their codes, and anything else is a 500 whose
// message hides the internals (the caller logs the error).
func errorAnswer(err error) (int, ErrorDoc) {
	var ae *apiError
	var mbe *http.MaxBytesError
	var les engine.LoadErrors
	var le *engine.LoadError
	switch {
	case errors.As(err, &ae):
		return ae.status, ae.doc
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, ErrorDoc{Code: CodePayloadTooLarge,
			Message: fmt.Sprintf("request body is larger than %d bytes", mbe.Limit)}
	case errors.As(err, &les):
		return http.StatusUnprocessableEntity, ErrorDoc{Code: CodeUnprocessable,
			Message: "invalid flow: " + firstMessage(les), Details: loadDetails(les)}
	case errors.As(err, &le):
		return http.StatusUnprocessableEntity, ErrorDoc{Code: CodeUnprocessable,
			Message: "invalid flow: " + le.Error(), Details: loadDetails(engine.LoadErrors{le})}
	case errors.Is(err, engine.ErrBadCursor):
		return http.StatusBadRequest, ErrorDoc{Code: CodeBadRequest, Param: "cursor",
			Message: "cursor: not a cursor this server made (use next_cursor as is)"}
	case errors.Is(err, engine.ErrNotFound):
		return http.StatusNotFound, ErrorDoc{Code: CodeNotFound, Message: clipWords(err.Error())}
	case errors.Is(err, engine.ErrConflict):
		return http.StatusConflict, ErrorDoc{Code: CodeConflict, Message: clipWords(err.Error())}
	case errors.Is(err, engine.ErrUnavailable):
		return http.StatusServiceUnavailable, ErrorDoc{Code: CodeUnavailable,
			Message: "the state store is unavailable; retry later: " + clipWords(err.Error())}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, ErrorDoc{Code: CodeUnavailable, Message: "request cancelled or timed out"}
	}
	return http.StatusInternalServerError, ErrorDoc{Code: CodeInternal, Message: "internal error"}
}

// clipWords clips each space-separated word of a store error's message as
// clip does: such messages may quote a caller's id (a path segment of up to
// 128 bytes), and an answer echoes only its beginning.
func clipWords(msg string) string {
	words := strings.Split(msg, " ")
	for i, w := range words {
		words[i] = clip(w)
	}
	return strings.Join(words, " ")
}

func firstMessage(les engine.LoadErrors) string {
	if len(les) == 0 {
		return "no details"
	}
	msg := les[0].Error()
	if len(les) > 1 {
		msg += fmt.Sprintf(" (and %d more)", len(les)-1)
	}
	return msg
}

func loadDetails(les engine.LoadErrors) []ErrorDetail {
	out := make([]ErrorDetail, 0, len(les))
	for _, l := range les {
		out = append(out, ErrorDetail{Message: l.Msg, File: l.Pos.File, Line: l.Pos.Line, Column: l.Pos.Col})
	}
	return out
}

// writeError answers r with err's status and body, logging 5xx answers.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, doc := errorAnswer(err)
	if status >= 500 {
		s.log.LogAttrs(r.Context(), slog.LevelError, "api request failed",
			slog.String("method", r.Method), slog.String("route", r.Pattern),
			slog.Int("status", status), slog.String(engine.LogKeyError, err.Error()))
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="pyoco"`)
	}
	writeJSON(w, status, ErrorBody{Error: doc})
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := marshalJSON(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"encode response"}}` + "\n")
	}
	writeJSONBody(w, status, b)
}

// marshalJSON encodes v as a response body (with its final newline).
func marshalJSON(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode response: %w", err)
	}
	return append(b, '\n'), nil
}

// writeJSONBody writes b, a body from marshalJSON, with status. b may be
// shared between responses: it is not changed.
func writeJSONBody(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
