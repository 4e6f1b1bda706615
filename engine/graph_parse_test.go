package engine_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/pyoco/pyoco/engine"
	"github.com/stretchr/testify/require"
)

// edgeStrings renders edges as "a>b" (all) or "a|b" (any), in graph order.
func edgeStrings(g *engine.Graph) []string {
	out := make([]string, 0, len(g.Edges))
	for _, e := range g.Edges {
		op := ">"
		if e.Any {
			op = "|"
		}
		out = append(out, e.From+op+e.To)
	}
	return out
}

// nodeSet returns the distinct names mentioned in g, sorted.
func nodeSet(g *engine.Graph) []string {
	var out []string
	for _, n := range g.Nodes {
		if !slices.Contains(out, n.Name) {
			out = append(out, n.Name)
		}
	}
	slices.Sort(out)
	return out
}

func TestParseGraph(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		src   string
		edges []string
		nodes []string
	}{
		{name: "empty", src: ""},
		{name: "only comments and blanks", src: "# nothing\n\n  ; ;\n# more"},
		{name: "single name", src: "a", nodes: []string{"a"}},
		{name: "chain", src: "a >> b >> c", edges: []string{"a>b", "b>c"}, nodes: []string{"a", "b", "c"}},
		{name: "no spaces", src: "a>>b", edges: []string{"a>b"}, nodes: []string{"a", "b"}},
		{name: "names with dots and dashes", src: "load.v2 >> post-process_1", edges: []string{"load.v2>post-process_1"}, nodes: []string{"load.v2", "post-process_1"}},
		{name: "fan in", src: "(a & b) >> c", edges: []string{"a>c", "b>c"}, nodes: []string{"a", "b", "c"}},
		{name: "fan out", src: "a >> (b & c)", edges: []string{"a>b", "a>c"}, nodes: []string{"a", "b", "c"}},
		{name: "any", src: "(a | b) >> c", edges: []string{"a|c", "b|c"}, nodes: []string{"a", "b", "c"}},
		{name: "any then chain", src: "(a | b) >> c >> d", edges: []string{"a|c", "b|c", "c>d"}, nodes: []string{"a", "b", "c", "d"}},
		{name: "diamond", src: "gather >> (chop & boil) >> curry", edges: []string{"gather>chop", "gather>boil", "chop>curry", "boil>curry"}, nodes: []string{"boil", "chop", "curry", "gather"}},
		{name: "nested", src: "((a >> b) & c) >> d", edges: []string{"a>b", "b>d", "c>d"}, nodes: []string{"a", "b", "c", "d"}},
		{name: "chain inside group", src: "x >> (a >> b | c) >> d", edges: []string{"a>b", "x>a", "x>c", "b|d", "c|d"}, nodes: []string{"a", "b", "c", "d", "x"}},
		{name: "nested any inside all", src: "((a | b) & c) >> d", edges: []string{"a|d", "b|d", "c>d"}, nodes: []string{"a", "b", "c", "d"}},
		{name: "single-element group", src: "(a) >> ((b))", edges: []string{"a>b"}, nodes: []string{"a", "b"}},
		{name: "semicolons and comments", src: "a >> b; b >> c # tail\n# whole line\nd", edges: []string{"a>b", "b>c"}, nodes: []string{"a", "b", "c", "d"}},
		{name: "duplicates merged", src: "a >> b\na >> b\n(a & a) >> b", edges: []string{"a>b"}, nodes: []string{"a", "b"}},
		{name: "duplicate becomes any", src: "a >> c\n(a | b) >> c", edges: []string{"a|c", "b|c"}, nodes: []string{"a", "b", "c"}},
		{name: "crlf and tabs", src: "a\t>>\tb\r\nb >> c\r\n", edges: []string{"a>b", "b>c"}, nodes: []string{"a", "b", "c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g, err := engine.ParseGraph(tt.src)
			require.NoError(t, err)
			if tt.edges == nil {
				tt.edges = []string{}
			}
			require.Equal(t, tt.edges, edgeStrings(g))
			require.Equal(t, tt.nodes, nodeSet(g))
		})
	}
}

func TestParseGraphPositions(t *testing.T) {
	t.Parallel()
	g, err := engine.ParseGraph("# header\n  gather >> (chop & boil)\n(chop | boil) >> curry")
	require.NoError(t, err)
	require.Equal(t, []engine.GraphNode{
		{Name: "gather", Pos: engine.Position{Line: 2, Col: 3}},
		{Name: "chop", Pos: engine.Position{Line: 2, Col: 14}},
		{Name: "boil", Pos: engine.Position{Line: 2, Col: 21}},
		{Name: "chop", Pos: engine.Position{Line: 3, Col: 2}},
		{Name: "boil", Pos: engine.Position{Line: 3, Col: 9}},
		{Name: "curry", Pos: engine.Position{Line: 3, Col: 18}},
	}, g.Nodes)
	require.Equal(t, []engine.GraphEdge{
		{From: "gather", To: "chop", Pos: engine.Position{Line: 2, Col: 14}},
		{From: "gather", To: "boil", Pos: engine.Position{Line: 2, Col: 21}},
		{From: "chop", To: "curry", Any: true, Pos: engine.Position{Line: 3, Col: 18}},
		{From: "boil", To: "curry", Any: true, Pos: engine.Position{Line: 3, Col: 18}},
	}, g.Edges)
}

func TestParseGraphErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, src string
		line, col int
		msg       string
	}{
		{"leading shift", ">> a", 1, 1, "unexpected '>>' at start of statement"},
		{"double shift", "a >> >> b", 1, 6, "unexpected '>>' after '>>'"},
		{"trailing shift", "a >>", 1, 5, "expected task name after '>>', got end of input"},
		{"trailing shift newline", "a >>\nb", 1, 5, "expected task name after '>>', got end of line"},
		{"trailing shift semicolon", "a >> ;", 1, 6, "expected task name after '>>', got ';'"},
		{"single gt", "a > b", 1, 3, "unexpected '>' (did you mean '>>'?)"},
		{"empty group", "a >> ()", 1, 7, "expected task name, got ')'"},
		{"unclosed", "x\n(a & b >> c", 2, 1, "unclosed '('"},
		{"unclosed across newline", "(a &\nb) >> c", 1, 1, "unclosed '('"},
		{"unclosed nested", "((a & b) >> c", 1, 1, "unclosed '('"},
		{"unclosed inner", "(a & (b", 1, 6, "unclosed '('"},
		{"stray close", "a >> b)", 1, 7, "unexpected ')' without matching '('"},
		{"mix", "(a & b | c) >> d", 1, 8, "cannot mix '&' and '|' in one group; use parentheses"},
		{"mix reversed", "d >> (a | b & c)", 1, 13, "cannot mix '&' and '|' in one group; use parentheses"},
		{"amp outside group", "a & b", 1, 3, "unexpected '&' outside parentheses"},
		{"pipe outside group", "a >> b | c", 1, 8, "unexpected '|' outside parentheses"},
		{"missing shift", "a b", 1, 3, `unexpected task name "b"; missing '>>'?`},
		{"missing operator in group", "(a b) >> c", 1, 4, `unexpected task name "b"; expected '&', '|', '>>' or ')'`},
		{"operator first in group", "(& a) >> c", 1, 2, "unexpected '&' where a task name or '(' is expected"},
		{"bad char", "a >> b$", 1, 7, "unexpected character '$'"},
		{"slash", "a >> x/y", 1, 7, "unexpected character '/'"},
		{"unicode column", "é >> a", 1, 1, "unexpected character 'é'"},
		{"unicode in comment keeps columns", "# ééé\na >> >> b", 2, 6, "unexpected '>>' after '>>'"},
		{"too deep", strings.Repeat("(", 101) + "a" + strings.Repeat(")", 101), 1, 101, "groups nested too deeply (more than 100)"},
		{"self edge", "a >> b >> a >> a", 1, 16, "task a cannot depend on itself"},
		{"self edge via group", "(a & b) >> (a & c)", 1, 13, "task a cannot depend on itself"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g, err := engine.ParseGraph(tt.src)
			require.Nil(t, g)
			var le *engine.LoadError
			require.ErrorAs(t, err, &le)
			require.Equal(t, engine.Position{Line: tt.line, Col: tt.col}, le.Pos)
			require.Equal(t, tt.msg, le.Msg)
			require.Equal(t, fmt.Sprintf("%d:%d: %s", tt.line, tt.col, tt.msg), err.Error())
		})
	}
}

func TestFormatGraph(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, src, want string
	}{
		{"empty", "", ""},
		{"isolated first", "a >> b\nc\nd", "c\nd\na >> b\n"},
		{"fan in", "gather >> (chop & boil) >> curry", "gather >> chop\ngather >> boil\n(chop & boil) >> curry\n"},
		{"any", "(a | b) >> c", "(a | b) >> c\n"},
		{"single any", "a >> c\n(a | b) >> d\nb >> d\n(x | x) >> y", "a >> c\n(a | b) >> d\n(x | x) >> y\n"},
		{"mixed", "((a | b) & c) >> d", "c >> d\n(a | b) >> d\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g, err := engine.ParseGraph(tt.src)
			require.NoError(t, err)
			text := engine.FormatGraph(g)
			require.Equal(t, tt.want, text)
			requireSameGraph(t, g, text)
		})
	}
	require.Empty(t, engine.FormatGraph(nil))
}

// requireSameGraph checks that text parses to the same edges and names as g.
func requireSameGraph(t testing.TB, g *engine.Graph, text string) {
	t.Helper()
	g2, err := engine.ParseGraph(text)
	require.NoError(t, err, "formatted text:\n%s", text)
	e1, e2 := edgeStrings(g), edgeStrings(g2)
	slices.Sort(e1)
	slices.Sort(e2)
	require.Equal(t, e1, e2, "formatted text:\n%s", text)
	require.Equal(t, nodeSet(g), nodeSet(g2), "formatted text:\n%s", text)
	// Formatting is canonical: a second round gives the same text.
	require.Equal(t, text, engine.FormatGraph(g2))
}

func TestFormatGraphLarge(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	for i := range 50 {
		fmt.Fprintf(&b, "(n%d & n%d) >> (n%d | n%d) >> n%d\n", i, i+1, i+2, i+3, i+4)
	}
	g, err := engine.ParseGraph(b.String())
	require.NoError(t, err)
	requireSameGraph(t, g, engine.FormatGraph(g))
}
