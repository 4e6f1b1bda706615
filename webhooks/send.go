package webhooks

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// userAgent identifies pyoco's deliveries.
const userAgent = "pyoco-webhooks/1"

// maxAnswerBytes bounds how much of a receiver's answer is read.
const maxAnswerBytes = 4096

// Request is one webhook request.
type Request struct {
	URL string
	// ID is the webhook-id (the delivery's, the same on every attempt).
	ID   string
	Body []byte
	// Format is standard (signed, webhook-* headers), slack (plain JSON) or
	// cloudevents (structured mode; webhook-* headers when Keys are set).
	Format string
	// Keys sign a standard request (none: no webhook-signature header).
	Keys [][]byte
	// Time is the webhook-timestamp (zero: now).
	Time time.Time
	// Header holds extra headers (traceparent).
	Header http.Header
}

// Answer is the receiver's answer to a [Request].
type Answer struct {
	StatusCode int
	Status     string
	Header     http.Header
	// Body is the start of the answer's body (at most 4 kB).
	Body []byte
	// RetryAfter is the Retry-After of a 429 or 503 answer (0: none).
	RetryAfter time.Duration
}

// NewHTTPClient returns the client deliveries use: no redirects are
// followed (a 3xx answer is a failed attempt), timeout per request.
func NewHTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Send makes one request with hc. An error means no answer came (network
// failure, timeout, ctx ended); any answer, 2xx or not, is an [Answer].
func Send(ctx context.Context, hc *http.Client, r *Request) (*Answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL, bytes.NewReader(r.Body))
	if err != nil {
		return nil, err
	}
	for k, v := range r.Header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	if r.Format == FormatCloudEvents {
		req.Header.Set("Content-Type", CloudEventsContentType)
	}
	req.Header.Set("User-Agent", userAgent)
	if r.Format == FormatStandard || r.Format == "" || (r.Format == FormatCloudEvents && len(r.Keys) > 0) {
		ts := r.Time
		if ts.IsZero() {
			ts = time.Now()
		}
		req.Header.Set("webhook-id", r.ID)
		req.Header.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
		if len(r.Keys) > 0 {
			req.Header.Set("webhook-signature", Sign(r.ID, ts, r.Body, r.Keys))
		}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
	a := &Answer{StatusCode: resp.StatusCode, Status: resp.Status, Header: resp.Header, Body: body}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		a.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	return a, nil
}

// parseRetryAfter reads a Retry-After value: delay seconds or an HTTP date
// (0 when absent, malformed or past).
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(min(n, int64(maxRetryAfter/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), maxRetryAfter)
	}
	return 0
}

// maxRetryAfter caps a receiver's Retry-After.
const maxRetryAfter = 24 * time.Hour
