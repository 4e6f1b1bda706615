package webhooks_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/webhooks"
)

func TestNewEndpointErrors(t *testing.T) {
	t.Parallel()
	sec := "whsec_" + strings.Repeat("A", 44) // 33 bytes
	for _, tc := range []struct {
		name string
		cfg  webhooks.EndpointConfig
		want string
	}{
		{"no url", webhooks.EndpointConfig{Secret: sec}, "url is required"},
		{"bad scheme", webhooks.EndpointConfig{URL: "ftp://x/y", Secret: sec}, "want an http:// or https:// URL"},
		{"no host", webhooks.EndpointConfig{URL: "http:///y", Secret: sec}, "missing host"},
		{"unparsable url", webhooks.EndpointConfig{URL: "http://[::1", Secret: sec}, "url"},
		{"unknown event", webhooks.EndpointConfig{URL: "http://x", Secret: sec, Events: []string{"run.started"}}, `unknown event "run.started"`},
		{"unknown format", webhooks.EndpointConfig{URL: "http://x", Secret: sec, Format: "teams"}, `format "teams"`},
		{"secret prefix", webhooks.EndpointConfig{URL: "http://x", Secret: "abc"}, `must start with "whsec_"`},
		{"secret base64", webhooks.EndpointConfig{URL: "http://x", Secret: "whsec_!!!"}, "not standard base64"},
		{"secret short", webhooks.EndpointConfig{URL: "http://x", Secret: "whsec_c2hvcnQ="}, "key is 5 bytes"},
		{"second secret bad", webhooks.EndpointConfig{URL: "http://x", Secret: sec + " whsec_x"}, "secret 2"},
		{"no secret", webhooks.EndpointConfig{URL: "http://x"}, "secret or secret_env is required"},
		{"both secrets", webhooks.EndpointConfig{URL: "http://x", Secret: sec, SecretEnv: "S"}, "give one, not both"},
		{"secret env unset", webhooks.EndpointConfig{URL: "http://x", SecretEnv: "NOPE"}, "NOPE is not set"},
		{"schedule", webhooks.EndpointConfig{URL: "http://x", Secret: sec, RetrySchedule: []string{"1s", "soon"}}, "retry_schedule[1]"},
		{"timeout", webhooks.EndpointConfig{URL: "http://x", Secret: sec, Timeout: "-1s"}, "timeout"},
		{"empty flow", webhooks.EndpointConfig{URL: "http://x", Secret: sec, Flows: []string{" "}}, "empty flow name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := webhooks.NewEndpoint(tc.cfg, func(string) (string, bool) { return "", false })
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestNewEndpoints(t *testing.T) {
	t.Parallel()
	sec := "whsec_" + strings.Repeat("A", 44)
	env := map[string]string{"PYOCO_WEBHOOK_URL": "https://hooks.example.org/x", "PYOCO_WEBHOOK_SECRET": sec,
		"PYOCO_WEBHOOK_EVENTS": "run.failed, run.cancelled", "MY_SECRET": sec}
	getenv := func(k string) string { return env[k] }
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	eps, err := webhooks.NewEndpoints([]webhooks.EndpointConfig{
		{URL: "https://a.example.org/hook", SecretEnv: "MY_SECRET", Flows: []string{"nightly_etl"}},
		{URL: "https://hooks.slack.com/services/T/B/X", Format: "slack", Events: []string{"run.failed"}, RetrySchedule: []string{"1s"}, Timeout: "3s"},
	}, getenv, lookup)
	require.NoError(t, err)
	require.Len(t, eps, 3)
	require.Equal(t, webhooks.DefaultEvents, eps[0].Events)
	require.Len(t, eps[0].Keys, 1)
	require.Equal(t, []time.Duration{time.Second}, eps[1].RetrySchedule)
	require.Equal(t, 3*time.Second, eps[1].Timeout)
	require.Equal(t, []string{"run.failed", "run.cancelled"}, eps[2].Events)
	require.NotEqual(t, eps[0].Key, eps[2].Key)

	_, err = webhooks.NewEndpoints([]webhooks.EndpointConfig{{URL: "https://a/x", Secret: sec}, {URL: "https://a/x", Secret: sec}}, nil, nil)
	require.ErrorContains(t, err, "webhooks[1]: url https://a/x (format standard) is already configured by webhooks[0]")
	env["PYOCO_WEBHOOK_EVENTS"] = "run.done"
	_, err = webhooks.NewEndpoints(nil, getenv, lookup)
	require.ErrorContains(t, err, `PYOCO_WEBHOOK_URL: events: unknown event "run.done"`)
}

func TestPayloadIsCut(t *testing.T) {
	t.Parallel()
	run := webhooks.SampleRun(time.Now())
	big := strings.Repeat("x", 30000)
	out, _ := json.Marshal(map[string]string{"blob": big})
	run.Tasks["extract"].Output = out
	run.Tasks["load"].Error = big
	run.Error = big
	for i := range 200 {
		name := "task_" + strings.Repeat("t", 10) + string(rune('a'+i%26)) + string(rune('a'+i/26))
		run.Tasks[name] = &engine.TaskState{Name: name, Use: "shell", Status: engine.TaskFailed, Error: big[:900]}
	}
	b, err := webhooks.StandardBody(webhooks.EventRunFailed, time.Now(), run)
	require.NoError(t, err)
	require.Less(t, len(b), webhooks.MaxPayloadBytes)
	var p struct {
		Type string         `json:"type"`
		Data map[string]any `json:"data"`
	}
	require.NoError(t, json.Unmarshal(b, &p))
	require.Equal(t, "run.failed", p.Type)
	require.Equal(t, true, p.Data["truncated"])
	require.Contains(t, p.Data["error"], "[truncated]")

	small, err := webhooks.StandardBody(webhooks.EventRunFailed, time.Now(), webhooks.SampleRun(time.Now()))
	require.NoError(t, err)
	require.NotContains(t, string(small), `"truncated"`)
	require.Contains(t, string(small), `"task_summary"`)
}
