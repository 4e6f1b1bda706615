// YAML node helpers for the loader: positions, anchors and aliases, merge
// keys, mappings and typed scalars.

package engine

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
)

func (l *loader) pos(n ast.Node) Position {
	if n == nil {
		return Position{File: l.file, Line: 1, Col: 1}
	}
	return l.tokPos(n.GetToken())
}

// startPos is where a node starts: for a block mapping, its first key
// (the mapping's own token is the first ':').
func (l *loader) startPos(n ast.Node) Position {
	if m, ok := n.(*ast.MappingNode); ok && !m.IsFlowStyle && len(m.Values) > 0 && m.Values[0] != nil && m.Values[0].Key != nil {
		return l.pos(m.Values[0].Key)
	}
	return l.pos(n)
}

func (l *loader) tokPos(tk *token.Token) Position {
	if tk == nil || tk.Position == nil {
		return Position{File: l.file, Line: 1, Col: 1}
	}
	col := tk.Position.Column
	if col < 1 {
		col = 1
	}
	line := tk.Position.Line
	if line < 1 {
		line = 1
	}
	return Position{File: l.file, Line: line, Col: col}
}

// collectAnchors records every anchor so aliases can be resolved.
func (l *loader) collectAnchors(n ast.Node, depth int) {
	if n == nil || depth > 10000 {
		return
	}
	switch n := n.(type) {
	case *ast.AnchorNode:
		if n.Name != nil {
			name := n.Name.GetToken().Value
			l.anchors[name] = append(l.anchors[name], n)
		}
		l.collectAnchors(n.Value, depth+1)
	case *ast.MappingNode:
		for _, v := range n.Values {
			l.collectAnchors(v, depth+1)
		}
	case *ast.MappingValueNode:
		l.collectAnchors(n.Key, depth+1)
		l.collectAnchors(n.Value, depth+1)
	case *ast.MappingKeyNode:
		l.collectAnchors(n.Value, depth+1)
	case *ast.SequenceNode:
		for _, v := range n.Values {
			l.collectAnchors(v, depth+1)
		}
	case *ast.TagNode:
		l.collectAnchors(n.Value, depth+1)
	}
}

func before(a, b *token.Token) bool {
	if a == nil || b == nil || a.Position == nil || b.Position == nil {
		return true
	}
	if a.Position.Line != b.Position.Line {
		return a.Position.Line < b.Position.Line
	}
	return a.Position.Column < b.Position.Column
}

// resolveAlias returns the anchor an alias refers to: the last one of that
// name defined before it.
func (l *loader) resolveAlias(n *ast.AliasNode) (*ast.AnchorNode, bool) {
	if n.Value == nil {
		return nil, false
	}
	var found *ast.AnchorNode
	for _, a := range l.anchors[n.Value.GetToken().Value] {
		if before(a.GetToken(), n.GetToken()) {
			found = a
		}
	}
	return found, found != nil
}

// deref strips anchors, aliases and tags other than !!str, reporting
// unknown or recursive aliases. It returns nil (after reporting) when the
// node cannot be used. release must be called when the caller is done with
// the node so that recursion through aliases is detected.
func (l *loader) deref(n ast.Node) (ast.Node, func()) {
	var held []*ast.AnchorNode
	release := func() {
		for _, a := range held {
			delete(l.active, a)
		}
	}
	for i := 0; n != nil && i < 1000; i++ {
		switch t := n.(type) {
		case *ast.AnchorNode:
			n = t.Value
		case *ast.MappingKeyNode:
			n = t.Value
		case *ast.AliasNode:
			a, ok := l.resolveAlias(t)
			if !ok {
				l.errorf(l.pos(t), "unknown alias *%s", aliasName(t))
				release()
				return nil, func() {}
			}
			if l.active[a] {
				l.errorf(l.pos(t), "alias *%s refers to a value that contains it", aliasName(t))
				release()
				return nil, func() {}
			}
			l.active[a] = true
			held = append(held, a)
			n = a.Value
		case *ast.TagNode:
			if tagName(t) == "!!str" {
				return n, release
			}
			n = t.Value
		default:
			return n, release
		}
	}
	return n, release
}

func aliasName(n *ast.AliasNode) string {
	if n.Value == nil {
		return ""
	}
	return n.Value.GetToken().Value
}

func tagName(t *ast.TagNode) string {
	if t.Start == nil {
		return ""
	}
	return t.Start.Value
}

// mapEntry is one key: value of a mapping, merges flattened.
type mapEntry struct {
	key    string
	keyPos Position
	value  ast.Node
}

// mapping returns the entries of a mapping node, reporting anything else. A
// null value is an empty mapping.
func (l *loader) mapping(n ast.Node, what string) ([]mapEntry, bool) {
	n, release := l.deref(n)
	defer release()
	if n == nil {
		return nil, false
	}
	switch m := n.(type) {
	case *ast.NullNode:
		return nil, true
	case *ast.MappingNode:
		return l.entries(m, 0), true
	}
	l.errorf(l.pos(n), "%s must be a mapping, got %s", what, nodeKind(n))
	return nil, false
}

// entries flattens m, applying merge keys (`<<: *base`); keys written in m
// win over merged ones. Duplicate keys written in m are reported.
func (l *loader) entries(m *ast.MappingNode, depth int) []mapEntry {
	var own, merged []mapEntry
	seen := make(map[string]Position)
	for _, mv := range m.Values {
		if mv == nil {
			continue
		}
		if _, ok := mv.Key.(*ast.MergeKeyNode); ok {
			if depth > 20 {
				l.errorf(l.pos(mv.Key), "merge keys nested too deeply")
				continue
			}
			merged = append(merged, l.mergeSources(mv.Value, depth)...)
			continue
		}
		key, ok := l.keyText(mv.Key)
		if !ok {
			continue
		}
		kp := l.pos(mv.Key)
		if first, dup := seen[key]; dup {
			l.errorf(kp, "duplicate key %q (first at %s)", key, shortPos(first))
			continue
		}
		seen[key] = kp
		own = append(own, mapEntry{key: key, keyPos: kp, value: mv.Value})
	}
	for _, e := range merged {
		if _, ok := seen[e.key]; !ok {
			seen[e.key] = e.keyPos
			own = append(own, e)
		}
	}
	return own
}

func shortPos(p Position) string {
	return fmt.Sprintf("%d:%d", p.Line, p.Col)
}

// mergeSources returns the entries a merge key's value brings in: a mapping
// or a sequence of mappings (earlier ones win).
func (l *loader) mergeSources(v ast.Node, depth int) []mapEntry {
	n, release := l.deref(v)
	defer release()
	switch t := n.(type) {
	case nil:
		return nil
	case *ast.MappingNode:
		return l.entries(t, depth+1)
	case *ast.SequenceNode:
		var out []mapEntry
		seen := make(map[string]bool)
		for _, item := range t.Values {
			in, rel := l.deref(item)
			m, ok := in.(*ast.MappingNode)
			if !ok {
				if in != nil {
					l.errorf(l.pos(in), "a merge key (<<) takes a mapping or a list of mappings")
				}
				rel()
				continue
			}
			for _, e := range l.entries(m, depth+1) {
				if !seen[e.key] {
					seen[e.key] = true
					out = append(out, e)
				}
			}
			rel()
		}
		return out
	}
	l.errorf(l.pos(n), "a merge key (<<) takes a mapping or a list of mappings")
	return nil
}

// keyText returns the text of a scalar mapping key.
func (l *loader) keyText(k ast.Node) (string, bool) {
	n, release := l.deref(k)
	defer release()
	switch t := n.(type) {
	case nil:
		return "", false
	case *ast.StringNode:
		return t.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.NullNode, *ast.InfinityNode, *ast.NanNode:
		return t.GetToken().Value, true
	case *ast.TagNode:
		if s, ok := l.scalarText(t); ok {
			return s, true
		}
	}
	l.errorf(l.pos(n), "mapping keys must be scalars, got %s", nodeKind(n))
	return "", false
}

// scalarText returns the string form of a scalar (for names and text
// settings), false for anything else.
func (l *loader) scalarText(n ast.Node) (string, bool) {
	switch t := n.(type) {
	case *ast.StringNode:
		return t.Value, true
	case *ast.LiteralNode:
		if t.Value == nil {
			return "", true
		}
		return t.Value.Value, true
	case *ast.IntegerNode, *ast.FloatNode:
		return t.GetToken().Value, true
	case *ast.TagNode:
		if tagName(t) == "!!str" && t.Value != nil {
			return l.scalarText(t.Value)
		}
	}
	return "", false
}

// field is a known key of a mapping and its value.
type field struct {
	keyPos Position
	value  ast.Node
}

// fields checks a mapping's keys against known and returns them by name.
func (l *loader) fields(entries []mapEntry, where string, known []string) map[string]field {
	out := make(map[string]field, len(entries))
	for _, e := range entries {
		if !slices.Contains(known, e.key) {
			msg := fmt.Sprintf("unknown key %q in %s", e.key, where)
			if s := suggest(e.key, known); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			} else {
				msg += " (known: " + strings.Join(known, ", ") + ")"
			}
			l.errorf(e.keyPos, "%s", msg)
			continue
		}
		out[e.key] = field{keyPos: e.keyPos, value: e.value}
	}
	return out
}

func nodeKind(n ast.Node) string {
	switch n.(type) {
	case nil, *ast.NullNode:
		return "null"
	case *ast.MappingNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.StringNode, *ast.LiteralNode:
		return "a string"
	case *ast.IntegerNode:
		return "an integer"
	case *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		return "a number"
	case *ast.BoolNode:
		return "a boolean"
	}
	return "a " + strings.ToLower(n.Type().String())
}

// text returns a scalar as a string, reporting anything else.
func (l *loader) text(v ast.Node, what string) (string, bool) {
	n, release := l.deref(v)
	defer release()
	if n == nil {
		return "", false
	}
	if s, ok := l.scalarText(n); ok {
		return s, true
	}
	l.errorf(l.pos(n), "%s must be a string, got %s", what, nodeKind(n))
	return "", false
}

func (l *loader) integer(v ast.Node, what string, lo, hi int) (int, bool) {
	n, release := l.deref(v)
	defer release()
	if n == nil {
		return 0, false
	}
	i, ok := n.(*ast.IntegerNode)
	if !ok {
		l.errorf(l.pos(n), "%s must be an integer, got %s", what, nodeKind(n))
		return 0, false
	}
	x, ok := intValue(i)
	if !ok || x < int64(lo) || x > int64(hi) {
		l.errorf(l.pos(n), "%s must be between %d and %d, got %s", what, lo, hi, i.GetToken().Value)
		return 0, false
	}
	return int(x), true
}

// intValue returns an integer node's value if it fits in an int64 (the
// YAML parser gives uint64 for non-negative integers).
func intValue(n *ast.IntegerNode) (int64, bool) {
	switch x := n.Value.(type) {
	case int64:
		return x, true
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x), true
		}
	case int:
		return int64(x), true
	}
	return 0, false
}

func (l *loader) duration(v ast.Node, what string) (time.Duration, bool) {
	n, release := l.deref(v)
	defer release()
	if n == nil {
		return 0, false
	}
	s, ok := l.scalarText(n)
	if ok {
		d, err := time.ParseDuration(s)
		if err == nil && d >= 0 {
			return d, true
		}
		if err == nil {
			l.errorf(l.pos(n), "bad duration %q for %s: must not be negative", s, what)
			return 0, false
		}
	}
	shown := nodeKind(n)
	if ok {
		shown = strconv.Quote(s)
	}
	l.errorf(l.pos(n), "bad duration %s for %s: want a duration such as \"30s\", \"1m30s\" or \"200ms\"", shown, what)
	return 0, false
}

// value decodes a YAML value into plain JSON-compatible Go values:
// map[string]any, []any, string, int64, float64, bool and nil. Strings and
// where they are go to strs when it is not nil.
func (l *loader) value(v ast.Node, strs *[]posString, depth int) (any, bool) {
	l.budget--
	if l.budget < 0 {
		if l.budget == -1 {
			l.errorf(l.pos(v), "too many values (more than %d, counting alias expansions)", maxYAMLNodes)
		}
		return nil, false
	}
	if depth > 1000 {
		l.errorf(l.pos(v), "values nested too deeply")
		return nil, false
	}
	n, release := l.deref(v)
	defer release()
	switch t := n.(type) {
	case nil:
		return nil, false
	case *ast.NullNode:
		return nil, true
	case *ast.BoolNode:
		return t.Value, true
	case *ast.IntegerNode:
		if x, ok := intValue(t); ok {
			return x, true
		}
		if x, ok := t.Value.(uint64); ok {
			return float64(x), true
		}
		return t.GetToken().Value, true
	case *ast.FloatNode:
		return t.Value, true
	case *ast.InfinityNode, *ast.NanNode:
		l.errorf(l.pos(n), "%s cannot be represented in JSON", t.GetToken().Value)
		return nil, false
	case *ast.StringNode, *ast.LiteralNode, *ast.TagNode:
		s, ok := l.scalarText(t)
		if !ok {
			l.errorf(l.pos(n), "unsupported YAML tag %s", t.GetToken().Value)
			return nil, false
		}
		if strs != nil {
			*strs = append(*strs, posString{s: s, pos: l.pos(n)})
		}
		return s, true
	case *ast.MappingNode:
		entries := l.entries(t, 0)
		out := make(map[string]any, len(entries))
		ok := true
		for _, e := range entries {
			x, good := l.value(e.value, strs, depth+1)
			ok = ok && good
			out[e.key] = x
		}
		return out, ok
	case *ast.SequenceNode:
		out := make([]any, 0, len(t.Values))
		ok := true
		for _, item := range t.Values {
			x, good := l.value(item, strs, depth+1)
			ok = ok && good
			out = append(out, x)
		}
		return out, ok
	}
	l.errorf(l.pos(n), "unsupported YAML value (%s)", nodeKind(n))
	return nil, false
}

// graphPos maps a position in the graph DSL text to the flow file.
func (l *loader) graphPos(n ast.Node, p Position) Position {
	tk := n.GetToken()
	base := l.pos(n)
	if lit, ok := n.(*ast.LiteralNode); ok && lit.Start != nil {
		start := l.tokPos(lit.Start)
		if !strings.HasPrefix(lit.Start.Value, "|") {
			// Folded: lines are joined, so only the first line is exact.
			return Position{File: l.file, Line: start.Line + 1, Col: l.indentOf(start.Line+1) + 1}
		}
		line := start.Line + p.Line
		dslLines := strings.Split(literalText(lit), "\n")
		dslIndent := 0
		if p.Line-1 < len(dslLines) {
			dslIndent = leadingSpaces(dslLines[p.Line-1])
		}
		return Position{File: l.file, Line: line, Col: p.Col + l.indentOf(line) - dslIndent}
	}
	if tk == nil || p.Line != 1 {
		return base
	}
	switch tk.Type {
	case token.DoubleQuoteType, token.SingleQuoteType:
		return Position{File: l.file, Line: base.Line, Col: base.Col + p.Col}
	}
	return Position{File: l.file, Line: base.Line, Col: base.Col + p.Col - 1}
}

func literalText(lit *ast.LiteralNode) string {
	if lit.Value == nil {
		return ""
	}
	return lit.Value.Value
}

// indentOf returns the number of leading spaces of a 1-based source line.
func (l *loader) indentOf(line int) int {
	if l.lines == nil {
		l.lines = strings.Split(l.src, "\n")
	}
	if line < 1 || line > len(l.lines) {
		return 0
	}
	return leadingSpaces(l.lines[line-1])
}

func leadingSpaces(s string) int {
	n := 0
	for n < len(s) && s[n] == ' ' {
		n++
	}
	return n
}
