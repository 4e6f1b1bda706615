// Links between tasks: depends_on, the graph section, expression
// references, ancestry and cycles.

package engine

import (
	"errors"
	"slices"
	"strings"

	"github.com/goccy/go-yaml/ast"
)

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
