package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/pyoco/pyoco/api/apidoc"
	"github.com/pyoco/pyoco/engine"
)

// defaultServer is the API a client command talks to without --server or
// PYOCO_SERVER.
const defaultServer = "http://localhost:8000"

// clientOptions are the flags of the commands that talk to a server.
type clientOptions struct {
	server string
}

func (o *clientOptions) register(c *cobra.Command) {
	c.Flags().StringVar(&o.server, "server", "", "pyoco server URL [PYOCO_SERVER] (default "+defaultServer+")")
}

// client returns the API client for o: --server > PYOCO_SERVER > default,
// with the token of PYOCO_API_TOKEN.
func (o *clientOptions) client(e *env) (*apiClient, error) {
	s := o.server
	if s == "" {
		s = e.getenv("PYOCO_SERVER")
	}
	if s == "" {
		s = defaultServer
	}
	return newAPIClient(s, e.getenv("PYOCO_API_TOKEN"))
}

// apiClient calls a pyoco server's REST API (docs/api.md).
type apiClient struct {
	base  string
	token string
	hc    *http.Client
}

func newAPIClient(server, token string) (*apiClient, error) {
	if !strings.Contains(server, "://") {
		server = "http://" + server
	}
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usageErr("--server %q: want an http:// or https:// URL", server)
	}
	return &apiClient{base: strings.TrimRight(u.String(), "/"), token: token, hc: &http.Client{}}, nil
}

// apiErrorBody is the server's error shape.
type apiErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Details []struct {
			Message string `json:"message"`
			File    string `json:"file"`
			Line    int    `json:"line"`
			Column  int    `json:"column"`
		} `json:"details"`
	} `json:"error"`
}

// clientError is a failed call, as one line for stderr.
func (c *apiClient) clientError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) && (errors.Is(err, syscall.ECONNREFUSED) || isDialError(err)) {
		return &exitError{code: ExitFailed, msg: fmt.Sprintf("cannot reach server at %s (is 'pyoco server' running? set --server or PYOCO_SERVER): %v", c.base, ue.Err)}
	}
	if errors.Is(err, context.Canceled) {
		return exitCode(ExitCancelled)
	}
	return &exitError{code: ExitFailed, msg: fmt.Sprintf("server %s: %v", c.base, err)}
}

func isDialError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

// statusError turns an error answer into one clear line.
func (c *apiClient) statusError(resp *http.Response, body []byte) error {
	var eb apiErrorBody
	msg := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &eb) == nil && eb.Error.Message != "" {
		msg = eb.Error.Message
		for _, d := range eb.Error.Details {
			pos := d.File
			if d.Line > 0 {
				pos += fmt.Sprintf(":%d:%d", d.Line, d.Column)
			}
			msg += "\n  " + strings.TrimPrefix(pos+": ", ": ") + d.Message
		}
	}
	if resp.StatusCode == http.StatusUnauthorized {
		return &exitError{code: ExitFailed, msg: fmt.Sprintf("unauthorized by %s: set PYOCO_API_TOKEN to the server's token (%s)", c.base, msg)}
	}
	return &exitError{code: ExitFailed, msg: fmt.Sprintf("%s (HTTP %d)", msg, resp.StatusCode)}
}

// request sends a request and returns the response for status < 400.
func (c *apiClient) request(ctx context.Context, method, path string, body any, header http.Header) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, c.clientError(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.clientError(err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return nil, c.statusError(resp, b)
	}
	return resp, nil
}

// call sends a request and decodes the JSON answer into out (if non-nil).
// It returns the raw answer too.
func (c *apiClient) call(ctx context.Context, method, path string, body, out any) ([]byte, error) {
	resp, err := c.request(ctx, method, path, body, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, c.clientError(err)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return nil, &exitError{code: ExitFailed, msg: fmt.Sprintf("server %s: bad answer to %s %s: %v", c.base, method, path, err)}
		}
	}
	return b, nil
}

// runDoc fetches GET /runs/{id}.
func (c *apiClient) runDoc(ctx context.Context, id string) (*apidoc.RunDoc, []byte, error) {
	var doc apidoc.RunDoc
	raw, err := c.call(ctx, "GET", "/runs/"+url.PathEscape(id), nil, &doc)
	if err != nil {
		return nil, nil, err
	}
	return &doc, raw, nil
}

// logEntry is a LogEntry as the API sends it.
type logEntry struct {
	Seq       int64            `json:"seq"`
	Task      string           `json:"task"`
	Stream    string           `json:"stream"`
	Level     string           `json:"level"`
	Text      string           `json:"text"`
	Timestamp apidoc.Timestamp `json:"timestamp"`
	TraceID   string           `json:"trace_id"`
	SpanID    string           `json:"span_id"`
}

// followLogs reads the run's log stream (follow=true) and calls fn for each
// entry until the server's end event, reconnecting with Last-Event-ID after
// a cut. It returns the run's final status.
func (c *apiClient) followLogs(ctx context.Context, id string, q url.Values, fn func(raw []byte, e logEntry)) (engine.RunStatus, error) {
	q = cloneValues(q)
	q.Set("follow", "true")
	var last int64 = -1
	failures := 0
	for {
		h := http.Header{}
		h.Set("Accept", "text/event-stream")
		if last >= 0 {
			h.Set("Last-Event-ID", strconv.FormatInt(last, 10))
		}
		resp, err := c.request(ctx, "GET", "/runs/"+url.PathEscape(id)+"/logs?"+q.Encode(), nil, h)
		if err != nil {
			var ee *exitError
			if errors.As(err, &ee) && strings.HasPrefix(ee.msg, "cannot reach") && failures < 5 && ctx.Err() == nil {
				failures++
				sleepCtx(ctx, time.Duration(failures)*500*time.Millisecond)
				continue
			}
			return "", err
		}
		if resp.StatusCode == http.StatusNoContent {
			// A resume of a finished run with nothing new: the stream is
			// over; the run's document has its final status.
			resp.Body.Close()
			doc, _, err := c.runDoc(ctx, id)
			if err != nil {
				return "", err
			}
			return doc.Status, nil
		}
		st, done, err := readSSE(resp.Body, func(ev sseEvent) {
			if ev.event == "" && ev.data != "" {
				var e logEntry
				if json.Unmarshal([]byte(ev.data), &e) == nil {
					last = e.Seq
					fn([]byte(ev.data), e)
				}
			}
		})
		resp.Body.Close()
		if done {
			return st, nil
		}
		if ctx.Err() != nil {
			return "", exitCode(ExitCancelled)
		}
		if err != nil && failures >= 5 {
			return "", c.clientError(err)
		}
		failures++
		sleepCtx(ctx, time.Duration(failures)*200*time.Millisecond)
	}
}

type sseEvent struct{ event, data string }

// readSSE reads events until the end event (done) or the stream breaks.
func readSSE(r io.Reader, fn func(sseEvent)) (st engine.RunStatus, done bool, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			switch ev.event {
			case "end":
				var end struct {
					RunStatus engine.RunStatus `json:"run_status"`
				}
				_ = json.Unmarshal([]byte(ev.data), &end)
				return end.RunStatus, true, nil
			case "error":
				return "", false, fmt.Errorf("log stream: %s", ev.data)
			}
			fn(ev)
			ev = sseEvent{}
		case strings.HasPrefix(line, "event:"):
			ev.event = strings.TrimSpace(line[6:])
		case strings.HasPrefix(line, "data:"):
			ev.data = strings.TrimPrefix(line[5:], " ")
		}
	}
	if err := sc.Err(); err != nil {
		return "", false, err
	}
	return "", false, io.ErrUnexpectedEOF
}

func cloneValues(q url.Values) url.Values {
	out := url.Values{}
	for k, v := range q {
		out[k] = append([]string(nil), v...)
	}
	return out
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// waitRun polls the run until it is terminal; each new document goes to fn
// (may be nil).
func (c *apiClient) waitRun(ctx context.Context, id string, every time.Duration, fn func(*apidoc.RunDoc)) (*apidoc.RunDoc, []byte, error) {
	for {
		doc, raw, err := c.runDoc(ctx, id)
		if err != nil {
			return nil, nil, err
		}
		if fn != nil {
			fn(doc)
		}
		if doc.Status.Terminal() {
			return doc, raw, nil
		}
		select {
		case <-ctx.Done():
			return doc, raw, ctx.Err()
		case <-time.After(every):
		}
	}
}

// exitForStatus is the exit code of a finished run, as `pyoco run` has it.
func exitForStatus(st engine.RunStatus) error {
	switch st {
	case engine.RunCompleted:
		return nil
	case engine.RunCancelled:
		return exitCode(ExitCancelled)
	default:
		return exitCode(ExitFailed)
	}
}
