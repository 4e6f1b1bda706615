package builtin

import (
	"fmt"
	"unicode/utf8"

	"github.com/pyoco/pyoco/engine"
)

// outputCap is the most bytes of a shell task's stdout or an http task's
// response body kept in the task's output.
const outputCap = 64 << 10

// truncatedMarker ends a text output that was cut at [outputCap].
const truncatedMarker = "\n[output truncated]"

// Category values of the built-in tasks.
const (
	categorySystem  = "system"
	categoryNetwork = "network"
	categoryControl = "control"
	categoryDebug   = "debug"
)

// Register adds the built-in tasks (shell, http, sleep, log, fail, noop) to
// r with Plugin [engine.BuiltinPlugin]. It returns the first error from
// [engine.Registry.Add], e.g. one wrapping [engine.ErrDuplicateTask] when a
// built-in name is already taken; tasks added before the error stay added.
func Register(r *engine.Registry) error {
	for _, def := range []engine.TaskDef{shellDef(), httpDef(), sleepDef(), logDef(), failDef(), noopDef()} {
		def.Plugin = engine.BuiltinPlugin
		if err := r.Add(def); err != nil {
			return fmt.Errorf("register built-in tasks: %w", err)
		}
	}
	return nil
}

// cappedBuffer keeps the first outputCap bytes written to it and remembers
// whether more were offered. It never fails a write, so it can sit behind an
// io.MultiWriter without cutting off the other writers. Not safe for
// concurrent use.
type cappedBuffer struct {
	buf       []byte
	truncated bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	room := outputCap - len(b.buf)
	if len(p) > room {
		b.truncated = true
		b.buf = append(b.buf, p[:max(room, 0)]...)
	} else {
		b.buf = append(b.buf, p...)
	}
	return len(p), nil
}

// String returns the kept bytes, followed by truncatedMarker if anything was
// dropped. A rune cut in half at the cap is dropped whole.
func (b *cappedBuffer) String() string {
	if !b.truncated {
		return string(b.buf)
	}
	return string(trimPartialRune(b.buf)) + truncatedMarker
}

// trimPartialRune drops an incomplete UTF-8 sequence at the end of p, so
// that cutting text at a byte limit does not leave a broken rune behind.
func trimPartialRune(p []byte) []byte {
	for i := 1; i <= utf8.UTFMax && i <= len(p); i++ {
		c := p[len(p)-i]
		if !utf8.RuneStart(c) {
			continue
		}
		if !utf8.FullRune(p[len(p)-i:]) {
			return p[:len(p)-i]
		}
		break
	}
	return p
}

// required returns an *engine.InputError for a missing required input.
func required(task, input string) error {
	return &engine.InputError{Task: task, Input: input, Msg: "required input is missing"}
}
