package webhooks

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Event types (the "type" of a Standard Webhooks payload).
const (
	EventRunCompleted = "run.completed"
	EventRunFailed    = "run.failed"
	EventRunCancelled = "run.cancelled"
)

// Events lists every event type.
var Events = []string{EventRunCompleted, EventRunFailed, EventRunCancelled}

// DefaultEvents are the events of an endpoint that names none.
var DefaultEvents = []string{EventRunCompleted, EventRunFailed}

// Formats of an endpoint.
const (
	FormatStandard = "standard"
	FormatSlack    = "slack"
	// FormatCloudEvents posts a CloudEvents 1.0 event in structured JSON
	// mode (Content-Type application/cloudevents+json); see [CloudEvent].
	FormatCloudEvents = "cloudevents"
)

// EndpointConfig is one entry of the server config file's webhooks: section
// (SPEC §8), or the PYOCO_WEBHOOK_* shorthand ([EnvEndpoint]).
type EndpointConfig struct {
	// URL receives a POST per delivery; http or https.
	URL string `yaml:"url" json:"url"`
	// Events are the event types sent. Defaults to [DefaultEvents].
	Events []string `yaml:"events" json:"events,omitempty"`
	// Secret is one or more space-separated "whsec_…" secrets (several
	// during a rotation); SecretEnv names an environment variable holding
	// them instead. The standard format needs one; slack ignores them;
	// cloudevents deliveries are signed (webhook-* headers) when one is set.
	Secret    string `yaml:"secret" json:"-"`
	SecretEnv string `yaml:"secret_env" json:"secret_env,omitempty"`
	// Format is standard (default), slack or cloudevents.
	Format string `yaml:"format" json:"format,omitempty"`
	// Flows, if set, limits the endpoint to runs of these flows.
	Flows []string `yaml:"flows" json:"flows,omitempty"`
	// RetrySchedule overrides the dispatcher's retry delays (Go durations,
	// e.g. ["5s", "30s", "2m"]) for this endpoint.
	RetrySchedule []string `yaml:"retry_schedule" json:"retry_schedule,omitempty"`
	// Timeout overrides the dispatcher's request timeout (a Go duration).
	Timeout string `yaml:"timeout" json:"timeout,omitempty"`
}

// Endpoint is a checked [EndpointConfig]. Build it with [NewEndpoint].
type Endpoint struct {
	URL    string
	Events []string
	Format string
	Flows  []string
	// Keys are the decoded secrets (the first one is the newest).
	Keys [][]byte
	// RetrySchedule and Timeout are nil/zero for the dispatcher's.
	RetrySchedule []time.Duration
	Timeout       time.Duration
	// Key identifies the endpoint in the delivery log: a hash of URL and
	// format, so it stays the same across restarts.
	Key string
}

// NewEndpoint checks c and returns its Endpoint. lookupEnv resolves
// SecretEnv (nil: secret_env is an error). Errors say what is wrong with
// which field.
func NewEndpoint(c EndpointConfig, lookupEnv func(string) (string, bool)) (*Endpoint, error) {
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		return nil, fmt.Errorf("url is required")
	case err != nil:
		return nil, fmt.Errorf("url %q: %v", redactURL(c.URL), errors.Unwrap(err))
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("url %q: want an http:// or https:// URL", redactURL(c.URL))
	case u.Host == "":
		return nil, fmt.Errorf("url %q: missing host", redactURL(c.URL))
	}
	ep := &Endpoint{URL: c.URL, Format: c.Format, Flows: slices.Clone(c.Flows)}
	if ep.Format == "" {
		ep.Format = FormatStandard
	}
	if ep.Format != FormatStandard && ep.Format != FormatSlack && ep.Format != FormatCloudEvents {
		return nil, fmt.Errorf("format %q: want %s, %s or %s", c.Format, FormatStandard, FormatSlack, FormatCloudEvents)
	}
	ep.Events = slices.Clone(c.Events)
	if len(ep.Events) == 0 {
		ep.Events = slices.Clone(DefaultEvents)
	}
	for _, e := range ep.Events {
		if !slices.Contains(Events, e) {
			return nil, fmt.Errorf("events: unknown event %q (want %s)", e, strings.Join(Events, ", "))
		}
	}
	for _, f := range ep.Flows {
		if strings.TrimSpace(f) == "" {
			return nil, fmt.Errorf("flows: empty flow name")
		}
	}
	secret := c.Secret
	if c.SecretEnv != "" {
		if c.Secret != "" {
			return nil, fmt.Errorf("secret and secret_env: give one, not both")
		}
		v, ok := "", false
		if lookupEnv != nil {
			v, ok = lookupEnv(c.SecretEnv)
		}
		if !ok || strings.TrimSpace(v) == "" {
			return nil, fmt.Errorf("secret_env: environment variable %s is not set", c.SecretEnv)
		}
		secret = v
	}
	if ep.Keys, err = ParseSecrets(secret); err != nil {
		return nil, err
	}
	if ep.Format == FormatStandard && len(ep.Keys) == 0 {
		return nil, fmt.Errorf("secret or secret_env is required for format %s (Standard Webhooks deliveries are signed)", FormatStandard)
	}
	for i, s := range c.RetrySchedule {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("retry_schedule[%d] %q: want a positive duration such as 30s", i, s)
		}
		ep.RetrySchedule = append(ep.RetrySchedule, d)
	}
	if c.Timeout != "" {
		d, err := time.ParseDuration(c.Timeout)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("timeout %q: want a positive duration such as 10s", c.Timeout)
		}
		ep.Timeout = d
	}
	sum := sha256.Sum256([]byte(ep.Format + " " + ep.URL))
	ep.Key = hex.EncodeToString(sum[:8])
	return ep, nil
}

// NewEndpoints checks every config (and the env shorthand, if getenv gives
// PYOCO_WEBHOOK_URL) and returns the endpoints. Errors name the entry:
// "webhooks[1]: …" or "PYOCO_WEBHOOK_URL: …". Two endpoints with the same
// URL and format are an error.
func NewEndpoints(cfgs []EndpointConfig, getenv func(string) string, lookupEnv func(string) (string, bool)) ([]*Endpoint, error) {
	var out []*Endpoint
	seen := map[string]string{}
	add := func(where string, c EndpointConfig) error {
		ep, err := NewEndpoint(c, lookupEnv)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if prev, ok := seen[ep.Key]; ok {
			return fmt.Errorf("%s: url %s (format %s) is already configured by %s", where, redactURL(ep.URL), ep.Format, prev)
		}
		seen[ep.Key] = where
		out = append(out, ep)
		return nil
	}
	for i, c := range cfgs {
		if err := add(fmt.Sprintf("webhooks[%d]", i), c); err != nil {
			return nil, err
		}
	}
	if getenv != nil {
		if c, ok := EnvEndpoint(getenv); ok {
			if err := add("PYOCO_WEBHOOK_URL", c); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// EnvEndpoint returns the endpoint of the PYOCO_WEBHOOK_URL,
// PYOCO_WEBHOOK_SECRET and PYOCO_WEBHOOK_EVENTS (comma- or space-separated)
// shorthand; ok is false without PYOCO_WEBHOOK_URL.
func EnvEndpoint(getenv func(string) string) (c EndpointConfig, ok bool) {
	u := strings.TrimSpace(getenv("PYOCO_WEBHOOK_URL"))
	if u == "" {
		return c, false
	}
	c.URL = u
	c.Secret = getenv("PYOCO_WEBHOOK_SECRET")
	c.Events = strings.FieldsFunc(getenv("PYOCO_WEBHOOK_EVENTS"), func(r rune) bool { return r == ',' || r == ' ' })
	return c, true
}

// wants reports whether the endpoint takes event ev of a run of flow.
func (e *Endpoint) wants(ev, flow string) bool {
	return slices.Contains(e.Events, ev) && (len(e.Flows) == 0 || slices.Contains(e.Flows, flow))
}
