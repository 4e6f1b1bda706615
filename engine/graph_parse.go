package engine

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// The graph DSL, as accepted by [ParseGraph]:
//
//	graph     = { sep } [ statement { sep { sep } statement } ] { sep } EOF
//	sep       = newline | ";"
//	statement = chain
//	chain     = expr { ">>" expr }
//	expr      = name | "(" chain { ("&" | "|") chain } ")"
//	name      = [A-Za-z0-9_.-]+
//
// "#" starts a comment that runs to the end of the line. A group is written
// on one line; a newline inside parentheses ends the statement and is
// reported as an unclosed '('.

type graphTokKind int

const (
	gtEOF graphTokKind = iota
	gtNewline
	gtSemi
	gtName
	gtShift // >>
	gtAmp   // &
	gtPipe  // |
	gtLParen
	gtRParen
)

type graphTok struct {
	kind graphTokKind
	text string
	pos  Position
}

// describe names the token for error messages.
func (t graphTok) describe() string {
	switch t.kind {
	case gtEOF:
		return "end of input"
	case gtNewline:
		return "end of line"
	case gtName:
		return fmt.Sprintf("task name %q", t.text)
	default:
		return "'" + t.text + "'"
	}
}

// graphLexer turns DSL text into tokens. Columns count runes, 1-based.
type graphLexer struct {
	src       string
	off       int
	line, col int
}

func isGraphNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
}

// isTaskName reports whether s is a valid task or flow name ([A-Za-z0-9_.-]+).
func isTaskName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isGraphNameByte(s[i]) {
			return false
		}
	}
	return true
}

func (lx *graphLexer) errorf(pos Position, format string, args ...any) *LoadError {
	return &LoadError{Pos: pos, Msg: fmt.Sprintf(format, args...)}
}

// skipBlanks skips spaces, tabs, carriage returns and comments (but not the
// newline that ends a comment).
func (lx *graphLexer) skipBlanks() {
	for lx.off < len(lx.src) {
		switch lx.src[lx.off] {
		case ' ', '\t', '\r':
			lx.off++
			lx.col++
		case '#':
			for lx.off < len(lx.src) && lx.src[lx.off] != '\n' {
				_, n := utf8.DecodeRuneInString(lx.src[lx.off:])
				lx.off += n
				lx.col++
			}
		default:
			return
		}
	}
}

func (lx *graphLexer) next() (graphTok, *LoadError) {
	lx.skipBlanks()
	if lx.off >= len(lx.src) {
		return graphTok{kind: gtEOF, pos: Position{Line: lx.line, Col: lx.col}}, nil
	}
	pos := Position{Line: lx.line, Col: lx.col}
	c := lx.src[lx.off]
	single := func(k graphTokKind) (graphTok, *LoadError) {
		lx.off++
		lx.col++
		return graphTok{kind: k, text: string(c), pos: pos}, nil
	}
	switch {
	case c == '\n':
		lx.off++
		lx.line++
		lx.col = 1
		return graphTok{kind: gtNewline, text: "\n", pos: pos}, nil
	case c == ';':
		return single(gtSemi)
	case c == '&':
		return single(gtAmp)
	case c == '|':
		return single(gtPipe)
	case c == '(':
		return single(gtLParen)
	case c == ')':
		return single(gtRParen)
	case c == '>':
		if strings.HasPrefix(lx.src[lx.off:], ">>") {
			lx.off += 2
			lx.col += 2
			return graphTok{kind: gtShift, text: ">>", pos: pos}, nil
		}
		return graphTok{}, lx.errorf(pos, "unexpected '>' (did you mean '>>'?)")
	case isGraphNameByte(c):
		start := lx.off
		for lx.off < len(lx.src) && isGraphNameByte(lx.src[lx.off]) {
			lx.off++
			lx.col++
		}
		return graphTok{kind: gtName, text: lx.src[start:lx.off], pos: pos}, nil
	}
	r, _ := utf8.DecodeRuneInString(lx.src[lx.off:])
	return graphTok{}, lx.errorf(pos, "unexpected character %q", r)
}

// graphEnd is an entry or exit node of an expression: a name mention and,
// for exits, whether it comes out of an '|' group.
type graphEnd struct {
	name string
	pos  Position
	any  bool
}

// graphExpr is the value of a parsed expression: the nodes edges go into
// (entries) and come out of (exits).
type graphExpr struct {
	entries, exits []graphEnd
}

// maxGraphDepth bounds the nesting of parentheses.
const maxGraphDepth = 100

type graphParser struct {
	lx    graphLexer
	tok   graphTok
	depth int // open groups
	g     *Graph
	seen  map[[2]string]int // edge (from, to) -> index in g.Edges
}

// ParseGraph parses the graph DSL of a flow file (SPEC §2): statements
// separated by newlines or ';', each a chain `expr >> expr …` where an expr
// is a task name or a parenthesised group joined by '&' (all) or '|' (any).
// `x >> y` adds an edge from every exit of x to every entry of y; edges out of
// an '|' group are marked Any. Duplicate edges are merged (Any if either is).
//
// The first problem found is returned as a [*LoadError] whose Pos is 1-based
// and relative to src (File empty). Self edges and mixing '&' with '|' in one
// group are errors.
func ParseGraph(src string) (*Graph, error) {
	p := &graphParser{
		lx:   graphLexer{src: src, line: 1, col: 1},
		g:    &Graph{},
		seen: make(map[[2]string]int),
	}
	if err := p.parse(); err != nil {
		return nil, err
	}
	return p.g, nil
}

func (p *graphParser) advance() *LoadError {
	t, err := p.lx.next()
	if err != nil {
		return err
	}
	p.tok = t
	return nil
}

func (p *graphParser) parse() *LoadError {
	if err := p.advance(); err != nil {
		return err
	}
	for {
		for p.tok.kind == gtNewline || p.tok.kind == gtSemi {
			if err := p.advance(); err != nil {
				return err
			}
		}
		if p.tok.kind == gtEOF {
			return nil
		}
		if _, err := p.chain(nil); err != nil {
			return err
		}
		switch p.tok.kind {
		case gtNewline, gtSemi, gtEOF:
		case gtName:
			return p.lx.errorf(p.tok.pos, "unexpected %s; missing '>>'?", p.tok.describe())
		case gtAmp, gtPipe:
			return p.lx.errorf(p.tok.pos, "unexpected '%s' outside parentheses", p.tok.text)
		case gtRParen:
			return p.lx.errorf(p.tok.pos, "unexpected ')' without matching '('")
		default:
			return p.lx.errorf(p.tok.pos, "unexpected %s", p.tok.describe())
		}
	}
}

// chain parses expr { ">>" expr }. open is the innermost unclosed '(' (nil
// at statement level), for error messages.
func (p *graphParser) chain(open *graphTok) (graphExpr, *LoadError) {
	first, err := p.expr(open, nil)
	if err != nil {
		return graphExpr{}, err
	}
	cur := first
	for p.tok.kind == gtShift {
		shift := p.tok
		if err := p.advance(); err != nil {
			return graphExpr{}, err
		}
		next, err := p.expr(open, &shift)
		if err != nil {
			return graphExpr{}, err
		}
		if err := p.connect(cur.exits, next.entries); err != nil {
			return graphExpr{}, err
		}
		cur = next
	}
	return graphExpr{entries: first.entries, exits: cur.exits}, nil
}

// expr parses a name or a parenthesised group. after is the '>>' just
// consumed, if any.
func (p *graphParser) expr(open, after *graphTok) (graphExpr, *LoadError) {
	t := p.tok
	switch t.kind {
	case gtName:
		if err := p.advance(); err != nil {
			return graphExpr{}, err
		}
		p.g.Nodes = append(p.g.Nodes, GraphNode{Name: t.text, Pos: t.pos})
		e := graphEnd{name: t.text, pos: t.pos}
		return graphExpr{entries: []graphEnd{e}, exits: []graphEnd{e}}, nil
	case gtLParen:
		return p.group()
	case gtNewline, gtSemi, gtEOF:
		if open != nil {
			return graphExpr{}, p.lx.errorf(open.pos, "unclosed '('")
		}
		if after != nil {
			return graphExpr{}, p.lx.errorf(t.pos, "expected task name after '>>', got %s", t.describe())
		}
		return graphExpr{}, p.lx.errorf(t.pos, "expected task name, got %s", t.describe())
	case gtShift, gtAmp, gtPipe:
		where := "at start of statement"
		switch {
		case after != nil:
			where = "after '>>'"
		case open != nil:
			where = "where a task name or '(' is expected"
		}
		return graphExpr{}, p.lx.errorf(t.pos, "unexpected '%s' %s", t.text, where)
	default:
		return graphExpr{}, p.lx.errorf(t.pos, "expected task name, got %s", t.describe())
	}
}

// group parses "(" chain { op chain } ")" with the current token at '('.
func (p *graphParser) group() (graphExpr, *LoadError) {
	open := p.tok
	if p.depth >= maxGraphDepth {
		return graphExpr{}, p.lx.errorf(open.pos, "groups nested too deeply (more than %d)", maxGraphDepth)
	}
	p.depth++
	defer func() { p.depth-- }()
	if err := p.advance(); err != nil {
		return graphExpr{}, err
	}
	var (
		out graphExpr
		op  graphTok // the group's operator, once seen
	)
	for {
		c, err := p.chain(&open)
		if err != nil {
			return graphExpr{}, err
		}
		out.entries = append(out.entries, c.entries...)
		out.exits = append(out.exits, c.exits...)
		switch t := p.tok; t.kind {
		case gtAmp, gtPipe:
			if op.kind != gtEOF && op.kind != t.kind {
				return graphExpr{}, p.lx.errorf(t.pos, "cannot mix '&' and '|' in one group; use parentheses")
			}
			op = t
			if err := p.advance(); err != nil {
				return graphExpr{}, err
			}
		case gtRParen:
			if err := p.advance(); err != nil {
				return graphExpr{}, err
			}
			if op.kind == gtPipe {
				for i := range out.exits {
					out.exits[i].any = true
				}
			}
			return out, nil
		case gtNewline, gtSemi, gtEOF:
			return graphExpr{}, p.lx.errorf(open.pos, "unclosed '('")
		default:
			return graphExpr{}, p.lx.errorf(t.pos, "unexpected %s; expected '&', '|', '>>' or ')'", t.describe())
		}
	}
}

// connect adds an edge from every exit to every entry.
func (p *graphParser) connect(exits, entries []graphEnd) *LoadError {
	for _, to := range entries {
		for _, from := range exits {
			if from.name == to.name {
				return p.lx.errorf(to.pos, "task %s cannot depend on itself", to.name)
			}
			key := [2]string{from.name, to.name}
			if i, ok := p.seen[key]; ok {
				p.g.Edges[i].Any = p.g.Edges[i].Any || from.any
				continue
			}
			p.seen[key] = len(p.g.Edges)
			p.g.Edges = append(p.g.Edges, GraphEdge{From: from.name, To: to.name, Any: from.any, Pos: to.pos})
		}
	}
	return nil
}

// FormatGraph prints g as canonical DSL text: first every name that has no
// edge, one per line, then for each edge target (in order of first
// appearance) one statement for its all-edges, `(a & b) >> c`, and one for
// its any-edges, `(a | b) >> c` (a single any-edge is written `(a | a) >> c`).
// [ParseGraph] of the result yields the same edge set, with Any preserved,
// and the same set of names.
func FormatGraph(g *Graph) string {
	if g == nil {
		return ""
	}
	var b strings.Builder
	hasEdge := make(map[string]bool)
	for _, e := range g.Edges {
		hasEdge[e.From] = true
		hasEdge[e.To] = true
	}
	printed := make(map[string]bool)
	for _, n := range g.Nodes {
		if !hasEdge[n.Name] && !printed[n.Name] {
			printed[n.Name] = true
			b.WriteString(n.Name)
			b.WriteByte('\n')
		}
	}
	var targets []string
	isTarget := make(map[string]bool)
	all := make(map[string][]string)
	anyOf := make(map[string][]string)
	for _, e := range g.Edges {
		if !isTarget[e.To] {
			isTarget[e.To] = true
			targets = append(targets, e.To)
		}
		if e.Any {
			anyOf[e.To] = append(anyOf[e.To], e.From)
		} else {
			all[e.To] = append(all[e.To], e.From)
		}
	}
	for _, to := range targets {
		switch froms := all[to]; len(froms) {
		case 0:
		case 1:
			fmt.Fprintf(&b, "%s >> %s\n", froms[0], to)
		default:
			fmt.Fprintf(&b, "(%s) >> %s\n", strings.Join(froms, " & "), to)
		}
		switch froms := anyOf[to]; len(froms) {
		case 0:
		case 1:
			fmt.Fprintf(&b, "(%s | %s) >> %s\n", froms[0], froms[0], to)
		default:
			fmt.Fprintf(&b, "(%s) >> %s\n", strings.Join(froms, " | "), to)
		}
	}
	return b.String()
}
