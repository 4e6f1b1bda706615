package engine

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
)

// Expression variables (docs/flows.md, "Expressions").
const (
	ExprParams = "params" // the run's params (defaults merged with run params)
	ExprNode   = "node"   // node.<task>.output: outputs of finished upstream tasks
	ExprItem   = "item"   // the current foreach item
	ExprIndex  = "index"  // the current foreach index, from 0
	ExprOutput = "output" // in until: the output of the round that just ended
)

// exprEnv are the variables every expression may name; item and index are
// nil outside a foreach, output outside an until.
type exprEnv struct {
	Params map[string]any `expr:"params"`
	Node   map[string]any `expr:"node"`
	Item   any            `expr:"item"`
	Index  any            `expr:"index"`
	Output any            `expr:"output"`
}

// exprMaxNodes bounds the size of one expression's syntax tree.
const exprMaxNodes = 10000

// Expr is a compiled expression of a flow file (`when`, `switch`,
// `foreach`, `until`), evaluated with [expr-lang/expr]. Expressions are
// pure: they see only the variables above (no clock, no environment), so a
// run taken over by another worker evaluates them to the same value.
//
// [expr-lang/expr]: https://expr-lang.org
type Expr struct {
	// Text is the expression as written.
	Text string
	// Pos is where it is written.
	Pos  Position
	prog *vm.Program
	// nodes are the tasks it reads through node.<task>, in order of use;
	// vars the variables it names.
	nodes []string
	vars  map[string]bool
	// params are the params it reads as params.<name>.
	params []string
}

// exprKind says what an expression must give.
type exprKind int

const (
	exprAny exprKind = iota
	exprBool
)

// compileExpr compiles text. The error is an *exprError with the
// position of the fault inside text (line and column from 1).
func compileExpr(text string, kind exprKind) (*Expr, error) {
	opts := []expr.Option{
		expr.Env(exprEnv{}),
		expr.DisableBuiltin("now"),
		expr.MaxNodes(exprMaxNodes),
	}
	if kind == exprBool {
		opts = append(opts, expr.AsBool())
	}
	prog, err := expr.Compile(text, opts...)
	if err != nil {
		return nil, newExprError(err)
	}
	x := &Expr{Text: text, prog: prog, vars: map[string]bool{}}
	seen := map[string]bool{}
	ast.Find(prog.Node(), func(n ast.Node) bool {
		if name, ok := nodeMember(n); ok && !seen[name] {
			seen[name] = true
			x.nodes = append(x.nodes, name)
		}
		if id, ok := n.(*ast.IdentifierNode); ok {
			x.vars[id.Value] = true
		}
		if m, ok := n.(*ast.MemberNode); ok {
			if id, ok := m.Node.(*ast.IdentifierNode); ok && id.Value == ExprParams {
				if p, ok := m.Property.(*ast.StringNode); ok && !slices.Contains(x.params, p.Value) {
					x.params = append(x.params, p.Value)
				}
			}
		}
		return false
	})
	return x, nil
}

// nodeMember reports the task of a `node.<task>` (or `node["<task>"]`)
// member expression.
func nodeMember(n ast.Node) (string, bool) {
	m, ok := n.(*ast.MemberNode)
	if !ok {
		return "", false
	}
	id, ok := m.Node.(*ast.IdentifierNode)
	if !ok || id.Value != ExprNode {
		return "", false
	}
	s, ok := m.Property.(*ast.StringNode)
	if !ok {
		return "", false
	}
	return s.Value, true
}

// exprError is an expression that does not compile or evaluate.
type exprError struct {
	Line, Col int // inside the expression, from 1; 0 if unknown
	Msg       string
}

func (e *exprError) Error() string { return e.Msg }

func newExprError(err error) *exprError {
	var fe *file.Error
	if errors.As(err, &fe) {
		return &exprError{Line: fe.Line, Col: fe.Column + 1, Msg: fe.Message}
	}
	return &exprError{Msg: err.Error()}
}

// exprScope is what an expression evaluates against.
type exprScope struct {
	params  map[string]any
	outputs map[string]any // by task
	item    any
	index   any // nil outside a foreach
	output  any
}

// eval runs x against s.
func (x *Expr) eval(s *exprScope) (any, error) {
	node := make(map[string]any, len(x.nodes))
	for _, name := range x.nodes {
		if out, ok := s.outputs[name]; ok {
			node[name] = map[string]any{"output": out}
		}
	}
	params := s.params
	if params == nil {
		params = map[string]any{}
	}
	v, err := expr.Run(x.prog, exprEnv{Params: params, Node: node, Item: s.item, Index: s.index, Output: s.output})
	if err != nil {
		return nil, fmt.Errorf("expression %s: %s", quoteExpr(x.Text), firstLine(newExprError(err).Msg))
	}
	return v, nil
}

// evalBool runs x, which must give a boolean.
func (x *Expr) evalBool(s *exprScope) (bool, error) {
	v, err := x.eval(s)
	if err != nil {
		return false, err
	}
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("expression %s gave %s, not a boolean", quoteExpr(x.Text), jsonKind(normalizeJSON(v)))
	}
	return b, nil
}

// quoteExpr shortens an expression for a message.
func quoteExpr(s string) string {
	s = firstLine(s)
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return fmt.Sprintf("%q", s)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// caseKey is the text a switch value is matched against the case keys with:
// strings as they are, numbers, booleans and null in their JSON form.
func caseKey(v any) (string, error) {
	switch t := normalizeJSON(v).(type) {
	case string:
		return t, nil
	case nil:
		return "null", nil
	case bool, float64, int, int64:
		return fmt.Sprint(t), nil
	default:
		if _, ok := t.(interface{ String() string }); ok {
			return fmt.Sprint(t), nil
		}
		return "", fmt.Errorf("gave %s: a switch needs a string, number, boolean or null", jsonKind(t))
	}
}
