package api

import (
	"net/http"

	"github.com/pyoco/pyoco/engine"
)

// runFlow answers GET /runs/{run_id}/flow: the flow snapshot the run
// executes (the text stored when it was created), in the shape of GET
// /flows/{name}. It is parsed without the task registry, so that a server
// without a plug-in's implementation still shows the graph of a run that
// uses it. The run viewer (/ui) draws its task graph from it.
func (s *Server) runFlow(w http.ResponseWriter, r *http.Request) error {
	if err := checkKnown(r.URL.Query()); err != nil {
		return err
	}
	run, err := s.getRun(r.Context(), r.PathValue("run_id"))
	if err != nil {
		return err
	}
	f, err := engine.LoadFlow(run.FlowFile, []byte(run.FlowSource), nil)
	if err != nil {
		// A snapshot that no longer parses (stored by another version):
		// 422 with its positions, as a bad flow_yaml would get.
		return err
	}
	writeJSON(w, http.StatusOK, newFlowDoc(f))
	return nil
}
