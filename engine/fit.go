package engine

import (
	"fmt"
	"math"
	"strings"
)

// What `pyoco check` can know of an input's type before the run: the JSON
// kind of a literal, of a reference's known value, or text.

// staticKind is the JSON type name (as in [Param].Type) that v, a task input
// value as loaded, has when the task runs, and why, when that can be known
// without running: a literal's own type; text for a string with references
// inside a longer text (they interpolate); a string for a whole $env.NAME
// reference; the default's type for a whole $ctx.params.NAME reference
// (params given at run time may change it). ok is false when it is unknown
// ($node outputs, params without a default).
func staticKind(v any, defaults map[string]any) (kind, why string, ok bool) {
	switch t := v.(type) {
	case nil:
		return "null", "null", true
	case bool:
		return "boolean", "a boolean", true
	case int64, int, uint64:
		return "integer", "an integer", true
	case float64:
		if t == math.Trunc(t) && math.Abs(t) < 1<<53 {
			return "integer", "an integer", true
		}
		return "number", "a number", true
	case map[string]any:
		return "object", "an object", true
	case []any:
		return "array", "an array", true
	case string:
		spans := scanRefs(t)
		if len(spans) == 0 {
			return "string", "text", true
		}
		for _, sp := range spans {
			if sp.err != nil {
				return "", "", false // reported as a bad reference
			}
		}
		if len(spans) > 1 || spans[0].start != 0 || spans[0].end != len(t) {
			return "string", fmt.Sprintf("text (%q interpolates its references into a string)", t), true
		}
		r := spans[0].ref
		switch r.Kind {
		case RefEnv:
			return "string", fmt.Sprintf("text (%s: environment variables are strings)", r.Text), true
		case RefParams:
			d, ok := defaults[r.Name]
			if !ok || len(r.Path) > 0 {
				return "", "", false
			}
			if _, isStr := d.(string); isStr {
				// A string default may be replaced by any JSON value at run
				// time, but then `check` would only guess.
				return "string", fmt.Sprintf("text (%s, whose default is a string)", r.Text), true
			}
			k, w, ok := staticKind(d, nil)
			if !ok {
				return "", "", false
			}
			return k, fmt.Sprintf("%s (%s, by its default)", w, r.Text), true
		}
	}
	return "", "", false
}

// kindFits reports whether a value of JSON type kind decodes into an input
// declared with type want (encoding/json's rules, as [Typed] applies them).
// Unknown declared types, any and null fit everything.
func kindFits(want, kind string) bool {
	switch want {
	case "string":
		return kind == "string" || kind == "null"
	case "number":
		return kind == "number" || kind == "integer" || kind == "null"
	case "integer":
		return kind == "integer" || kind == "null"
	case "boolean":
		return kind == "boolean" || kind == "null"
	case "object":
		return kind == "object" || kind == "null"
	case "array":
		return kind == "array" || kind == "null"
	case "duration":
		return kind == "string" || kind == "number" || kind == "integer" || kind == "null"
	}
	return true
}

// typeProblem returns why input value v of a task cannot fit p (" is …"
// or ": member … is …", to follow the input's name), or "".
func typeProblem(p Param, v any, defaults map[string]any) string {
	if kind, why, ok := staticKind(v, defaults); ok && !kindFits(p.Type, kind) {
		return fmt.Sprintf(" is %s, but it wants %s", why, article(p.Type))
	}
	if p.Items == "" {
		return ""
	}
	var members []struct {
		key string
		v   any
	}
	switch t := v.(type) {
	case map[string]any:
		if p.Type != "object" {
			return ""
		}
		for _, k := range sortedKeys(t) {
			members = append(members, struct {
				key string
				v   any
			}{k, t[k]})
		}
	case []any:
		if p.Type != "array" {
			return ""
		}
		for i, x := range t {
			members = append(members, struct {
				key string
				v   any
			}{fmt.Sprint(i), x})
		}
	}
	for _, m := range members {
		if kind, why, ok := staticKind(m.v, defaults); ok && kind != "null" && !kindFits(p.Items, kind) {
			return fmt.Sprintf(": member %q is %s, but each member must be %s", m.key, why, article(p.Items))
		}
	}
	return ""
}

// article is a type name with "a" or "an".
func article(typ string) string {
	if typ == "" {
		return "a value"
	}
	if strings.ContainsRune("aeiou", rune(typ[0])) {
		return "an " + typ
	}
	return "a " + typ
}
