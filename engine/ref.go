package engine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Reference kinds, the values of [Ref.Kind].
const (
	RefNode   = "node"
	RefParams = "params"
	RefEnv    = "env"
	// RefItem is `$ctx.item[.<path>]`, the current item of a foreach task.
	RefItem = "item"
	// RefIndex is `$ctx.index`, the current index of a foreach task (from 0).
	RefIndex = "index"
)

// Ref is one reference found in a task input (SPEC §2): `$node.<task>.output[.<path>]`,
// `$ctx.params.<path>`, `$env.<NAME>`, or the same inside `${…}`.
type Ref struct {
	// Kind is [RefNode], [RefParams] or [RefEnv].
	Kind string
	// Name is the task (node), the top-level param (params) or the variable (env).
	Name string
	// Path is what follows: the keys and indexes below the task's output or
	// below the param. Empty for env.
	Path []string
	// Text is the reference as written, e.g. "${node.chop.output.items.0}".
	Text string
}

// RefError is a reference that is malformed or cannot be resolved.
type RefError struct {
	// Text is the reference as written.
	Text string
	// Reason says what is wrong, e.g. `no key "x"`.
	Reason string
	// Malformed is true when the text is not a valid reference at all.
	Malformed bool
}

// Error formats e as "unresolved reference <text>: <reason>" (or "malformed reference …").
func (e *RefError) Error() string {
	if e.Malformed {
		return fmt.Sprintf("malformed reference %s: %s", e.Text, e.Reason)
	}
	return fmt.Sprintf("unresolved reference %s: %s", e.Text, e.Reason)
}

// RefScope is what references resolve against when a task attempt starts.
type RefScope struct {
	// Outputs are the outputs of finished tasks, by task name.
	Outputs map[string]any
	// Params are the run's params (flow defaults merged with run params).
	Params map[string]any
	// Env looks up `$env.<NAME>` references. nil means [os.LookupEnv].
	Env func(string) (string, bool)
	// Iteration is set in an iteration of a foreach task: the item and
	// index `$ctx.item` and `$ctx.index` give.
	Iteration *Iteration
}

// Iteration is one item of a foreach task.
type Iteration struct {
	Index int
	Item  any
}

// refSpan is one reference candidate at s[start:end]: either a well-formed
// ref or a malformed one (err set).
type refSpan struct {
	start, end int
	ref        Ref
	err        *RefError
}

// refPrefixes are the texts after '$' or '${' that make a reference. Other
// `$…` text is not ours (shell `$HOME`, `${HOME}`, `$1`) and is left alone.
var refPrefixes = []struct{ prefix, kind string }{
	{"node.", RefNode},
	{"ctx.params.", RefParams},
	{"env.", RefEnv},
	{"ctx.item", RefItem},
	{"ctx.index", RefIndex},
}

func isRefSegByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// scanRefs finds every reference candidate in s, in order.
func scanRefs(s string) []refSpan {
	var out []refSpan
	for i := 0; i < len(s); i++ {
		if s[i] != '$' {
			continue
		}
		braced := i+1 < len(s) && s[i+1] == '{'
		body := i + 1
		if braced {
			body = i + 2
		}
		kind, prefix := "", ""
		for _, p := range refPrefixes {
			if strings.HasPrefix(s[body:], p.prefix) {
				kind, prefix = p.kind, p.prefix
				break
			}
		}
		if kind == RefItem || kind == RefIndex {
			// A whole word: `$ctx.items` is not ours. An optional path follows a '.'.
			next := body + len(prefix)
			switch {
			case next == len(s):
			case s[next] == '.' && next+1 < len(s) && isRefSegByte(s[next+1]):
				prefix += "."
			case isRefSegByte(s[next]):
				kind = ""
			}
		}
		if kind == "" {
			continue
		}
		var segs []string
		end := 0
		if braced {
			closeAt := strings.IndexByte(s[body:], '}')
			if closeAt < 0 {
				out = append(out, refSpan{start: i, end: len(s), err: &RefError{Text: s[i:], Reason: "missing '}'", Malformed: true}})
				return out
			}
			end = body + closeAt + 1
			rest := s[body+len(prefix) : body+closeAt]
			switch {
			case (kind == RefItem || kind == RefIndex) && !strings.HasSuffix(prefix, "."):
				if rest != "" {
					segs = []string{""} // `${ctx.itemx}`: malformed
				}
			default:
				segs = strings.Split(rest, ".")
			}
		} else {
			// Bare form: segments of [A-Za-z0-9_-] joined by '.'; a '.' not
			// followed by a segment (end of a sentence) is not part of it.
			j := body + len(prefix)
			for {
				k := j
				for k < len(s) && isRefSegByte(s[k]) {
					k++
				}
				if k == j {
					break
				}
				segs = append(segs, s[j:k])
				end = k
				if k+1 < len(s) && s[k] == '.' && isRefSegByte(s[k+1]) {
					j = k + 1
					continue
				}
				break
			}
			if end == 0 {
				end = body + len(prefix)
				if kind == RefItem || kind == RefIndex {
					end = body + len(strings.TrimSuffix(prefix, "."))
				}
			}
		}
		text := s[i:end]
		sp := refSpan{start: i, end: end}
		sp.ref, sp.err = makeRef(kind, segs, text)
		out = append(out, sp)
		i = end - 1
	}
	return out
}

// makeRef checks the segments of a reference of kind.
func makeRef(kind string, segs []string, text string) (Ref, *RefError) {
	bad := func(want string) (Ref, *RefError) {
		return Ref{}, &RefError{Text: text, Reason: "want " + want, Malformed: true}
	}
	switch kind {
	case RefItem:
		if slices.Contains(segs, "") {
			return bad("$ctx.item[.<path>]")
		}
		return Ref{Kind: RefItem, Name: "item", Path: pathOrNil(segs), Text: text}, nil
	case RefIndex:
		if len(segs) > 0 {
			return bad("$ctx.index")
		}
		return Ref{Kind: RefIndex, Name: "index", Text: text}, nil
	}
	if len(segs) == 0 || slices.Contains(segs, "") {
		switch kind {
		case RefNode:
			return bad("$node.<task>.output[.<path>]")
		case RefParams:
			return bad("$ctx.params.<name>[.<path>]")
		default:
			return bad("$env.<NAME>")
		}
	}
	switch kind {
	case RefNode:
		// Task names may contain '.', so the task is everything before the
		// first "output" segment.
		i := slices.Index(segs, "output")
		if i < 1 {
			return bad("$node.<task>.output[.<path>]")
		}
		return Ref{Kind: RefNode, Name: strings.Join(segs[:i], "."), Path: pathOrNil(segs[i+1:]), Text: text}, nil
	case RefParams:
		return Ref{Kind: RefParams, Name: segs[0], Path: pathOrNil(segs[1:]), Text: text}, nil
	default:
		if len(segs) != 1 {
			return bad("$env.<NAME>")
		}
		return Ref{Kind: RefEnv, Name: segs[0], Text: text}, nil
	}
}

func pathOrNil(p []string) []string {
	if len(p) == 0 {
		return nil
	}
	return p
}

// RefsIn returns every well-formed reference in v, walking nested maps and
// slices (map keys in sorted order). Malformed references are left out;
// [ResolveInputs] reports them.
func RefsIn(v any) []Ref {
	var out []Ref
	walkStrings(v, func(s string) {
		for _, sp := range scanRefs(s) {
			if sp.err == nil {
				out = append(out, sp.ref)
			}
		}
	})
	return out
}

func walkStrings(v any, fn func(string)) {
	switch v := v.(type) {
	case string:
		fn(v)
	case map[string]any:
		for _, k := range sortedKeys(v) {
			walkStrings(v[k], fn)
		}
	case []any:
		for _, e := range v {
			walkStrings(e, fn)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// ResolveInputs returns a copy of inputs with every reference resolved
// against s, walking nested maps and slices. A string that is exactly one
// reference becomes the referenced value, keeping its JSON type; references
// inside a longer string are replaced by their text (strings as they are,
// other values as compact JSON). Other `$…` text is left alone. Paths walk
// maps by key and arrays by index (`$node.a.output.items.0`).
//
// The first reference that cannot be resolved, in input-name order, is
// returned as an error wrapping a [*RefError], such as
// `input "note": unresolved reference $node.chop.output.x: no key "x"`.
// inputs is not modified.
func ResolveInputs(inputs map[string]any, s *RefScope) (map[string]any, error) {
	if s == nil {
		s = &RefScope{}
	}
	out := make(map[string]any, len(inputs))
	for _, k := range sortedKeys(inputs) {
		v, err := s.resolveValue(inputs[k])
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", k, err)
		}
		out[k] = v
	}
	return out, nil
}

func (s *RefScope) resolveValue(v any) (any, error) {
	switch v := v.(type) {
	case string:
		return s.resolveString(v)
	case map[string]any:
		out := make(map[string]any, len(v))
		for _, k := range sortedKeys(v) {
			r, err := s.resolveValue(v[k])
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		return out, nil
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			r, err := s.resolveValue(e)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	}
	return v, nil
}

func (s *RefScope) resolveString(str string) (any, error) {
	spans := scanRefs(str)
	if len(spans) == 0 {
		return str, nil
	}
	for _, sp := range spans {
		if sp.err != nil {
			return nil, sp.err
		}
	}
	if len(spans) == 1 && spans[0].start == 0 && spans[0].end == len(str) {
		return s.lookup(spans[0].ref)
	}
	var b strings.Builder
	last := 0
	for _, sp := range spans {
		b.WriteString(str[last:sp.start])
		v, err := s.lookup(sp.ref)
		if err != nil {
			return nil, err
		}
		if t, ok := v.(string); ok {
			b.WriteString(t)
		} else {
			raw, err := json.Marshal(v)
			if err != nil {
				return nil, &RefError{Text: sp.ref.Text, Reason: fmt.Sprintf("value is not JSON: %v", err)}
			}
			b.Write(raw)
		}
		last = sp.end
	}
	b.WriteString(str[last:])
	return b.String(), nil
}

// lookup returns the value r refers to.
func (s *RefScope) lookup(r Ref) (any, error) {
	fail := func(format string, args ...any) (any, error) {
		return nil, &RefError{Text: r.Text, Reason: fmt.Sprintf(format, args...)}
	}
	var v any
	switch r.Kind {
	case RefNode:
		out, ok := s.Outputs[r.Name]
		if !ok {
			return fail("no output of task %q", r.Name)
		}
		v = out
	case RefParams:
		p, ok := s.Params[r.Name]
		if !ok {
			return fail("no param %q", r.Name)
		}
		v = p
	case RefItem, RefIndex:
		if s.Iteration == nil {
			return fail("only set in the iterations of a foreach task")
		}
		if r.Kind == RefIndex {
			return float64(s.Iteration.Index), nil
		}
		v = s.Iteration.Item
	case RefEnv:
		env := s.Env
		if env == nil {
			env = os.LookupEnv
		}
		val, ok := env(r.Name)
		if !ok {
			return fail("environment variable %s is not set", r.Name)
		}
		return val, nil
	default:
		return fail("unknown reference kind %q", r.Kind)
	}
	for _, seg := range r.Path {
		v = normalizeJSON(v)
		switch c := v.(type) {
		case map[string]any:
			next, ok := c[seg]
			if !ok {
				return fail("no key %q", seg)
			}
			v = next
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil {
				return fail("cannot index an array with %q", seg)
			}
			if i < 0 || i >= len(c) {
				return fail("index %d out of range (length %d)", i, len(c))
			}
			v = c[i]
		default:
			return fail("cannot look up %q in %s", seg, jsonKind(v))
		}
	}
	return v, nil
}

// normalizeJSON turns a container of another Go type (a struct, a typed map,
// json.RawMessage) into map[string]any or []any so that a path can walk it.
func normalizeJSON(v any) any {
	switch v.(type) {
	case nil, map[string]any, []any, string, bool, float64, int, int64:
		return v
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return v
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var out any
	if err := dec.Decode(&out); err != nil {
		return v
	}
	return out
}

// jsonKind names the JSON type of v for messages.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	default:
		return "a number"
	}
}
