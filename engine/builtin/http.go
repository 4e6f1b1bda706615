package builtin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	neturl "net/url"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"

	"github.com/pyoco/pyoco/engine"
)

// httpClient is shared by every http task so connections are reused. It has
// no Timeout: the task's context (and the optional timeout input) governs.
var httpClient = &http.Client{}

// errHTTPTimeout is the cancellation cause of a request that exceeded the
// task's timeout input.
var errHTTPTimeout = errors.New("http request timed out")

type httpInputs struct {
	Method      string            `json:"method"`
	URL         string            `json:"url"`
	Headers     map[string]string `json:"headers"`
	Body        json.RawMessage   `json:"body"`
	AllowStatus []int             `json:"allow_status"`
	Timeout     engine.Duration   `json:"timeout"`
}

func httpDef() engine.TaskDef {
	return engine.TaskDef{
		Name:     "http",
		Summary:  "Send an HTTP request, carrying the task's trace context, and return the response.",
		Tags:     []string{"http", "request", "webhook", "api"},
		Category: categoryNetwork,
		Inputs: []engine.Param{
			{Name: "method", Type: "string", Description: "HTTP method. Defaults to GET."},
			{Name: "url", Type: "string", Required: true, Description: "Request URL (http or https)."},
			{Name: "headers", Type: "object", Items: "string", Description: "Request headers (string values)."},
			{Name: "body", Type: "any", Description: "Request body: a string is sent as is; any other JSON value is sent as JSON with Content-Type application/json."},
			{Name: "allow_status", Type: "array", Items: "integer", Description: "Status codes outside 2xx that do not fail the task."},
			{Name: "timeout", Type: "duration", Description: "Time limit for the whole request, body included. Defaults to none beyond the task's own timeout."},
		},
		Outputs: []engine.Param{
			{Name: "status", Type: "integer", Description: "Response status code."},
			{Name: "headers", Type: "object", Description: "Response headers, first value of each."},
			{Name: "body", Type: "any", Description: "Response body: parsed JSON when the response is JSON, else text capped at 64 KiB."},
		},
		StrictInputs: true,
		Run:          engine.Typed("http", runHTTP),
	}
}

func runHTTP(ctx context.Context, tc *engine.TaskContext, in httpInputs) (any, error) {
	if in.URL == "" {
		return nil, required("http", "url")
	}
	method := strings.ToUpper(in.Method)
	if method == "" {
		method = http.MethodGet
	}
	body, isJSON, err := requestBody(in.Body)
	if err != nil {
		return nil, err
	}

	reqCtx := ctx
	if in.Timeout > 0 {
		var cancel context.CancelFunc
		reqCtx, cancel = context.WithTimeoutCause(ctx, time.Duration(in.Timeout), errHTTPTimeout)
		defer cancel()
	}
	var bodyReader io.Reader
	if body != nil {
		bodyReader = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(reqCtx, method, in.URL, bodyReader)
	if err != nil {
		return nil, &engine.InputError{Task: "http", Input: "url", Msg: err.Error()}
	}
	if isJSON {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range in.Headers {
		if strings.EqualFold(k, "Host") { // net/http ignores a Host header field
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	// Both carry the attempt's span: the propagator whatever telemetry set up
	// (also baggage, tracestate), tc.TraceParent the id the engine recorded.
	otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(req.Header))
	if tc.TraceParent != "" {
		req.Header.Set("Traceparent", tc.TraceParent)
	}

	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, httpCtxError(ctx, reqCtx, method, in.URL, in.Timeout, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, outputCap+1))
	if err != nil {
		return nil, httpCtxError(ctx, reqCtx, method, in.URL, in.Timeout, err)
	}

	headers := make(map[string]string, len(resp.Header))
	for k, vs := range resp.Header {
		if len(vs) > 0 {
			headers[k] = vs[0]
		}
	}
	out := map[string]any{"status": resp.StatusCode, "headers": headers, "body": responseBody(resp.Header.Get("Content-Type"), raw)}
	if (resp.StatusCode < 200 || resp.StatusCode > 299) && !slices.Contains(in.AllowStatus, resp.StatusCode) {
		return nil, fmt.Errorf("HTTP %s from %s", resp.Status, in.URL)
	}
	return out, nil
}

// requestBody turns the body input into bytes: a JSON string is sent as its
// text, null or absent as no body, anything else as JSON (isJSON).
func requestBody(raw json.RawMessage) (body []byte, isJSON bool, err error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0, string(raw) == "null":
		return nil, false, nil
	case raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, false, &engine.InputError{Task: "http", Input: "body", Msg: err.Error()}
		}
		return []byte(s), false, nil
	}
	return raw, true, nil
}

// responseBody returns the parsed JSON of a complete JSON response, else the
// text, capped at outputCap.
func responseBody(contentType string, raw []byte) any {
	if len(raw) <= outputCap && isJSONMediaType(contentType) {
		var v any
		if err := json.Unmarshal(raw, &v); err == nil {
			return v
		}
	}
	if len(raw) > outputCap {
		return string(trimPartialRune(raw[:outputCap])) + truncatedMarker
	}
	return string(raw)
}

func isJSONMediaType(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// httpCtxError explains a failed request: the task's context ending (wrapping
// its cause), the timeout input expiring, or a transport error.
func httpCtxError(ctx, reqCtx context.Context, method, url string, timeout engine.Duration, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("http %s %s: %w", method, url, context.Cause(ctx))
	}
	if errors.Is(context.Cause(reqCtx), errHTTPTimeout) {
		return fmt.Errorf("http %s %s: %w after %s", method, url, errHTTPTimeout, time.Duration(timeout))
	}
	var ue *neturl.Error
	if errors.As(err, &ue) {
		err = ue.Err // its message repeats method and URL
	}
	return fmt.Errorf("http %s %s: %w", method, url, err)
}
