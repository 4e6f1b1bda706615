package engine

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// TaskLookup finds task implementations by their `use` name. [*Registry]
// satisfies it.
type TaskLookup interface {
	Lookup(name string) (*TaskDef, bool)
}

// FlowLookup is an optional interface of a [TaskLookup]: the flows that
// `use: flow/<name>` may name (a server's flows). Without it, flow/<name>
// names the file <name>.yaml (or <name>.yml) next to the flow file.
type FlowLookup interface {
	LookupFlow(name string) (*Flow, bool)
}

// SubFlowPrefix starts the use of a task that runs a flow (`use: flow/<name>`).
const SubFlowPrefix = "flow/"

// maxSubFlowDepth bounds how deeply sub-flows nest (through files or inline).
const maxSubFlowDepth = 8

// AllowUnknownUse returns tasks as a [TaskLookup] under which [LoadFlow]
// accepts a `use` that tasks does not know, with a warning instead of an
// error (the inputs of such a task are not checked). It is for a process
// that does not execute the runs it accepts: `pyoco server` on Redis offers
// flows whose plug-in tasks only its workers have (SPEC §3); the worker
// that executes the run loads the flow with its own registry, and the run
// fails there, with the unknown use named, if the worker lacks it.
func AllowUnknownUse(tasks TaskLookup) TaskLookup {
	if r, ok := tasks.(*Registry); ok && r == nil || tasks == nil {
		tasks = NewRegistry()
	}
	return openLookup{tasks}
}

type openLookup struct{ TaskLookup }

// WithFlows returns tasks as a [TaskLookup] that also resolves `use:
// flow/<name>` through flows ([FlowLookup]): the flows of a server, for an
// inline flow it accepts.
func WithFlows(tasks TaskLookup, flows func(name string) (*Flow, bool)) TaskLookup {
	return flowsLookup{tasks, flows}
}

type flowsLookup struct {
	TaskLookup
	flows func(string) (*Flow, bool)
}

// LookupFlow implements [FlowLookup].
func (f flowsLookup) LookupFlow(name string) (*Flow, bool) { return f.flows(name) }

// allowsUnknownUse reports whether tasks was made by [AllowUnknownUse]
// (perhaps inside [WithFlows]).
func allowsUnknownUse(tasks TaskLookup) bool {
	switch t := tasks.(type) {
	case openLookup:
		return true
	case flowsLookup:
		return allowsUnknownUse(t.TaskLookup)
	}
	return false
}

// Limits on flow settings.
const (
	maxRetries     = 100
	maxMaxParallel = 10000
	// maxYAMLNodes bounds the values decoded from one file, counting alias
	// expansions, so that a "billion laughs" file fails instead of eating memory.
	maxYAMLNodes = 100000
)

var (
	topKeys  = []string{"version", "flow", "tasks"}
	flowKeys = []string{"name", "description", "defaults", "graph", "max_parallel", "timeout", "schedule"}
	taskKeys = []string{"use", "inputs", "retries", "retry_delay", "retry_max_delay", "timeout", "fail_policy", "trigger", "depends_on",
		"when", "switch", "cases", "default", "foreach", "max_parallel", "until", "repeat", "flow_yaml"}
	repeatKeys = []string{"max", "interval"}
)

// LoadFlowFile reads the flow file at path and loads it with [LoadFlow].
// An error reading the file is returned wrapped (check with errors.Is, e.g.
// [os.ErrNotExist]); problems in the file are [LoadErrors].
func LoadFlowFile(path string, tasks TaskLookup) (*Flow, error) {
	src, err := ReadFlowFile(path)
	if err != nil {
		return nil, fmt.Errorf("load flow: %w", err)
	}
	return LoadFlow(path, src, tasks)
}

// Limits of a flow file: names become metric labels and span names, and
// every task costs series and store records, so both are bounded.
const (
	// MaxNameLen bounds a flow or task name, in bytes.
	MaxNameLen = 128
	// MaxFlowTasks bounds the tasks of one flow.
	MaxFlowTasks = 10000
)

// MaxFlowFileBytes bounds a flow file read by [ReadFlowFile]: the same
// limit as an API request body, so a file that runs locally can also be
// submitted inline.
const MaxFlowFileBytes = 1 << 20

// ReadFlowFile reads the flow file at path, refusing one larger than
// [MaxFlowFileBytes] (also an endless one such as /dev/zero) with an error
// that wraps [ErrFlowTooLarge], and a directory with a plain error.
func ReadFlowFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("%s is a directory, not a flow file", path)
	}
	src, err := io.ReadAll(io.LimitReader(f, MaxFlowFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(src) > MaxFlowFileBytes {
		return nil, fmt.Errorf("%s: %w (more than %d bytes)", path, ErrFlowTooLarge, MaxFlowFileBytes)
	}
	return src, nil
}

// LoadFlow parses and validates a flow file (SPEC §2, version 1). file names
// the source in positions ("" for inline text). tasks resolves `use` names
// and their declared inputs; nil skips those checks.
//
// Every problem found is reported, not just the first: the error is a
// [LoadErrors] sorted by position, each member a [*LoadError] with file,
// line and column. A cycle in the graph wraps [ErrCycle]. Non-fatal findings
// (unused default params, params without defaults, undeclared inputs) are
// returned in [Flow.Warnings].
func LoadFlow(file string, src []byte, tasks TaskLookup) (*Flow, error) {
	if r, ok := tasks.(*Registry); ok && r == nil {
		tasks = nil
	}
	return loadFlow(file, src, tasks, nil)
}

// loadFlow is LoadFlow inside the sub-flows named by stack (outermost
// first), which it must not name again.
func loadFlow(file string, src []byte, tasks TaskLookup, stack []string) (*Flow, error) {
	if r, ok := tasks.(*Registry); ok && r == nil {
		tasks = nil
	}
	l := &loader{file: file, src: string(src), tasks: tasks, stack: stack}
	f := l.load()
	if len(l.errs) > 0 {
		sortByPos(l.errs)
		return nil, l.errs
	}
	sortByPos(l.warnings)
	f.Warnings = l.warnings
	return f, nil
}

// inputNames lists declared inputs for a message: "cmd, env, dir" or "no
// inputs".
func inputNames(ps []Param) string {
	if len(ps) == 0 {
		return "no inputs"
	}
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.Name
	}
	return strings.Join(names, ", ")
}

func sortByPos(es []*LoadError) {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i].Pos, es[j].Pos
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
}

type loader struct {
	file     string
	src      string
	tasks    TaskLookup
	errs     LoadErrors
	warnings []*LoadError

	anchors map[string][]*ast.AnchorNode // by name, in document order
	active  map[*ast.AnchorNode]bool     // anchors being expanded
	budget  int                          // values left to decode
	lines   []string                     // src split into lines, on demand
	stack   []string                     // the flows whose sub-flow this one is, outermost first
	name    string                       // this flow's name, once read
}

// posString is a string found in an inputs value and where it is.
type posString struct {
	s   string
	pos Position
}

// taskInfo is what the loader keeps about a task between passes.
type taskInfo struct {
	spec       *TaskSpec
	def        *TaskDef
	strings    []posString
	inputKeys  map[string]Position
	inputsPos  Position
	triggerPos Position
	triggerSet bool
	depends    []posString
	// exprs are the task's expressions and what they may read.
	exprs []*exprUse
	// cases are the task names a switch's cases and default list.
	cases []posString
	// ctxItem is where the inputs first use $ctx.item or $ctx.index.
	ctxItem *posString
}

// exprUse is one expression of a task and the loop variables it may read.
type exprUse struct {
	key          string // when, switch, foreach, until
	x            *Expr
	item, output bool
}

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

func (l *loader) errorf(pos Position, format string, args ...any) *LoadError {
	e := &LoadError{Pos: pos, Msg: fmt.Sprintf(format, args...)}
	l.errs = append(l.errs, e)
	return e
}

func (l *loader) warnf(pos Position, format string, args ...any) {
	l.warnings = append(l.warnings, &LoadError{Pos: pos, Msg: fmt.Sprintf(format, args...)})
}

func (l *loader) load() *Flow {
	file, err := parser.ParseBytes([]byte(l.src), 0, parser.AllowDuplicateMapKey())
	if err != nil {
		var ye yaml.Error
		if errors.As(err, &ye) {
			l.errorf(l.tokPos(ye.GetToken()), "invalid YAML: %s", ye.GetMessage())
		} else {
			l.errorf(Position{File: l.file, Line: 1, Col: 1}, "invalid YAML: %v", err)
		}
		return nil
	}
	var body ast.Node
	for _, d := range file.Docs {
		if d == nil || d.Body == nil {
			continue
		}
		if body != nil {
			l.errorf(l.startPos(d.Body), "a flow file holds one YAML document")
			return nil
		}
		body = d.Body
	}
	if body == nil {
		l.errorf(Position{File: l.file, Line: 1, Col: 1}, "empty flow file")
		return nil
	}
	l.anchors = make(map[string][]*ast.AnchorNode)
	l.active = make(map[*ast.AnchorNode]bool)
	l.budget = maxYAMLNodes
	l.collectAnchors(body, 0)

	f := &Flow{
		MaxParallel: DefaultMaxParallel,
		Tasks:       make(map[string]*TaskSpec),
		Source:      l.src,
		File:        l.file,
	}
	top, ok := l.mapping(body, "a flow file")
	if !ok {
		return f
	}
	fields := l.fields(top, "the flow file", topKeys)
	if v, ok := fields["version"]; ok {
		l.version(v.value)
	} else {
		l.errorf(l.startPos(body), "missing version (want version: 1)")
	}
	var graphNode ast.Node
	var defaultsPos map[string]Position
	if v, ok := fields["flow"]; ok {
		graphNode, defaultsPos = l.flowSection(f, v)
	} else {
		l.errorf(l.startPos(body), "missing flow")
	}
	var infos []*taskInfo
	l.name = f.Name
	if v, ok := fields["tasks"]; ok {
		infos = l.tasksSection(f, v)
	} else {
		l.errorf(l.startPos(body), "missing tasks")
	}
	l.link(f, infos, graphNode, defaultsPos)
	return f
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

// suggest returns the known word closest to s, if it is close enough.
func suggest(s string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(s, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
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

func (l *loader) version(v ast.Node) {
	n, release := l.deref(v)
	defer release()
	if n == nil {
		return
	}
	if i, ok := n.(*ast.IntegerNode); ok {
		if x, ok := intValue(i); ok && x == 1 {
			return
		}
		l.errorf(l.pos(n), "unsupported version %s (want 1)", i.GetToken().Value)
		return
	}
	l.errorf(l.pos(n), "version must be the integer 1, got %s", nodeKind(n))
}

// flowSection fills the flow: settings. It returns the graph value node and
// the positions of the defaults' keys.
func (l *loader) flowSection(f *Flow, v field) (ast.Node, map[string]Position) {
	entries, ok := l.mapping(v.value, "flow")
	if !ok {
		return nil, nil
	}
	fields := l.fields(entries, "flow", flowKeys)
	if fv, ok := fields["name"]; ok {
		if s, ok := l.text(fv.value, "flow.name"); ok {
			if len(s) > MaxNameLen {
				l.errorf(l.pos(fv.value), "flow name %q… is %d bytes long: at most %d", s[:32], len(s), MaxNameLen)
			} else if !isTaskName(s) {
				l.errorf(l.pos(fv.value), "invalid flow name %q: use letters, digits, '_', '.' and '-'", s)
			}
			f.Name = s
		}
	} else {
		l.errorf(v.keyPos, "missing flow.name")
	}
	if fv, ok := fields["description"]; ok {
		if s, ok := l.text(fv.value, "flow.description"); ok {
			f.Description = s
		}
	}
	var defaultsPos map[string]Position
	if fv, ok := fields["defaults"]; ok {
		if entries, ok := l.mapping(fv.value, "flow.defaults"); ok {
			f.Defaults = make(map[string]any, len(entries))
			defaultsPos = make(map[string]Position, len(entries))
			for _, e := range entries {
				val, _ := l.value(e.value, nil, 0)
				f.Defaults[e.key] = val
				defaultsPos[e.key] = e.keyPos
			}
		}
	}
	if fv, ok := fields["max_parallel"]; ok {
		if n, ok := l.integer(fv.value, "max_parallel", 1, maxMaxParallel); ok {
			f.MaxParallel = n
		}
	}
	if fv, ok := fields["timeout"]; ok {
		if d, ok := l.duration(fv.value, "timeout"); ok {
			f.Timeout = d
		}
	}
	if fv, ok := fields["schedule"]; ok {
		l.schedules(f, fv) // schedule.go
	}
	var graph ast.Node
	if fv, ok := fields["graph"]; ok {
		n, release := l.deref(fv.value)
		release()
		switch n.(type) {
		case nil, *ast.NullNode:
		default:
			if s, ok := l.text(n, "flow.graph"); ok {
				f.Graph = s
				graph = n
			}
		}
	}
	return graph, defaultsPos
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

// tasksSection reads tasks: in file order.
func (l *loader) tasksSection(f *Flow, v field) []*taskInfo {
	entries, ok := l.mapping(v.value, "tasks")
	if !ok {
		return nil
	}
	if len(entries) == 0 {
		l.errorf(v.keyPos, "flow has no tasks")
		return nil
	}
	if len(entries) > MaxFlowTasks {
		l.errorf(v.keyPos, "flow has %d tasks: at most %d", len(entries), MaxFlowTasks)
		return nil
	}
	var infos []*taskInfo
	for _, e := range entries {
		if len(e.key) > MaxNameLen {
			l.errorf(e.keyPos, "task name %q… is %d bytes long: at most %d", e.key[:32], len(e.key), MaxNameLen)
			continue
		}
		if !isTaskName(e.key) {
			l.errorf(e.keyPos, "invalid task name %q: use letters, digits, '_', '.' and '-'", e.key)
			continue
		}
		ti := l.task(e)
		f.Tasks[e.key] = ti.spec
		f.Order = append(f.Order, e.key)
		infos = append(infos, ti)
	}
	return infos
}

func (l *loader) task(e mapEntry) *taskInfo {
	spec := &TaskSpec{
		Name:          e.key,
		RetryMaxDelay: DefaultRetryMaxDelay,
		FailPolicy:    FailStop,
		Trigger:       TriggerAll,
		Pos:           e.keyPos,
	}
	ti := &taskInfo{spec: spec, inputsPos: e.keyPos}
	where := "task " + e.key
	entries, ok := l.mapping(e.value, where)
	if !ok {
		return ti
	}
	fields := l.fields(entries, where, taskKeys)
	if fv, ok := fields["use"]; ok {
		if s, ok := l.text(fv.value, "use"); ok {
			spec.Use = s
			if strings.HasPrefix(s, SubFlowPrefix) {
				l.subFlowUse(spec, strings.TrimPrefix(s, SubFlowPrefix), l.pos(fv.value))
			} else if l.tasks != nil {
				if def, ok := l.tasks.Lookup(s); ok {
					ti.def = def
				} else if allowsUnknownUse(l.tasks) {
					l.warnf(l.pos(fv.value), "task %s: use %q is not registered in this process: the worker that executes the run must have it", e.key, s)
				} else {
					l.errorf(l.pos(fv.value), "task %s: unknown use %q (not a registered task)", e.key, s)
				}
			}
		}
	} else if _, ok := fields["switch"]; !ok {
		if _, ok := fields["flow_yaml"]; !ok {
			l.errorf(e.keyPos, "task %s has no use (say which task implementation runs it)", e.key)
		}
	}
	if fv, ok := fields["flow_yaml"]; ok {
		if _, both := fields["use"]; both {
			l.errorf(fv.keyPos, "task %s: flow_yaml runs an inline flow: it cannot have use too", e.key)
		} else {
			l.subFlowInline(spec, fv.value)
		}
	}
	if fv, ok := fields["inputs"]; ok {
		ti.inputsPos = fv.keyPos
		if entries, ok := l.mapping(fv.value, "inputs of task "+e.key); ok {
			spec.Inputs = make(map[string]any, len(entries))
			ti.inputKeys = make(map[string]Position, len(entries))
			for _, in := range entries {
				val, _ := l.value(in.value, &ti.strings, 0)
				spec.Inputs[in.key] = val
				ti.inputKeys[in.key] = in.keyPos
			}
		}
	}
	if fv, ok := fields["retries"]; ok {
		if n, ok := l.integer(fv.value, "retries", 0, maxRetries); ok {
			spec.Retries = n
		}
	}
	if fv, ok := fields["retry_delay"]; ok {
		if d, ok := l.duration(fv.value, "retry_delay"); ok {
			spec.RetryDelay = d
		}
	}
	if fv, ok := fields["retry_max_delay"]; ok {
		if d, ok := l.duration(fv.value, "retry_max_delay"); ok {
			if d == 0 {
				l.errorf(l.pos(fv.value), "retry_max_delay must be positive")
			} else {
				spec.RetryMaxDelay = d
			}
		}
	}
	if fv, ok := fields["timeout"]; ok {
		if d, ok := l.duration(fv.value, "timeout"); ok {
			spec.Timeout = d
		}
	}
	if fv, ok := fields["fail_policy"]; ok {
		if s, ok := l.text(fv.value, "fail_policy"); ok {
			switch p := FailPolicy(s); p {
			case FailStop, FailIsolate:
				spec.FailPolicy = p
			default:
				l.errorf(l.pos(fv.value), "bad fail_policy %q (want stop or isolate)", s)
			}
		}
	}
	if fv, ok := fields["trigger"]; ok {
		if s, ok := l.text(fv.value, "trigger"); ok {
			switch t := Trigger(s); t {
			case TriggerAll, TriggerAny:
				spec.Trigger = t
				ti.triggerSet = true
				ti.triggerPos = l.pos(fv.value)
			default:
				l.errorf(l.pos(fv.value), "bad trigger %q (want all or any)", s)
			}
		}
	}
	if fv, ok := fields["depends_on"]; ok {
		ti.depends = l.dependsOn(fv.value)
	}
	l.controlFlow(ti, fields)
	return ti
}

// controlFlow reads a task's when, switch (cases, default), foreach
// (max_parallel) and until (repeat).
func (l *loader) controlFlow(ti *taskInfo, fields map[string]field) {
	spec := ti.spec
	name := spec.Name
	_, foreach := fields["foreach"]
	if fv, ok := fields["when"]; ok {
		if x := l.expr(fv.value, "when", exprBool); x != nil {
			spec.When = x
			ti.exprs = append(ti.exprs, &exprUse{key: "when", x: x})
		}
	}
	if fv, ok := fields["foreach"]; ok {
		if x := l.expr(fv.value, "foreach", exprAny); x != nil {
			spec.Foreach = x
			ti.exprs = append(ti.exprs, &exprUse{key: "foreach", x: x})
		}
	}
	if fv, ok := fields["max_parallel"]; ok {
		if !foreach {
			l.errorf(fv.keyPos, "task %s: max_parallel is a foreach setting (the task has no foreach)", name)
		} else if n, ok := l.integer(fv.value, "max_parallel", 1, 1000); ok {
			spec.ForeachParallel = n
		}
	}
	uf, until := fields["until"]
	rf, repeat := fields["repeat"]
	switch {
	case until && !repeat:
		l.errorf(uf.keyPos, "task %s: until needs repeat: {max: N} (how many rounds at most)", name)
	case repeat && !until:
		l.errorf(rf.keyPos, "task %s: repeat needs until: <expression> (when to stop)", name)
	}
	if until {
		if x := l.expr(uf.value, "until", exprBool); x != nil {
			spec.Until = x
			ti.exprs = append(ti.exprs, &exprUse{key: "until", x: x, item: foreach, output: true})
		}
	}
	if repeat {
		if entries, ok := l.mapping(rf.value, "repeat of task "+name); ok {
			rfields := l.fields(entries, "repeat of task "+name, repeatKeys)
			if mv, ok := rfields["max"]; ok {
				if n, ok := l.integer(mv.value, "repeat.max", 1, MaxRepeat); ok {
					spec.Repeat.Max = n
				}
			} else {
				l.errorf(rf.keyPos, "task %s: repeat has no max (how many rounds at most)", name)
			}
			if iv, ok := rfields["interval"]; ok {
				if d, ok := l.duration(iv.value, "repeat.interval"); ok {
					spec.Repeat.Interval = d
				}
			}
		}
	}

	sf, isSwitch := fields["switch"]
	for _, k := range []string{"cases", "default"} {
		if fv, ok := fields[k]; ok && !isSwitch {
			l.errorf(fv.keyPos, "task %s: %s belongs to a switch (the task has no switch)", name, k)
		}
	}
	if !isSwitch {
		return
	}
	for _, k := range []string{"use", "inputs", "foreach", "until", "retries"} {
		if fv, ok := fields[k]; ok {
			l.errorf(fv.keyPos, "task %s: a switch task cannot have %s (it runs no implementation)", name, k)
		}
	}
	sw := &Switch{Cases: map[string][]string{}}
	spec.Switch, spec.Use = sw, UseSwitch
	if x := l.expr(sf.value, "switch", exprAny); x != nil {
		sw.Expr = x
		ti.exprs = append(ti.exprs, &exprUse{key: "switch", x: x})
	}
	cf, ok := fields["cases"]
	if !ok {
		l.errorf(sf.keyPos, "task %s: switch needs cases: {<value>: [task, ...]}", name)
	} else if entries, ok := l.mapping(cf.value, "cases of switch "+name); ok {
		if len(entries) == 0 {
			l.errorf(cf.keyPos, "task %s: switch has no cases", name)
		}
		for _, e := range entries {
			tasks := l.dependsOn(e.value)
			sw.CaseKeys = append(sw.CaseKeys, e.key)
			sw.Cases[e.key] = names(tasks)
			ti.cases = append(ti.cases, tasks...)
		}
	}
	if df, ok := fields["default"]; ok {
		tasks := l.dependsOn(df.value)
		sw.Default = names(tasks)
		ti.cases = append(ti.cases, tasks...)
	}
}

// subFlowUse resolves `use: flow/<name>` of spec.
func (l *loader) subFlowUse(spec *TaskSpec, name string, pos Position) {
	if !isTaskName(name) || len(name) > MaxNameLen {
		l.errorf(pos, "task %s: bad use %q: want flow/<flow name>", spec.Name, spec.Use)
		return
	}
	if name == l.name || slices.Contains(l.stack, name) {
		path := append(append(slices.Clone(l.stack), l.name), name)
		l.errorf(pos, "task %s: sub-flow cycle: %s", spec.Name, strings.Join(path, " -> "))
		return
	}
	if len(l.stack) >= maxSubFlowDepth {
		l.errorf(pos, "task %s: sub-flows nested more than %d deep", spec.Name, maxSubFlowDepth)
		return
	}
	spec.SubFlowName = name
	if fl, ok := l.tasks.(FlowLookup); ok {
		f, ok := fl.LookupFlow(name)
		if !ok {
			l.errorf(pos, "task %s: unknown flow %q (use: flow/<name> names a flow of the server)", spec.Name, name)
			return
		}
		spec.SubFlow = f
		return
	}
	if l.file == "" || l.file == InlineFlowFile {
		l.errorf(pos, "task %s: use: %s needs the server's flows (an inline flow here knows none)", spec.Name, spec.Use)
		return
	}
	dir := filepath.Dir(l.file)
	var path string
	for _, ext := range []string{".yaml", ".yml"} {
		if fi, err := os.Stat(filepath.Join(dir, name+ext)); err == nil && !fi.IsDir() {
			path = filepath.Join(dir, name+ext)
			break
		}
	}
	if path == "" {
		l.errorf(pos, "task %s: unknown flow %q: no %s.yaml next to %s", spec.Name, name, name, filepath.Base(l.file))
		return
	}
	src, err := ReadFlowFile(path)
	if err != nil {
		l.errorf(pos, "task %s: flow %s: %v", spec.Name, name, err)
		return
	}
	f, err := loadFlow(path, src, l.tasks, append(slices.Clone(l.stack), l.name))
	if err != nil {
		l.errs = append(l.errs, subErrors(err)...)
		l.errorf(pos, "task %s: flow %s (%s) does not load", spec.Name, name, path)
		return
	}
	if f.Name != name {
		l.errorf(pos, "task %s: %s holds flow %q, not %q", spec.Name, path, f.Name, name)
		return
	}
	spec.SubFlow = f
}

// subFlowInline loads the inline flow text of spec's flow_yaml.
func (l *loader) subFlowInline(spec *TaskSpec, v ast.Node) {
	n, release := l.deref(v)
	defer release()
	if n == nil {
		return
	}
	pos := l.pos(n)
	text, ok := l.scalarText(n)
	if !ok {
		l.errorf(pos, "task %s: flow_yaml must be the flow's YAML text (a string, e.g. a `|` block), got %s", spec.Name, nodeKind(n))
		return
	}
	if len(l.stack) >= maxSubFlowDepth {
		l.errorf(pos, "task %s: sub-flows nested more than %d deep", spec.Name, maxSubFlowDepth)
		return
	}
	spec.Use = SubFlowPrefix + "_inline"
	f, err := loadFlow(InlineFlowFile, []byte(text), l.tasks, append(slices.Clone(l.stack), l.name))
	if err != nil {
		_, block := n.(*ast.LiteralNode)
		for _, e := range subErrors(err) {
			at := pos
			if block && e.Pos.Line > 0 {
				// A `|` block's text starts on the line after its key.
				at.Line = pos.Line + e.Pos.Line
				at.Col = l.indentOf(pos.Line+1) + e.Pos.Col
			}
			l.errorf(at, "task %s: flow_yaml: %s", spec.Name, e.Msg)
		}
		return
	}
	spec.SubFlow = f
}

// subErrors are the members of a sub-flow's load error.
func subErrors(err error) []*LoadError {
	var les LoadErrors
	if errors.As(err, &les) {
		return les
	}
	return []*LoadError{{Msg: err.Error()}}
}

func names(ps []posString) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		if !slices.Contains(out, p.s) {
			out = append(out, p.s)
		}
	}
	return out
}

// expr compiles the expression of key at v. A YAML boolean or number is
// taken as its text (`when: false`).
func (l *loader) expr(v ast.Node, key string, kind exprKind) *Expr {
	n, release := l.deref(v)
	defer release()
	if n == nil {
		return nil
	}
	pos := l.pos(n)
	text, ok := l.scalarText(n)
	if !ok {
		if b, isBool := n.(*ast.BoolNode); isBool {
			text, ok = b.GetToken().Value, true
		}
	}
	if !ok {
		l.errorf(pos, "%s must be an expression (a string), got %s", key, nodeKind(n))
		return nil
	}
	if strings.TrimSpace(text) == "" {
		l.errorf(pos, "%s is empty: want an expression", key)
		return nil
	}
	x, err := compileExpr(text, kind)
	if err != nil {
		var ee *exprError
		errors.As(err, &ee)
		at, where := pos, ""
		_, literal := n.(*ast.LiteralNode)
		switch {
		case ee.Line == 1 && ee.Col > 0 && !literal:
			if tk := n.GetToken(); tk != nil && (tk.Type == token.DoubleQuoteType || tk.Type == token.SingleQuoteType) {
				at.Col++
			}
			at.Col += ee.Col - 1
		case ee.Line > 0:
			where = fmt.Sprintf(" (expression line %d, column %d)", ee.Line, ee.Col)
		}
		what := "bad expression"
		if strings.Contains(ee.Msg, "expected bool") {
			what = "expression must give a boolean"
		}
		l.errorf(at, "%s: %s%s: %s", key, what, where, firstLine(ee.Msg))
		return nil
	}
	x.Pos = pos
	return x
}

// dependsOn reads a list of task names (a single name is accepted too).
func (l *loader) dependsOn(v ast.Node) []posString {
	n, release := l.deref(v)
	defer release()
	switch t := n.(type) {
	case nil, *ast.NullNode:
		return nil
	case *ast.SequenceNode:
		var out []posString
		for _, item := range t.Values {
			if s, ok := l.text(item, "depends_on entry"); ok {
				out = append(out, posString{s: s, pos: l.pos(item)})
			}
		}
		return out
	}
	if s, ok := l.scalarText(n); ok {
		return []posString{{s: s, pos: l.pos(n)}}
	}
	l.errorf(l.pos(n), "depends_on must be a list of task names, got %s", nodeKind(n))
	return nil
}

// link checks everything that spans tasks: the graph, depends_on, cycles,
// references, required inputs and params.
func (l *loader) link(f *Flow, infos []*taskInfo, graphNode ast.Node, defaultsPos map[string]Position) {
	byName := make(map[string]*taskInfo, len(infos))
	for _, ti := range infos {
		byName[ti.spec.Name] = ti
	}
	upstream := make(map[string]map[string]bool, len(infos))
	for _, ti := range infos {
		upstream[ti.spec.Name] = make(map[string]bool)
	}
	anyInto := make(map[string]bool)
	anyPos := make(map[string]Position)

	if graphNode != nil {
		g, err := ParseGraph(f.Graph)
		if err != nil {
			var le *LoadError
			if errors.As(err, &le) {
				l.errorf(l.graphPos(graphNode, le.Pos), "graph: %s", le.Msg)
			} else {
				l.errorf(l.pos(graphNode), "graph: %v", err)
			}
		} else {
			reported := make(map[string]bool)
			for _, n := range g.Nodes {
				if _, ok := byName[n.Name]; !ok && !reported[n.Name] {
					reported[n.Name] = true
					l.errorf(l.graphPos(graphNode, n.Pos), "graph names unknown task %q (not a key of tasks)", n.Name)
				}
			}
			for _, e := range g.Edges {
				if _, ok := byName[e.From]; !ok {
					continue
				}
				if _, ok := byName[e.To]; !ok {
					continue
				}
				upstream[e.To][e.From] = true
				if e.Any && !anyInto[e.To] {
					anyInto[e.To] = true
					anyPos[e.To] = l.graphPos(graphNode, e.Pos)
				}
			}
		}
	}
	for _, ti := range infos {
		for _, d := range ti.depends {
			switch {
			case d.s == ti.spec.Name:
				l.errorf(d.pos, "task %s cannot depend on itself", d.s)
			case byName[d.s] == nil:
				l.errorf(d.pos, "task %s depends on unknown task %q", ti.spec.Name, d.s)
			default:
				upstream[ti.spec.Name][d.s] = true
			}
		}
	}
	// A switch runs before the tasks of its branches.
	for _, ti := range infos {
		sw := ti.spec.Name
		for _, c := range ti.cases {
			switch b := byName[c.s]; {
			case c.s == sw:
				l.errorf(c.pos, "switch %s lists itself as a branch", sw)
			case b == nil:
				l.errorf(c.pos, "switch %s: a case names unknown task %q", sw, c.s)
			case b.spec.Branch != "" && b.spec.Branch != sw:
				l.errorf(c.pos, "task %s is on the branches of two switches (%s and %s)", c.s, b.spec.Branch, sw)
			default:
				b.spec.Branch = sw
				upstream[c.s][sw] = true
			}
		}
	}
	for _, ti := range infos {
		name := ti.spec.Name
		ti.spec.Upstream = sortedKeys(upstream[name])
		if anyInto[name] {
			if ti.triggerSet && ti.spec.Trigger == TriggerAll {
				l.errorf(ti.triggerPos, "task %s has trigger: all, but the graph joins its upstream with '|' (trigger any) at %s", name, shortPos(anyPos[name]))
			}
			ti.spec.Trigger = TriggerAny
		}
	}
	l.cycles(f, byName)

	// References, required inputs, params.
	usedParams := make(map[string]bool)
	anc := newAncestry(infos)
	for _, ti := range infos {
		name := ti.spec.Name
		for _, eu := range ti.exprs {
			l.checkExpr(ti, eu, byName, anc, f, usedParams)
		}
		for _, ps := range ti.strings {
			for _, sp := range scanRefs(ps.s) {
				if sp.err != nil {
					l.errorf(ps.pos, "task %s: %v", name, sp.err)
					continue
				}
				r := sp.ref
				switch r.Kind {
				case RefItem, RefIndex:
					if ti.spec.Foreach == nil {
						l.errorf(ps.pos, "task %s references %s but has no foreach ($ctx.item and $ctx.index are set in a foreach's iterations)", name, r.Text)
					}
				case RefNode:
					switch {
					case r.Name == name:
						l.errorf(ps.pos, "task %s references its own output (%s)", name, r.Text)
					case byName[r.Name] == nil:
						l.errorf(ps.pos, "task %s references %s: no task %q", name, r.Text, r.Name)
					default:
						if !anc.dependsOn(name, r.Name) {
							l.errorf(ps.pos, "task %s references %s but does not depend on %s", name, r.Text, r.Name)
						}
					}
				case RefParams:
					usedParams[r.Name] = true
					if _, ok := f.Defaults[r.Name]; !ok {
						l.warnf(ps.pos, "task %s references param %q, which has no default: it must be given at run time", name, r.Name)
					}
				}
			}
		}
		if ti.def != nil {
			for _, p := range ti.def.Inputs {
				if _, ok := ti.spec.Inputs[p.Name]; p.Required && !ok {
					l.errorf(ti.inputsPos, "task %s: missing required input %q of %s", name, p.Name, ti.def.Name)
				}
			}
			for _, k := range sortedKeys(ti.inputKeys) {
				i := slices.IndexFunc(ti.def.Inputs, func(p Param) bool { return p.Name == k })
				switch {
				case i >= 0:
					if why := typeProblem(ti.def.Inputs[i], ti.spec.Inputs[k], f.Defaults); why != "" {
						l.errorf(ti.inputKeys[k], "task %s: input %q of %s%s", name, k, ti.def.Name, why)
					}
				case ti.def.StrictInputs:
					l.errorf(ti.inputKeys[k], "task %s: unknown input %q: %s does not take it (it takes %s)", name, k, ti.def.Name, inputNames(ti.def.Inputs))
				case len(ti.def.Inputs) > 0:
					l.warnf(ti.inputKeys[k], "task %s: input %q is not declared by %s", name, k, ti.def.Name)
				}
			}
		}
	}
	for _, k := range sortedKeys(defaultsPos) {
		if !usedParams[k] {
			l.warnf(defaultsPos[k], "param %q has a default but is never referenced ($ctx.params.%s)", k, k)
		}
	}
}

// checkExpr checks what an expression of a task reads: tasks it depends on,
// loop variables where they are set, params with a default.
func (l *loader) checkExpr(ti *taskInfo, eu *exprUse, byName map[string]*taskInfo, anc *ancestry, f *Flow, usedParams map[string]bool) {
	name, x := ti.spec.Name, eu.x
	for _, v := range []string{ExprItem, ExprIndex} {
		if x.vars[v] && !eu.item {
			if ti.spec.Foreach != nil {
				l.errorf(x.Pos, "task %s: %s cannot read %s: it is evaluated before the iterations (item and index are set in until, and as $ctx.item/$ctx.index in inputs)", name, eu.key, v)
			} else {
				l.errorf(x.Pos, "task %s: %s reads %s, but the task has no foreach", name, eu.key, v)
			}
		}
	}
	if x.vars[ExprOutput] && !eu.output {
		l.errorf(x.Pos, "task %s: %s reads output, which is set only in until (the output of the round that just ended)", name, eu.key)
	}
	for _, n := range x.nodes {
		switch {
		case n == name:
			l.errorf(x.Pos, "task %s: %s reads its own node.%s (in until, the round's output is `output`)", name, eu.key, n)
		case byName[n] == nil:
			l.errorf(x.Pos, "task %s: %s reads node.%s: no task %q", name, eu.key, n, n)
		case !anc.dependsOn(name, n):
			l.errorf(x.Pos, "task %s: %s reads node.%s but the task does not depend on %s", name, eu.key, n, n)
		}
	}
	for _, p := range x.params {
		usedParams[p] = true
		if _, ok := f.Defaults[p]; !ok {
			l.warnf(x.Pos, "task %s: %s reads param %q, which has no default: it must be given at run time", name, eu.key, p)
		}
	}
}

// ancestry answers "does a task run after another?" over the tasks'
// upstream edges, without allocating per question.
type ancestry struct {
	index map[string]int
	up    [][]int
	mark  []int // visit stamps
	stamp int
	stack []int
}

func newAncestry(infos []*taskInfo) *ancestry {
	a := &ancestry{index: make(map[string]int, len(infos)), up: make([][]int, len(infos)), mark: make([]int, len(infos))}
	for i, ti := range infos {
		a.index[ti.spec.Name] = i
	}
	for i, ti := range infos {
		for _, u := range ti.spec.Upstream {
			if j, ok := a.index[u]; ok {
				a.up[i] = append(a.up[i], j)
			}
		}
	}
	return a
}

// dependsOn reports whether task runs after anc, directly or transitively.
func (a *ancestry) dependsOn(task, anc string) bool {
	from, ok1 := a.index[task]
	target, ok2 := a.index[anc]
	if !ok1 || !ok2 {
		return false
	}
	a.stamp++
	a.stack = append(a.stack[:0], from)
	for len(a.stack) > 0 {
		n := a.stack[len(a.stack)-1]
		a.stack = a.stack[:len(a.stack)-1]
		for _, u := range a.up[n] {
			if u == target {
				return true
			}
			if a.mark[u] != a.stamp {
				a.mark[u] = a.stamp
				a.stack = append(a.stack, u)
			}
		}
	}
	return false
}

// cycles reports every cycle found by a depth-first search along
// downstream edges, each printed as a path `a -> b -> a` starting at the
// task declared first.
func (l *loader) cycles(f *Flow, byName map[string]*taskInfo) {
	down := f.Downstream()
	const (
		white = iota
		grey
		black
	)
	color := make(map[string]int, len(f.Order))
	index := make(map[string]int, len(f.Order))
	for i, n := range f.Order {
		index[n] = i
	}
	var stack []string
	var visit func(n string)
	visit = func(n string) {
		color[n] = grey
		stack = append(stack, n)
		for _, m := range down[n] {
			switch color[m] {
			case white:
				visit(m)
			case grey:
				start := slices.Index(stack, m)
				cyc := slices.Clone(stack[start:])
				first := 0
				for i, c := range cyc {
					if index[c] < index[cyc[first]] {
						first = i
					}
				}
				cyc = append(cyc[first:], cyc[:first]...)
				cyc = append(cyc, cyc[0])
				l.errs = append(l.errs, &LoadError{
					Pos: byName[cyc[0]].spec.Pos,
					Msg: "cycle: " + strings.Join(cyc, " -> "),
					Err: ErrCycle,
				})
			}
		}
		stack = stack[:len(stack)-1]
		color[n] = black
	}
	for _, n := range f.Order {
		if color[n] == white {
			visit(n)
		}
	}
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
