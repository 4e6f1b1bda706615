package api

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/pyoco/pyoco/api/apidoc"
	"github.com/pyoco/pyoco/engine"
)

// pingTimeout bounds a readiness check of the store.
const pingTimeout = 2 * time.Second

// TaskDoc is one registered task in GET /tasks; the same shape as
// `pyoco tasks list --json`.
type TaskDoc struct {
	Name     string         `json:"name"`
	Plugin   string         `json:"plugin"`
	Summary  string         `json:"summary"`
	Tags     []string       `json:"tags"`
	Category string         `json:"category"`
	Inputs   []engine.Param `json:"inputs"`
	Outputs  []engine.Param `json:"outputs"`
	// Workers are the live workers that announce the task (GET /tasks;
	// absent when none does, and in `pyoco tasks list`).
	Workers []string `json:"workers,omitempty"`
	// Remote is true for a task only live workers have: this server knows
	// its name and plug-in, not its metadata.
	Remote bool `json:"remote,omitempty"`
}

// NewTaskDoc returns the document of d.
func NewTaskDoc(d *engine.TaskDef) TaskDoc {
	tags, in, out := d.Tags, d.Inputs, d.Outputs
	if tags == nil {
		tags = []string{}
	}
	if in == nil {
		in = []engine.Param{}
	}
	if out == nil {
		out = []engine.Param{}
	}
	return TaskDoc{Name: d.Name, Plugin: d.Plugin, Summary: d.Summary, Tags: tags, Category: d.Category, Inputs: in, Outputs: out}
}

// workerDoc is one live worker in GET /workers.
type workerDoc struct {
	ID            string           `json:"id"`
	Host          string           `json:"host"`
	StartedAt     apidoc.Timestamp `json:"started_at"`
	LastHeartbeat apidoc.Timestamp `json:"last_heartbeat"`
	Running       []string         `json:"running"`
	Concurrency   int              `json:"concurrency"`
}

func (s *Server) flowList(w http.ResponseWriter, r *http.Request) error {
	if err := checkKnown(r.URL.Query()); err != nil {
		return err
	}
	doc := struct {
		Flows  []flowSummaryDoc `json:"flows"`
		Errors []FlowProblem    `json:"errors"`
	}{Flows: []flowSummaryDoc{}, Errors: []FlowProblem{}}
	if s.cfg.Flows != nil {
		flows, problems := s.cfg.Flows.FlowList()
		for _, f := range flows {
			doc.Flows = append(doc.Flows, newFlowSummaryDoc(f))
		}
		if problems != nil {
			doc.Errors = problems
		}
	}
	writeJSON(w, http.StatusOK, doc)
	return nil
}

func (s *Server) flowGet(w http.ResponseWriter, r *http.Request) error {
	if err := checkKnown(r.URL.Query()); err != nil {
		return err
	}
	name := r.PathValue("name")
	if s.cfg.Flows == nil {
		return errNotFound("flow %q not found", clip(name))
	}
	f, err := s.cfg.Flows.FlowGet(name)
	if err != nil {
		return errNotFound("flow %q not found (see GET /flows)", clip(name))
	}
	writeJSON(w, http.StatusOK, newFlowDoc(f))
	return nil
}

func (s *Server) taskList(w http.ResponseWriter, r *http.Request) error {
	if err := checkKnown(r.URL.Query()); err != nil {
		return err
	}
	defs := s.eng.Registry().List()
	docs := make([]TaskDoc, 0, len(defs))
	byName := make(map[string]int, len(defs))
	for _, d := range defs {
		byName[d.Name] = len(docs)
		docs = append(docs, NewTaskDoc(d))
	}
	// The union with what live workers announce: a server on Redis need
	// not have the plug-ins its workers run.
	ws, err := s.workers(r.Context())
	if err != nil {
		return err
	}
	for _, wi := range ws {
		for _, name := range wi.Tasks {
			i, ok := byName[name]
			if !ok {
				plugin, _, found := strings.Cut(name, "/")
				if !found {
					plugin = ""
				}
				i = len(docs)
				byName[name] = i
				docs = append(docs, TaskDoc{Name: name, Plugin: plugin, Tags: []string{}, Inputs: []engine.Param{},
					Outputs: []engine.Param{}, Remote: true})
			}
			docs[i].Workers = append(docs[i].Workers, wi.ID)
		}
	}
	slices.SortFunc(docs, func(a, b TaskDoc) int { return strings.Compare(a.Name, b.Name) })
	for i := range docs {
		slices.Sort(docs[i].Workers)
		docs[i].Workers = slices.Compact(docs[i].Workers)
	}
	writeJSON(w, http.StatusOK, map[string]any{"tasks": docs})
	return nil
}

func (s *Server) pluginList(w http.ResponseWriter, r *http.Request) error {
	if err := checkKnown(r.URL.Query()); err != nil {
		return err
	}
	if s.cfg.Plugins == nil {
		writeJSON(w, http.StatusOK, map[string]any{"path": []string{}, "plugins": []any{}})
		return nil
	}
	writeJSON(w, http.StatusOK, s.cfg.Plugins)
	return nil
}

// workers lists the live workers: from the store's worker registry, else
// from Config.Workers.
func (s *Server) workers(ctx context.Context) ([]engine.WorkerInfo, error) {
	if wr, ok := s.store.(engine.WorkerRegistry); ok {
		return wr.WorkerList(ctx)
	}
	if s.cfg.Workers != nil {
		return s.cfg.Workers(ctx)
	}
	return nil, nil
}

func (s *Server) workerList(w http.ResponseWriter, r *http.Request) error {
	if err := checkKnown(r.URL.Query()); err != nil {
		return err
	}
	ws, err := s.workers(r.Context())
	if err != nil {
		return err
	}
	docs := make([]workerDoc, 0, len(ws))
	for _, wi := range ws {
		docs = append(docs, workerDoc{ID: wi.ID, Host: wi.Host, StartedAt: apidoc.Timestamp(wi.StartedAt),
			LastHeartbeat: apidoc.Timestamp(wi.LastHeartbeat), Running: sortedStrings(wi.Running), Concurrency: wi.Concurrency})
	}
	slices.SortFunc(docs, func(a, b workerDoc) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	writeJSON(w, http.StatusOK, map[string]any{"workers": docs})
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	if p, ok := s.store.(engine.Pinger); ok {
		ctx, cancel := context.WithTimeout(r.Context(), pingTimeout)
		defer cancel()
		if err := p.Ping(ctx); err != nil {
			return &apiError{status: http.StatusServiceUnavailable, doc: ErrorDoc{Code: CodeUnavailable,
				Message: "not ready: the state store is unreachable: " + err.Error()}}
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	return nil
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Metrics == nil {
		return errNotFound("metrics are not enabled on this server")
	}
	s.cfg.Metrics.ServeHTTP(w, r)
	return nil
}
