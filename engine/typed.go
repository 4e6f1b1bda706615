package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"
)

// Typed adapts a function that takes its inputs as a struct to a [TaskFunc].
// The resolved inputs are decoded into In through encoding/json (use `json`
// tags for input names). An input of the wrong type, or an input In has no
// field for, fails the attempt with an [*InputError] naming the input, e.g.
// `input "duration" of sleep: got number, want string`.
func Typed[In any](name string, fn func(ctx context.Context, tc *TaskContext, in In) (any, error)) TaskFunc {
	// No inputs decode into a plain struct as its zero value: skip the work.
	t := reflect.TypeFor[In]()
	um := reflect.TypeFor[json.Unmarshaler]()
	zeroIfEmpty := t.Kind() == reflect.Struct && !t.Implements(um) && !reflect.PointerTo(t).Implements(um)
	return func(ctx context.Context, tc *TaskContext, inputs map[string]any) (any, error) {
		var in In
		if len(inputs) > 0 || !zeroIfEmpty {
			if err := DecodeInputs(name, inputs, &in); err != nil {
				return nil, err
			}
		}
		return fn(ctx, tc, in)
	}
}

// DecodeInputs decodes resolved inputs into dst (a pointer to a struct) the
// way [Typed] does. task names the task in errors.
func DecodeInputs(task string, inputs map[string]any, dst any) error {
	raw, err := json.Marshal(inputs)
	if err != nil {
		return &InputError{Task: task, Msg: fmt.Sprintf("not JSON-serialisable: %v", err)}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return &InputError{Task: task, Input: te.Field, Msg: fmt.Sprintf("got %s, want %s", te.Value, jsonTypeName(te.Type.String()))}
		}
		var de *DurationError
		if errors.As(err, &de) {
			return &InputError{Task: task, Input: badInput(dst, inputs), Msg: de.Error()}
		}
		if msg, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return &InputError{Task: task, Input: strings.Trim(msg, `"`), Msg: "unknown input"}
		}
		return &InputError{Task: task, Msg: err.Error()}
	}
	return nil
}

// badInput finds the input whose value does not decode into its field of
// dst (encoding/json does not say for errors from UnmarshalJSON methods).
func badInput(dst any, inputs map[string]any) string {
	rt := reflect.TypeOf(dst)
	if rt.Kind() != reflect.Pointer || rt.Elem().Kind() != reflect.Struct {
		return ""
	}
	rt = rt.Elem()
	keys := make([]string, 0, len(inputs))
	for k := range inputs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for i := range rt.NumField() {
			f := rt.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" {
				name = f.Name
			}
			if !strings.EqualFold(name, k) {
				continue
			}
			raw, err := json.Marshal(inputs[k])
			if err != nil || json.Unmarshal(raw, reflect.New(f.Type).Interface()) != nil {
				return k
			}
		}
	}
	return ""
}

func jsonTypeName(goType string) string {
	switch {
	case goType == "string":
		return "string"
	case goType == "bool":
		return "boolean"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "integer"
	case strings.HasPrefix(goType, "float"):
		return "number"
	case strings.HasPrefix(goType, "map["), strings.HasPrefix(goType, "struct"):
		return "object"
	case strings.HasPrefix(goType, "[]"):
		return "array"
	case goType == "engine.Duration":
		return "duration"
	}
	return goType
}

// Duration is a task input holding a duration: a Go duration string such as
// "1.5s" or "200ms", or a number of seconds.
type Duration time.Duration

// DurationError is a duration input that cannot be parsed.
type DurationError struct{ Value string }

func (e *DurationError) Error() string {
	return fmt.Sprintf("bad duration %s (want a string such as \"1s\", \"200ms\", or a number of seconds)", e.Value)
}

// UnmarshalJSON accepts "1s" or 1.5 (seconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil || v < 0 {
			return &DurationError{Value: string(b)}
		}
		*d = Duration(v)
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil || f < 0 {
		return &DurationError{Value: string(b)}
	}
	*d = Duration(f * float64(time.Second))
	return nil
}

// MarshalJSON writes the duration as a string such as "1.5s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}
