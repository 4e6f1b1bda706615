package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/pyoco/pyoco/engine"
)

// newRegistry returns the registry of every task this binary can run: the
// built-in tasks, the Go plug-ins linked in and the exec plug-ins in
// PYOCO_PLUGIN_PATH. Plug-in problems are printed on stderr as warnings;
// with strict they end the command (exit 2).
func newRegistry(ctx context.Context, e *env, strict bool) (*engine.Registry, error) {
	return registryWithWarnings(ctx, e, strict)
}

// loadFlow reads and validates a flow file. Errors are printed one per line
// (file:line:col: message) and returned as a usage exit.
func loadFlow(e *env, path string, reg *engine.Registry) (*engine.Flow, error) {
	f, err := engine.LoadFlowFile(path, reg)
	if err == nil {
		return f, nil
	}
	var les engine.LoadErrors
	var le *engine.LoadError
	switch {
	case errors.As(err, &les):
		for _, l := range les {
			fmt.Fprintln(e.stderr, "pyoco: "+l.Error())
		}
	case errors.As(err, &le):
		fmt.Fprintln(e.stderr, "pyoco: "+le.Error())
	default:
		fmt.Fprintln(e.stderr, "pyoco: "+err.Error())
	}
	return nil, exitCode(ExitUsage)
}

// parseParams turns k=v flags into params. A value that is valid JSON
// (number, true, [1,2], {"a":1}, "quoted") keeps its JSON type; anything
// else is a string. Dotted keys are not split.
func parseParams(kvs []string) (map[string]any, error) {
	out := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageErr("--param %q: want key=value", kv)
		}
		var j any
		if err := json.Unmarshal([]byte(v), &j); err == nil {
			out[k] = j
		} else {
			out[k] = v
		}
	}
	return out, nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
