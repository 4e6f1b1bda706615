// Loading a task's control flow: when, switch, foreach, until/repeat and
// their expressions.

package engine

import (
	"errors"
	"fmt"
	"strings"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
)

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
