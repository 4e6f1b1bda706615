package builtin_test

import (
	"context"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/builtin"
)

func TestRegister(t *testing.T) {
	t.Parallel()

	reg := engine.NewRegistry()
	require.NoError(t, builtin.Register(reg))

	required := map[string][]string{
		"shell": {"cmd"},
		"http":  {"url"},
		"sleep": {"duration"},
		"log":   {"message"},
		"fail":  nil,
		"noop":  nil,
	}
	var names []string
	for _, def := range reg.List() {
		names = append(names, def.Name)
		t.Run(def.Name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, engine.BuiltinPlugin, def.Plugin)
			require.NotEmpty(t, def.Summary)
			require.NotEmpty(t, def.Tags)
			require.NotEmpty(t, def.Category)
			require.NotNil(t, def.Run)
			var req []string
			for _, p := range append(def.Inputs, def.Outputs...) {
				require.NotEmpty(t, p.Name)
				require.NotEmpty(t, p.Type, "param %s", p.Name)
				require.NotEmpty(t, p.Description, "param %s", p.Name)
			}
			for _, p := range def.Inputs {
				if p.Required {
					req = append(req, p.Name)
				}
			}
			require.Equal(t, required[def.Name], req)
		})
	}
	require.Equal(t, []string{"fail", "http", "log", "noop", "shell", "sleep"}, names)

	require.ErrorIs(t, builtin.Register(reg), engine.ErrDuplicateTask)
}

// TestInputErrors checks that a wrong or missing input fails every task
// with an *engine.InputError naming it.
func TestInputErrors(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name   string
		use    string
		inputs map[string]any
		input  string // the input the error must name
	}{
		{"sleep duration bool", "sleep", map[string]any{"duration": true}, "duration"},
		{"http timeout bad", "http", map[string]any{"url": "http://127.0.0.1:1", "timeout": "soon"}, "timeout"},
		{"sleep missing duration", "sleep", nil, "duration"},
		{"sleep unknown input", "sleep", map[string]any{"duration": "1s", "for": "1s"}, "for"},
		{"shell cmd number", "shell", map[string]any{"cmd": 1}, "cmd"},
		{"shell missing cmd", "shell", map[string]any{"dir": "/"}, "cmd"},
		{"shell bad env name", "shell", map[string]any{"cmd": "true", "env": map[string]any{"A=B": "c"}}, "env"},
		{"shell env list", "shell", map[string]any{"cmd": "true", "env": []any{"A=B"}}, "env"},
		{"http url number", "http", map[string]any{"url": 1}, "url"},
		{"http missing url", "http", map[string]any{"method": "GET"}, "url"},
		{"http headers not strings", "http", map[string]any{"url": "http://127.0.0.1:1", "headers": map[string]any{"X-N": 1}}, "headers"},
		{"http allow_status strings", "http", map[string]any{"url": "http://127.0.0.1:1", "allow_status": []any{"404"}}, "allow_status"},
		{"http bad url", "http", map[string]any{"url": "http://[::1"}, "url"},
		{"log missing message", "log", map[string]any{"level": "info"}, "message"},
		{"log null message", "log", map[string]any{"message": nil}, "message"},
		{"log bad level", "log", map[string]any{"message": "m", "level": "loud"}, "level"},
		{"log level number", "log", map[string]any{"message": "m", "level": 3}, "level"},
		{"fail message bool", "fail", map[string]any{"message": false}, "message"},
		{"noop any input", "noop", map[string]any{"x": 1}, "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			out, err := b.run(t, t.Context(), tt.use, tt.inputs)
			require.Nil(t, out)
			requireInputError(t, err, tt.use, tt.input)
		})
	}
}

func TestSleep(t *testing.T) {
	t.Parallel()

	t.Run("completes", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name     string
			duration any
			want     string
		}{
			{"string", "20ms", "20ms"},
			{"seconds", 0.02, "20ms"},
			{"zero", "0s", "0s"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				b := setup(t)
				start := time.Now()
				out, err := b.run(t, t.Context(), "sleep", map[string]any{"duration": tt.duration})
				require.NoError(t, err)
				require.Equal(t, map[string]any{"slept": tt.want}, out)
				d, _ := time.ParseDuration(tt.want)
				require.GreaterOrEqual(t, time.Since(start), d)
			})
		}
	})

	t.Run("fake time", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			b := setup(t)
			start := time.Now()
			out, err := b.run(t, t.Context(), "sleep", map[string]any{"duration": "1h"})
			require.NoError(t, err)
			require.Equal(t, map[string]any{"slept": "1h0m0s"}, out)
			require.Equal(t, time.Hour, time.Since(start))
		})
	})

	t.Run("interrupted", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name  string
			ctx   func(t *testing.T) context.Context
			cause error
		}{
			{"cancelled", func(t *testing.T) context.Context {
				ctx, cancel := context.WithCancelCause(t.Context())
				cancel(errTestCancel)
				return ctx
			}, errTestCancel},
			{"timed out", func(t *testing.T) context.Context {
				ctx, cancel := context.WithTimeoutCause(t.Context(), 20*time.Millisecond, engine.ErrTaskTimeout)
				t.Cleanup(cancel)
				return ctx
			}, engine.ErrTaskTimeout},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				b := setup(t)
				start := time.Now()
				out, err := b.run(t, tt.ctx(t), "sleep", map[string]any{"duration": "1m"})
				require.Nil(t, out)
				require.ErrorIs(t, err, tt.cause)
				require.Less(t, time.Since(start), waitTimeout)
			})
		}
	})

	t.Run("negative", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		_, err := b.run(t, t.Context(), "sleep", map[string]any{"duration": "-1s"})
		var ie *engine.InputError
		require.ErrorAs(t, err, &ie)
	})
}

func TestLog(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name      string
		inputs    map[string]any
		wantOut   any // the message after the trip through JSON that inputs take
		wantLevel slog.Level
		wantMsg   string
	}{
		{"string default level", map[string]any{"message": "hello"}, "hello", slog.LevelInfo, "hello"},
		{"debug", map[string]any{"message": "d", "level": "debug"}, "d", slog.LevelDebug, "d"},
		{"warn number", map[string]any{"message": 42, "level": "warn"}, float64(42), slog.LevelWarn, "42"},
		{
			"error object", map[string]any{"message": map[string]any{"b": nil, "a": []any{1, "x"}}, "level": "error"},
			map[string]any{"a": []any{float64(1), "x"}, "b": nil}, slog.LevelError, `{"a":[1,"x"],"b":null}`,
		},
		{"bool", map[string]any{"message": true, "level": "info"}, true, slog.LevelInfo, "true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			ctx := context.WithValue(t.Context(), ctxKey{}, tt.name)
			out, err := b.run(t, ctx, "log", tt.inputs)
			require.NoError(t, err)
			require.Equal(t, tt.wantOut, out)
			require.Equal(t, []logRecord{{Level: tt.wantLevel, Message: tt.wantMsg, CtxVal: tt.name}}, b.logs.Records())
		})
	}
}

func TestFail(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		inputs  map[string]any
		wantErr string
	}{
		{"default", nil, "failed on purpose"},
		{"empty message", map[string]any{"message": ""}, "failed on purpose"},
		{"message", map[string]any{"message": "boom"}, "boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			out, err := b.run(t, t.Context(), "fail", tt.inputs)
			require.Nil(t, out)
			require.EqualError(t, err, tt.wantErr)
		})
	}
}

func TestNoop(t *testing.T) {
	t.Parallel()

	for _, inputs := range []map[string]any{nil, {}} {
		b := setup(t)
		out, err := b.run(t, t.Context(), "noop", inputs)
		require.NoError(t, err)
		require.Nil(t, out)
		require.Empty(t, b.stdout.Lines())
		require.Empty(t, b.logs.Records())
	}
}
