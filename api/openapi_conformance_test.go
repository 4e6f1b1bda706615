package api_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/api"
)

// TestOpenAPIValid: the served document is a valid OpenAPI 3.1 document
// for kin-openapi (a validator nobody here wrote; redocly lint runs on the
// same file in .ci/run).
func TestOpenAPIValid(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	require.Equal(t, "3.1.0", doc.OpenAPI)
}

func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(api.OpenAPI())
	require.NoError(t, err)
	require.NoError(t, doc.Validate(context.Background(), openapi3.EnableSchemaPatternValidation()))
	return doc
}

// conformanceCase is one generated request. semantic marks a request that
// the document cannot tell from a good one (an opaque cursor this server
// did not make, an unknown flow): the server may refuse it although it
// matches the schemas.
type conformanceCase struct {
	method, target string
	body           string
	header         []string // name, value pairs
	noToken        bool
	semantic       bool
}

// TestOpenAPIConformance serves the API (memory store, a worker, a bearer
// token) and sends it generated requests, good and bad, for every
// operation of the document. Every answer must be below 500, declared for
// its operation (status and, for JSON, body schema, checked by
// kin-openapi's openapi3filter); a request that breaks the document's
// rules must be refused (4xx), and one that keeps them must not get a 400
// unless it is marked semantic. These are the checks schemathesis runs
// (not_a_server_error, status_code_conformance, response_schema_conformance,
// negative_data_rejection, positive_data_acceptance; see
// tools/schemathesis/run.sh for schemathesis itself).
func TestOpenAPIConformance(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	router, err := gorillamux.NewRouter(doc)
	require.NoError(t, err)

	b := setup(t, memStore, func(c *api.Config) { c.Token = "s3cret" })
	done := b.submit(map[string]any{"flow_name": "hello", "tags": []string{"t1"}})
	b.wait(done)
	pending := b.submit(map[string]any{"flow_name": "slow"})
	seen := map[string]bool{}
	// Cancelled at once, before its 30 s sleep could end: 202.
	cancel := conformanceCase{method: http.MethodPost, target: "/runs/" + pending + "/cancel"}
	require.Equal(t, http.StatusAccepted, checkConformance(t, b, router, cancel))
	seen["POST 202"] = true

	cases := generateCases(doc, done, pending)
	require.Greater(t, len(cases), 500, "too few generated requests")
	t.Logf("%d generated requests", len(cases)+1)
	for _, c := range cases {
		status := checkConformance(t, b, router, c)
		seen[fmt.Sprintf("%s %d", c.method, status)] = true
	}
	// The generator reaches the interesting answers.
	for _, want := range []string{"GET 200", "GET 400", "GET 401", "GET 404", "POST 201", "POST 200", "POST 202",
		"POST 400", "POST 404", "POST 409", "POST 413", "POST 422"} {
		require.True(t, seen[want], "no generated request was answered %s", want)
	}
}

// checkConformance sends c and checks the answer against the document. It
// returns the status.
func checkConformance(t *testing.T, b *bundle, router routers.Router, c conformanceCase) int {
	t.Helper()
	name := fmt.Sprintf("%s %s (body %d bytes, header %q)", c.method, clipText(c.target), len(c.body), c.header)
	req, err := http.NewRequest(c.method, b.url+c.target, strings.NewReader(c.body))
	require.NoError(t, err, name)
	if c.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if !c.noToken {
		req.Header.Set("Authorization", "Bearer "+b.token)
	}
	for i := 0; i+1 < len(c.header); i += 2 {
		req.Header.Set(c.header[i], c.header[i+1])
	}
	resp, err := b.client.Do(req)
	require.NoError(t, err, name)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err, name)
	require.NoError(t, resp.Body.Close())
	require.Less(t, resp.StatusCode, 500, "%s: server error: %s", name, body)

	// The router matches on the request as the document sees it.
	vreq, err := http.NewRequest(c.method, "http://pyoco.test"+c.target, bytes.NewReader([]byte(c.body)))
	require.NoError(t, err, name)
	vreq.Header = req.Header.Clone()
	route, pathParams, err := router.FindRoute(vreq)
	require.NoError(t, err, "%s: no operation in the document", name)

	in := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: pathParams, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true}}
	reqErr := openapi3filter.ValidateRequest(context.Background(), in)
	switch {
	case c.noToken && route.Operation.Security == nil:
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "%s: %s", name, body)
	case reqErr != nil:
		// Negative data: the server must refuse what the document forbids.
		require.True(t, resp.StatusCode >= 400 && resp.StatusCode < 500,
			"%s breaks the document (%v) but was answered %d: %s", name, reqErr, resp.StatusCode, body)
	case !c.semantic:
		// Positive data: what the document allows is not a bad request.
		require.NotEqual(t, http.StatusBadRequest, resp.StatusCode,
			"%s keeps the document's rules but was answered 400: %s", name, body)
	}

	in.Options = &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}
	ct := resp.Header.Get("Content-Type")
	if !strings.HasPrefix(ct, "application/json") {
		// Event streams and the metrics exposition: declared media type,
		// body not a JSON schema's business.
		in.Options.ExcludeResponseBody = true
	}
	rin := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode,
		Header: resp.Header, Options: in.Options}
	rin.SetBodyBytes(body)
	require.NoError(t, openapi3filter.ValidateResponse(context.Background(), rin),
		"%s: answer %d does not match the document: %s", name, resp.StatusCode, clipText(string(body)))
	return resp.StatusCode
}

func clipText(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// generateCases builds the requests: for every operation, its path with
// good, unknown and odd path values; every documented query parameter
// alone with good and bad values; unknown, repeated and malformed queries;
// no token; and for POST /runs a table of bodies and Idempotency-Keys.
func generateCases(doc *openapi3.T, doneRun, pendingRun string) []conformanceCase {
	huge := strings.Repeat("x", 5000)
	pathValues := map[string][]string{
		"run_id": {doneRun, "0198d7c2-0000-7000-8000-000000000000", "x", huge[:300], "%E2%9C%93", "..%2F..%2Fetc"},
		"name":   {"hello", "broken", "nope", huge[:300], "%E2%9C%93"},
		"id":     {"msg_unknown", huge[:300]},
	}
	garbage := []string{"", "%20", "+", "-1", "0", "1", "abc", huge, "%E2%9C%93", "%00", "true", "null", "1e3", "99999999999999999999"}

	var cases []conformanceCase
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			for _, concrete := range expandPath(path, pathValues) {
				base := conformanceCase{method: method, target: concrete}
				if method == http.MethodPost && path == "/runs" {
					continue // bodies below
				}
				cases = append(cases, base)
				nt := base
				nt.noToken = true
				cases = append(cases, nt)
				for _, raw := range []string{"zz_undocumented=1", "%zz", "a=%", "=", "&&", ";"} {
					c := base
					c.target += "?" + raw
					// OpenAPI cannot forbid unknown parameters nor describe a
					// malformed query: each operation's 400 says so in words.
					c.semantic = true
					cases = append(cases, c)
				}
				for _, p := range op.Parameters {
					if p.Value.In != openapi3.ParameterInQuery {
						continue
					}
					name := p.Value.Name
					for _, v := range append(goodValues(p.Value.Schema.Value), garbage...) {
						c := base
						c.target += "?" + name + "=" + v
						// A cursor is opaque: one this server did not make is refused.
						c.semantic = name == "cursor"
						cases = append(cases, c)
					}
					c := base
					c.target += "?" + name + "=1&" + name + "=2"
					c.semantic = true // a repeated scalar is refused (the document has no word for it)
					cases = append(cases, c)
				}
			}
		}
	}
	// Follow a finished run's logs (the stream ends at once) and resume it.
	logs := "/runs/" + doneRun + "/logs"
	for _, h := range [][]string{nil, {"Last-Event-ID", "0"}, {"Last-Event-ID", "999999"}, {"Last-Event-ID", "-3"},
		{"Last-Event-ID", "abc"}} {
		cases = append(cases, conformanceCase{method: http.MethodGet, target: logs + "?follow=true", header: h})
	}
	// Cancelling again: 202 while CANCELLING, 409 once CANCELLED.
	cases = append(cases, conformanceCase{method: http.MethodPost, target: "/runs/" + pendingRun + "/cancel"})
	return append(cases, runCreateCases()...)
}

// runCreateCases are the POST /runs requests.
func runCreateCases() []conformanceCase {
	yaml := "version: 1\nflow:\n  name: inline\ntasks:\n  a: {use: noop}\n"
	badYAML := "version: 1\nflow:\n  name: inline\ntasks:\n  a: {use: no_such}\n"
	bodies := []struct {
		body     string
		semantic bool
	}{
		{`{"flow_name": "other"}`, false},
		{`{"flow_name": "other", "params": {"k": 1}, "tags": ["a", "b"]}`, false},
		{`{"flow_name": "other", "params": null}`, false},
		{`{"flow_name": "other", "flow_yaml": null}`, false},
		{fmt.Sprintf(`{"flow_yaml": %q}`, yaml), false},
		{fmt.Sprintf(`{"flow_yaml": %q, "flow_name": null}`, yaml), false},
		{`{"flow_name": "nope"}`, true},                   // unknown flow: 404
		{`{"flow_name": "needs"}`, true},                  // params fail validation: 422
		{fmt.Sprintf(`{"flow_yaml": %q}`, badYAML), true}, // invalid flow: 422
		{`{"flow_yaml": "not: [yaml"}`, true},             // 422
		{fmt.Sprintf(`{"flow_name": "other", "tags": ["%s"]}`, strings.Repeat("é", 256)), false},
		{fmt.Sprintf(`{"flow_name": "other", "tags": ["%s"]}`, strings.Repeat("é", 257)), false},
		{`{"flow_name": "other", "tags": [""]}`, false},
		{`{"flow_name": "other", "tags": [` + strings.TrimSuffix(strings.Repeat(`"t",`, 65), ",") + `]}`, false},
		{`{"flow_name": "other", "tags": "a"}`, false},
		{`{"flow_name": "other", "tags": [1]}`, false},
		{`{"flow_name": "other", "params": []}`, false},
		{`{"flow_name": "other", "params": "x"}`, false},
		{`{"flow_name": "other", "params": 3}`, false},
		{`{"flow_name": "other", "extra": 1}`, false},
		{`{"flow_name": ""}`, false},
		{`{"flow_yaml": "   \n "}`, false},
		{`{"flow_name": "other", "flow_yaml": "x"}`, false},
		{`{}`, false},
		{`{"flow_name": null}`, false},
		{`{"flow_name": 7}`, false},
		{`[]`, false},
		{`"flow"`, false},
		{`null`, false},
		{``, false},
		{`{`, false},
		{`{"flow_name": "other"} {"flow_name": "other"}`, true}, // not JSON (kin-openapi reads the first value only)
		{`{"flow_name": "other"}` + "\n", false},
		{`{"flow_name": "` + strings.Repeat("x", 2<<20) + `"}`, true}, // 413: over 1 MiB
	}
	var cases []conformanceCase
	for _, b := range bodies {
		cases = append(cases, conformanceCase{method: http.MethodPost, target: "/runs", body: b.body, semantic: b.semantic})
	}
	good := `{"flow_name": "other"}`
	for _, key := range []string{"", " padded ", "key-1", "key-1", "key with spaces ~!", strings.Repeat("k", 255), strings.Repeat("k", 256),
		"caf\u00e9", "tab\there", "emoji-✓"} {
		cases = append(cases, conformanceCase{method: http.MethodPost, target: "/runs", body: good,
			header: []string{"Idempotency-Key", key}})
	}
	cases = append(cases,
		conformanceCase{method: http.MethodPost, target: "/runs", body: good, header: []string{"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}},
		conformanceCase{method: http.MethodPost, target: "/runs", body: good, header: []string{"traceparent", "garbage"}},
		conformanceCase{method: http.MethodPost, target: "/runs", body: good, noToken: true},
		conformanceCase{method: http.MethodPost, target: "/runs?zz=1", body: good, semantic: true},
		conformanceCase{method: http.MethodPost, target: "/runs?%zz", body: good, semantic: true},
	)
	return cases
}

// expandPath fills path's {params} with each of their values in turn.
func expandPath(path string, values map[string][]string) []string {
	out := []string{path}
	for name, vs := range values {
		var next []string
		for _, p := range out {
			if !strings.Contains(p, "{"+name+"}") {
				next = append(next, p)
				continue
			}
			for _, v := range vs {
				next = append(next, strings.ReplaceAll(p, "{"+name+"}", v))
			}
		}
		out = next
	}
	return out
}

// goodValues are values the schema allows: its enum, bounds and default,
// and a few strings of its lengths.
func goodValues(s *openapi3.Schema) []string {
	if s == nil {
		return nil
	}
	if s.Type.Is("array") && s.Items != nil {
		s = s.Items.Value
		vs := []string{"pending", "FAILED,completed", "Running%2C%20cancelled"}
		if len(s.Enum) == 0 && s.Pattern == "" {
			return nil
		}
		return vs
	}
	var vs []string
	for _, e := range s.Enum {
		vs = append(vs, url.QueryEscape(fmt.Sprint(e)))
	}
	switch {
	case s.Type.Is("integer"):
		if s.Min != nil {
			vs = append(vs, fmt.Sprint(int64(*s.Min)), fmt.Sprint(int64(*s.Min)-1))
		}
		if s.Max != nil {
			vs = append(vs, fmt.Sprint(int64(*s.Max)), fmt.Sprint(int64(*s.Max)+1))
		}
		if s.Default != nil {
			vs = append(vs, fmt.Sprint(s.Default))
		}
	case s.Type.Is("boolean"):
		vs = append(vs, "true", "false", "TRUE", "1", "yes")
	case s.Type.Is("string"):
		vs = append(vs, "hello", "a.b-c_d", "t1")
		if s.MaxLength != nil {
			vs = append(vs, strings.Repeat("a", int(*s.MaxLength)), strings.Repeat("a", int(*s.MaxLength)+1),
				strings.Repeat("%C3%A9", int(*s.MaxLength)))
		}
	}
	return vs
}
