// Loading sub-flow tasks: use: flow/<name> and inline flow_yaml.

package engine

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/goccy/go-yaml/ast"
)

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
