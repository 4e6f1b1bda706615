package cli

import (
	"net/http"

	"github.com/pyoco/pyoco/ui"
)

// withUI serves the run viewer (package ui) under /ui beside the API, which
// keeps every other path: its own 404s, canonical-path checks and bearer
// check stay as they are. The viewer's static files need no token; the
// data the page reads come from the API with the token the user gives.
func withUI(apiHandler http.Handler, traceURL string) (http.Handler, error) {
	uh, err := ui.Handler(&ui.Config{TraceURL: traceURL})
	if err != nil {
		return nil, err
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ui.Match(r) {
			uh.ServeHTTP(w, r)
			return
		}
		apiHandler.ServeHTTP(w, r)
	}), nil
}
