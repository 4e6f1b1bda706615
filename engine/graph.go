package engine

// GraphEdge is one dependency declared by the graph DSL: To runs after From.
// Any is true when the edge comes from an `|` group, which gives To the
// trigger "any".
type GraphEdge struct {
	From, To string
	Any      bool
	// Pos is the position of To's name in the statement that made the edge
	// (1-based line and column within the DSL text; File is empty).
	Pos Position
}

// GraphNode is one mention of a task name in the DSL.
type GraphNode struct {
	Name string
	Pos  Position // within the DSL text
}

// Graph is the result of parsing the graph DSL.
type Graph struct {
	// Nodes lists every name mention, in text order (a name may repeat).
	Nodes []GraphNode
	// Edges lists every edge, in text order, without duplicates.
	Edges []GraphEdge
}
