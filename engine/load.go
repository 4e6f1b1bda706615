package engine

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
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

func names(ps []posString) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		if !slices.Contains(out, p.s) {
			out = append(out, p.s)
		}
	}
	return out
}
