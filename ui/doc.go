// Package ui is pyoco's run viewer: plain HTML, CSS and JavaScript embedded
// with go:embed and served by `pyoco server` under /ui (docs/api.md). The
// page talks to the REST API of the same server with the bearer token the
// user types in (kept in the tab's sessionStorage), so the static files
// themselves are served without the token and hold no data.
//
// It imports only the standard library; it must not import api, engine or
// any other pyoco package.
package ui
