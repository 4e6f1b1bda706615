// Package api is pyoco's REST API (SPEC §4): an [http.Handler] over an
// [engine.Engine] that submits, lists, shows, follows and cancels runs and
// describes the flows, tasks, plug-ins and workers a server offers.
//
// Build one with [New] and serve [Server.Handler]:
//
//	srv, err := api.New(eng, &api.Config{Flows: flows, Token: os.Getenv("PYOCO_API_TOKEN")})
//	...
//	http.ListenAndServe(":8000", srv.Handler())
//
// Every response is JSON; every error is {"error": {"code", "message"}}
// with a 4xx or 5xx status, mapped from engine errors in one place
// (engine.ErrNotFound → 404 not_found, engine.ErrConflict → 409 conflict,
// engine.ErrBadCursor → 400 bad_request, engine.ErrUnavailable → 503
// unavailable). Bad input never yields a 500; a panic in a handler is
// recovered into a 500 internal error. docs/api.md is the operator's
// reference and GET /openapi.json the machine-readable one.
//
// Concurrent identical reads (GET /runs with the same query, GET
// /runs/{run_id} of the same run) share one store read and one encoding;
// a request only joins a read that starts after it arrived, so answers are
// never older than the request ([Config.NoCoalescing] turns it off).
//
// The package imports engine and the OpenTelemetry API only; it must not
// import plugins, telemetry, webhooks or the stores (the command line wires
// those in through [Config]).
package api
