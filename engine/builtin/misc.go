package builtin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/pyoco/pyoco/engine"
)

type sleepInputs struct {
	Duration *engine.Duration `json:"duration"`
}

func sleepDef() engine.TaskDef {
	return engine.TaskDef{
		Name:     "sleep",
		Summary:  "Wait for a duration; stops early when the task is cancelled or times out.",
		Tags:     []string{"sleep", "wait", "delay"},
		Category: categoryControl,
		Inputs: []engine.Param{
			{Name: "duration", Type: "duration", Required: true, Description: "How long to wait, e.g. \"200ms\", \"1m\", or a number of seconds."},
		},
		Outputs: []engine.Param{
			{Name: "slept", Type: "duration", Description: "The duration waited, e.g. \"200ms\"."},
		},
		StrictInputs: true,
		Run:          engine.Typed("sleep", runSleep),
	}
}

func runSleep(ctx context.Context, _ *engine.TaskContext, in sleepInputs) (any, error) {
	if in.Duration == nil {
		return nil, required("sleep", "duration")
	}
	d := time.Duration(*in.Duration)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return map[string]any{"slept": d.String()}, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("sleep %s interrupted: %w", d, context.Cause(ctx))
	}
}

type logInputs struct {
	Message any    `json:"message"`
	Level   string `json:"level"`
}

func logDef() engine.TaskDef {
	return engine.TaskDef{
		Name:     "log",
		Summary:  "Write a message to the run's logs and return it.",
		Tags:     []string{"log", "message", "debug"},
		Category: categoryDebug,
		Inputs: []engine.Param{
			{Name: "message", Type: "any", Required: true, Description: "The message; a value other than a string is logged as compact JSON."},
			{Name: "level", Type: "string", Description: "debug, info, warn or error. Defaults to info."},
		},
		Outputs: []engine.Param{
			{Name: "message", Type: "any", Description: "The message input, unchanged (the whole output is the message)."},
		},
		StrictInputs: true,
		Run:          engine.Typed("log", runLog),
	}
}

func runLog(ctx context.Context, tc *engine.TaskContext, in logInputs) (any, error) {
	if in.Message == nil {
		return nil, required("log", "message")
	}
	var level slog.Level
	switch in.Level {
	case "", "info":
		level = slog.LevelInfo
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		return nil, &engine.InputError{Task: "log", Input: "level", Msg: fmt.Sprintf("got %q, want debug, info, warn or error", in.Level)}
	}
	text, ok := in.Message.(string)
	if !ok {
		b, err := json.Marshal(in.Message)
		if err != nil {
			return nil, &engine.InputError{Task: "log", Input: "message", Msg: err.Error()}
		}
		text = string(b)
	}
	if tc.Logger != nil {
		tc.Logger.Log(ctx, level, text)
	}
	return in.Message, nil
}

type failInputs struct {
	Message string `json:"message"`
}

func failDef() engine.TaskDef {
	return engine.TaskDef{
		Name:     "fail",
		Summary:  "Always fail, with a message; for tests and demos.",
		Tags:     []string{"fail", "test", "demo"},
		Category: categoryDebug,
		Inputs: []engine.Param{
			{Name: "message", Type: "string", Description: "The error message. Defaults to \"failed on purpose\"."},
		},
		StrictInputs: true,
		Run: engine.Typed("fail", func(_ context.Context, _ *engine.TaskContext, in failInputs) (any, error) {
			if in.Message == "" {
				in.Message = "failed on purpose"
			}
			return nil, errors.New(in.Message)
		}),
	}
}

func noopDef() engine.TaskDef {
	return engine.TaskDef{
		Name:         "noop",
		Summary:      "Do nothing and succeed; a placeholder or join point in a graph.",
		Tags:         []string{"noop", "placeholder"},
		Category:     categoryControl,
		StrictInputs: true,
		Run: engine.Typed("noop", func(context.Context, *engine.TaskContext, struct{}) (any, error) {
			return nil, nil
		}),
	}
}
