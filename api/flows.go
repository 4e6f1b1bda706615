package api

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/pyoco/pyoco/engine"
)

// FlowSource is what the server offers by flow_name: the flows of the
// --flows directory. Implementations are safe for concurrent use.
type FlowSource interface {
	// FlowGet returns the flow named name, or an error wrapping
	// [engine.ErrNotFound].
	FlowGet(name string) (*engine.Flow, error)
	// FlowList returns every flow, sorted by name, and the problems of the
	// files that did not load.
	FlowList() ([]*engine.Flow, []FlowProblem)
}

// FlowProblem is a flow file that the server could not offer: it did not
// load, or its flow name is taken by an earlier file.
type FlowProblem struct {
	File    string `json:"file"`
	Message string `json:"message"`
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
}

// Flows is a fixed [FlowSource]. The zero value offers no flows.
type Flows struct {
	byName   map[string]*engine.Flow
	problems []FlowProblem
}

// NewFlows returns a [Flows] offering flows. It returns an error if two
// share a name.
func NewFlows(flows ...*engine.Flow) (*Flows, error) {
	fs := &Flows{byName: make(map[string]*engine.Flow, len(flows))}
	for _, f := range flows {
		if _, dup := fs.byName[f.Name]; dup {
			return nil, fmt.Errorf("flows: two flows named %q", f.Name)
		}
		fs.byName[f.Name] = f
	}
	return fs, nil
}

// LoadFlowDir loads every *.yaml and *.yml file of dir (not its
// subdirectories) with [engine.LoadFlowFile] and tasks. A file that does not
// load is not fatal: it is left out and reported by FlowList (and GET
// /flows) with its position; so is a file whose flow name an earlier file
// (by file name) already took. The error is non-nil only when dir cannot be
// read; it wraps [os.ErrNotExist] when dir does not exist.
func LoadFlowDir(dir string, tasks engine.TaskLookup) (*Flows, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("load flows: %w", err)
	}
	fs := &Flows{byName: make(map[string]*engine.Flow)}
	byFile := make(map[string]string)
	for _, e := range entries {
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if e.IsDir() || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		f, err := engine.LoadFlowFile(path, tasks)
		if err != nil {
			fs.problems = append(fs.problems, loadProblems(path, err)...)
			continue
		}
		if prev, dup := byFile[f.Name]; dup {
			fs.problems = append(fs.problems, FlowProblem{File: path,
				Message: fmt.Sprintf("flow %q is already defined in %s; this file is ignored", f.Name, prev)})
			continue
		}
		byFile[f.Name] = path
		fs.byName[f.Name] = f
	}
	return fs, nil
}

func loadProblems(path string, err error) []FlowProblem {
	var les engine.LoadErrors
	if errors.As(err, &les) {
		out := make([]FlowProblem, 0, len(les))
		for _, l := range les {
			file := l.Pos.File
			if file == "" {
				file = path
			}
			out = append(out, FlowProblem{File: file, Message: l.Msg, Line: l.Pos.Line, Column: l.Pos.Col})
		}
		return out
	}
	return []FlowProblem{{File: path, Message: err.Error()}}
}

// FlowGet implements [FlowSource].
func (fs *Flows) FlowGet(name string) (*engine.Flow, error) {
	if fs != nil {
		if f, ok := fs.byName[name]; ok {
			return f, nil
		}
	}
	return nil, fmt.Errorf("flow %q: %w", name, engine.ErrNotFound)
}

// FlowList implements [FlowSource].
func (fs *Flows) FlowList() ([]*engine.Flow, []FlowProblem) {
	if fs == nil {
		return nil, nil
	}
	out := make([]*engine.Flow, 0, len(fs.byName))
	for _, f := range fs.byName {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, slices.Clone(fs.problems)
}

// flowSummaryDoc is one entry of GET /flows.
type flowSummaryDoc struct {
	Name        string         `json:"name"`
	Description string         `json:"description"`
	File        string         `json:"file"`
	Tasks       int            `json:"tasks"`
	Defaults    map[string]any `json:"defaults"`
}

// flowDoc is GET /flows/{name}.
type flowDoc struct {
	Name        string         `json:"name"`
	Description string         `json:"description"`
	File        string         `json:"file"`
	Defaults    map[string]any `json:"defaults"`
	MaxParallel int            `json:"max_parallel"`
	Timeout     *string        `json:"timeout"`
	Graph       string         `json:"graph"`
	Tasks       []flowTaskDoc  `json:"tasks"`
	Edges       []flowEdgeDoc  `json:"edges"`
	Warnings    []FlowProblem  `json:"warnings"`
	Source      string         `json:"source"`
}

type flowTaskDoc struct {
	Name          string         `json:"name"`
	Use           string         `json:"use"`
	Upstream      []string       `json:"upstream"`
	Trigger       string         `json:"trigger"`
	FailPolicy    string         `json:"fail_policy"`
	Retries       int            `json:"retries"`
	RetryDelay    *string        `json:"retry_delay"`
	RetryMaxDelay *string        `json:"retry_max_delay"`
	Timeout       *string        `json:"timeout"`
	Inputs        map[string]any `json:"inputs"`
	Line          int            `json:"line,omitempty"`
}

type flowEdgeDoc struct {
	From string `json:"from"`
	To   string `json:"to"`
}

func nonNilMap(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

func newFlowSummaryDoc(f *engine.Flow) flowSummaryDoc {
	return flowSummaryDoc{Name: f.Name, Description: f.Description, File: f.File, Tasks: len(f.Tasks), Defaults: nonNilMap(f.Defaults)}
}

func newFlowDoc(f *engine.Flow) flowDoc {
	d := flowDoc{
		Name: f.Name, Description: f.Description, File: f.File, Defaults: nonNilMap(f.Defaults),
		MaxParallel: f.MaxParallel, Timeout: durString(f.Timeout.String(), f.Timeout != 0), Graph: f.Graph,
		Tasks: make([]flowTaskDoc, 0, len(f.Order)), Edges: []flowEdgeDoc{}, Warnings: []FlowProblem{}, Source: f.Source,
	}
	for _, name := range f.Order {
		t := f.Tasks[name]
		up := slices.Clone(t.Upstream)
		if up == nil {
			up = []string{}
		}
		d.Tasks = append(d.Tasks, flowTaskDoc{
			Name: name, Use: t.Use, Upstream: up, Trigger: string(t.Trigger), FailPolicy: string(t.FailPolicy),
			Retries: t.Retries, RetryDelay: durString(t.RetryDelay.String(), t.RetryDelay != 0),
			RetryMaxDelay: durString(t.RetryMaxDelay.String(), t.RetryMaxDelay != 0),
			Timeout:       durString(t.Timeout.String(), t.Timeout != 0), Inputs: nonNilMap(t.Inputs), Line: t.Pos.Line,
		})
		for _, u := range t.Upstream {
			d.Edges = append(d.Edges, flowEdgeDoc{From: u, To: name})
		}
	}
	for _, w := range f.Warnings {
		d.Warnings = append(d.Warnings, FlowProblem{File: w.Pos.File, Message: w.Msg, Line: w.Pos.Line, Column: w.Pos.Col})
	}
	return d
}

func durString(s string, ok bool) *string {
	if !ok {
		return nil
	}
	return &s
}
