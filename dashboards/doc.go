// Package dashboards builds pyoco's Grafana dashboards as code with the
// Grafana foundation SDK, and holds the static checks of the whole
// observability stack (dashboards, Prometheus and collector configuration,
// compose.yaml, Dockerfile).
//
// It is its own Go module (github.com/pyoco/pyoco/dashboards) so that the
// SDK and the Prometheus query parser its tests need stay out of pyoco's
// go.mod. The committed JSON files next to this file are the output of
//
//	cd dashboards && go run ./gen
//
// and a test fails when they drift from [All]. Every PromQL expression uses
// only the metric names pyoco exports (docs/telemetry.md, SPEC §5) and only
// the Grafana variables $__rate_interval, $__range, $__interval and $flow;
// the Prometheus data source is the dashboard variable ${datasource}.
//
// Panels that do not query Prometheus (the runs table, read from the
// /runs API through the Infinity data source) have a description that
// starts with [NonPromQLMarker] and targets without an "expr".
//
// Nothing in pyoco's main module may import this package.
package dashboards
