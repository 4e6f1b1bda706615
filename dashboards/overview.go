package dashboards

import (
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// terminal matches the statuses a run ends in.
const terminal = `COMPLETED|FAILED|CANCELLED`

// quantile is histogram_quantile(q) of a pyoco histogram, by the labels of
// by, over $__rate_interval, filtered by $flow when the metric has a flow
// label.
func quantile(q float64, metric, by string, flowFilter bool) string {
	sel := metric + "_bucket"
	if flowFilter {
		sel += `{flow=~"$flow"}`
	}
	group := "le"
	if by != "" {
		group += ", " + by
	}
	return fmt.Sprintf(`histogram_quantile(%g, sum by (%s) (rate(%s[$__rate_interval])))`, q, group, sel)
}

func smallStat(title, desc, expr, color string) *stat.PanelBuilder {
	return stat.NewPanelBuilder().
		Title(title).
		Description(desc).
		Span(6).Height(5).
		WithTarget(query("A", expr, "")).
		Unit("none").
		ColorScheme(fixedColor(color)).
		Thresholds(baseThresholds(color)).
		ColorMode(common.BigValueColorModeValue).
		GraphMode(common.BigValueGraphModeArea).
		TextMode(common.BigValueTextModeValue).
		Orientation(common.VizOrientationAuto).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}).Values(false))
}

func series(title, desc, unit string, span uint32) *timeseries.PanelBuilder {
	return timeseries.NewPanelBuilder().
		Title(title).
		Description(desc).
		Span(span).Height(8).
		Unit(unit).
		ColorScheme(dashboard.NewFieldColorBuilder().Mode(dashboard.FieldColorModeIdPaletteClassic)).
		LineWidth(1).FillOpacity(10).
		ShowPoints(common.VisibilityModeNever).
		Legend(common.NewVizLegendOptionsBuilder().
			DisplayMode(common.LegendDisplayModeTable).
			Placement(common.LegendPlacementBottom).
			Calcs([]string{"mean", "max", "lastNotNull"}).
			ShowLegend(true)).
		Tooltip(common.NewVizTooltipOptionsBuilder().Mode(common.TooltipDisplayModeMulti).Sort(common.SortOrderDescending))
}

// Overview builds pyoco_overview.json, the dashboard an operator keeps
// open: queue, runs, tasks, workers, webhooks and HTTP, filtered by $flow.
// Duration panels show exemplars; the Prometheus data source links their
// trace_id to Jaeger (deploy/grafana/provisioning). The last panel lists
// recent runs from the /runs API through the Infinity data source.
func Overview() (dashboard.Dashboard, error) {
	b := dashboard.NewDashboardBuilder("Pyoco Overview").
		Uid("pyoco-overview").
		Description("pyoco workflow engine: queue, runs, tasks, workers, webhooks and API. Exemplars on the duration panels open the trace in Jaeger.").
		Tags([]string{"pyoco"}).
		// Provisioned from files: edits in the UI could not be saved back
		// (dashboard-linter's uneditable-dashboard-rule).
		Readonly().
		Refresh("30s").
		Time("now-1h", "now").
		Timezone(common.TimeZoneBrowser).
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		WithVariable(datasourceVariable()).
		WithVariable(flowVariable()).
		Link(dashboard.NewDashboardLinkBuilder("pyoco dashboards").
			Type(dashboard.DashboardLinkTypeDashboards).
			Tags([]string{"pyoco"}).
			Icon("external link").
			Tooltip("Other pyoco dashboards").
			AsDropdown(false).
			IncludeVars(true).
			KeepTime(true))

	// At a glance.
	b = b.WithRow(dashboard.NewRowBuilder("At a glance")).
		WithPanel(smallStat("Runs in progress",
			"Runs executing right now, summed over the server and every worker.",
			`sum(pyoco_runs_in_progress{flow=~"$flow"})`, Lavender)).
		WithPanel(smallStat("Queued runs",
			"Runs waiting for a worker, read from the store by the API server (max over servers: each reads the same store).",
			`sum(max by (flow) (pyoco_runs_queued{flow=~"$flow"}))`, Carrot)).
		WithPanel(smallStat("Workers alive",
			"Workers whose heartbeat is current, read from the store's worker registry.",
			`max(pyoco_workers)`, Pink).Decimals(0)).
		WithPanel(smallStat("Failure rate",
			"Share of the runs that ended in the time range that ended FAILED.",
			`(sum(increase(pyoco_runs_total{status="FAILED", flow=~"$flow"}[$__range])) or vector(0)) / sum(increase(pyoco_runs_total{status=~"`+terminal+`", flow=~"$flow"}[$__range]))`,
			Carrot).Unit("percentunit").Decimals(1))

	// Queue.
	b = b.WithRow(dashboard.NewRowBuilder("Queue")).
		WithPanel(series("Queue depth by flow",
			"Runs waiting in the queue, per flow (pyoco_runs_queued).", "none", 12).
			WithTarget(query("A", `max by (flow) (pyoco_runs_queued{flow=~"$flow"})`, "{{flow}}")).
			Min(0).Decimals(0)).
		WithPanel(series("Queue wait",
			"Time from submit (PENDING) to a worker starting the run (RUNNING): p50 and p95. Exemplars link to the run's trace.", "s", 12).
			WithTarget(query("A", quantile(0.5, "pyoco_queue_wait_seconds", "", true), "p50").Exemplar(true)).
			WithTarget(query("B", quantile(0.95, "pyoco_queue_wait_seconds", "", true), "p95").Exemplar(true)).
			OverrideByName("p50", colorOverride(Lavender)).
			OverrideByName("p95", colorOverride(Carrot))).
		WithPanel(series("Backlog age by flow",
			"Age of the oldest PENDING run of each flow (pyoco_queue_oldest_age_seconds, read from the store; 0 when none waits). Rising: no worker takes runs; KEDA's prometheus trigger scales on it (deploy/kubernetes).", "s", 12).
			WithTarget(query("A", `max by (flow) (pyoco_queue_oldest_age_seconds{flow=~"$flow"})`, "{{flow}}")).
			Min(0)).
		WithPanel(series("Undelivered queue entries",
			"Queue entries no worker took yet (pyoco_queue_lag: the consumer group's lag), the value KEDA's redis-streams trigger scales on.", "none", 12).
			WithTarget(query("A", `max(pyoco_queue_lag)`, "lag")).
			Min(0).Decimals(0).
			OverrideByName("lag", colorOverride(Carrot)))

	// Runs.
	b = b.WithRow(dashboard.NewRowBuilder("Runs")).
		WithPanel(series("Runs by status",
			"Runs entering each status per second (PENDING on submit, RUNNING on start, then the terminal status).", "ops", 8).
			WithTarget(query("A", `sum by (status) (rate(pyoco_runs_total{flow=~"$flow"}[$__rate_interval]))`, "{{status}}")).
			OverrideByName("COMPLETED", colorOverride(Lavender)).
			OverrideByName("FAILED", colorOverride(Carrot)).
			OverrideByName("CANCELLED", colorOverride(Pink))).
		WithPanel(series("Failure rate by flow",
			"Share of each flow's finished runs that FAILED (0 for flows that finished runs without failures).", "percentunit", 8).
			WithTarget(query("A",
				`(sum by (flow) (rate(pyoco_runs_total{status="FAILED", flow=~"$flow"}[$__rate_interval])) or 0 * sum by (flow) (rate(pyoco_runs_total{status=~"`+terminal+`", flow=~"$flow"}[$__rate_interval]))) / sum by (flow) (rate(pyoco_runs_total{status=~"`+terminal+`", flow=~"$flow"}[$__rate_interval]))`,
				"{{flow}}")).
			Min(0).Max(1)).
		WithPanel(series("Run duration p95 by flow",
			"95th percentile of the start-to-end time of finished runs. Exemplars link to the run's trace.", "s", 8).
			WithTarget(query("A", quantile(0.95, "pyoco_run_duration_seconds", "flow", true), "{{flow}}").Exemplar(true)))

	// Tasks.
	b = b.WithRow(dashboard.NewRowBuilder("Tasks")).
		WithPanel(series("Task duration p50 / p95 by task",
			"Duration of each task attempt. Exemplars link to the attempt's span.", "s", 12).
			WithTarget(query("A", quantile(0.5, "pyoco_task_duration_seconds", "flow, task", true), "{{flow}}/{{task}} p50").Exemplar(true)).
			WithTarget(query("B", quantile(0.95, "pyoco_task_duration_seconds", "flow, task", true), "{{flow}}/{{task}} p95").Exemplar(true))).
		WithPanel(table.NewPanelBuilder().
			Title("Slowest tasks").
			Description("The 10 tasks with the highest p95 attempt duration over the time range.").
			Span(6).Height(8).
			WithTarget(query("A",
				`topk(10, histogram_quantile(0.95, sum by (le, flow, task) (increase(pyoco_task_duration_seconds_bucket{flow=~"$flow"}[$__range]))))`,
				"").
				Instant().
				Format(prometheus.PromQueryFormatTable)).
			Unit("s").Decimals(3).
			ColorScheme(fixedColor(Carrot)).
			Thresholds(baseThresholds(Carrot)).
			CellOptions(common.TableCellOptions{TableColorTextCellOptions: &common.TableColorTextCellOptions{
				Type: common.TableCellDisplayModeColorText,
			}}).
			WithTransformation(dashboard.DataTransformerConfig{
				Id: "organize",
				Options: map[string]any{
					"excludeByName": map[string]any{"Time": true},
					"renameByName":  map[string]any{"flow": "Flow", "task": "Task", "Value": "p95"},
				},
			}).
			Footer(tableFooter()).
			SortBy([]cog.Builder[common.TableSortByFieldState]{
				common.NewTableSortByFieldStateBuilder().DisplayName("p95").Desc(true),
			})).
		WithPanel(series("Task attempts by status",
			"Task attempts finishing per second, by final state.", "ops", 6).
			WithTarget(query("A", `sum by (status) (rate(pyoco_tasks_total{flow=~"$flow"}[$__rate_interval]))`, "{{status}}")).
			OverrideByName("SUCCEEDED", colorOverride(Lavender)).
			OverrideByName("FAILED", colorOverride(Carrot)))

	// Platform.
	b = b.WithRow(dashboard.NewRowBuilder("Workers, webhooks and API")).
		WithPanel(series("Workers alive",
			"Live workers in the store's registry.", "none", 6).
			WithTarget(query("A", `max(pyoco_workers)`, "workers")).
			Min(0).Decimals(0).
			OverrideByName("workers", colorOverride(Lavender))).
		WithPanel(series("Webhook deliveries by outcome",
			"Delivery attempts per second by event and outcome (success, retry, failed).", "ops", 6).
			WithTarget(query("A", `sum by (event, outcome) (rate(pyoco_webhook_deliveries_total[$__rate_interval]))`, "{{event}} {{outcome}}"))).
		WithPanel(series("HTTP latency p95 by route",
			"95th percentile of the API's request duration (otelhttp), by route.", "s", 6).
			WithTarget(query("A", quantile(0.95, "http_server_request_duration_seconds", "http_route", false), "{{http_route}}").Exemplar(true))).
		WithPanel(series("HTTP requests by status code",
			"API requests per second by response status code.", "reqps", 6).
			WithTarget(query("A",
				`sum by (http_response_status_code) (rate(http_server_request_duration_seconds_count[$__rate_interval]))`,
				"{{http_response_status_code}}")))

	// Slowest runs, each linked to its trace.
	b = b.WithRow(dashboard.NewRowBuilder("Slow runs")).
		WithPanel(table.NewPanelBuilder().
			Title("Slowest finished runs").
			Description(NonPromQLMarker+" The 100 newest finished runs from pyoco's GET /runs, slowest first; the Trace column opens each run's trace in Jaeger (the exemplars of the Run duration panel do the same from a point).").
			Span(24).Height(10).
			Datasource(common.DataSourceRef{Type: cog.ToPtr(InfinityType), Uid: cog.ToPtr(InfinityUID)}).
			WithTarget(infinityRuns("/runs?status=COMPLETED,FAILED,CANCELLED&limit=100")).
			Unit("none").
			Footer(tableFooter()).
			SortBy([]cog.Builder[common.TableSortByFieldState]{
				common.NewTableSortByFieldStateBuilder().DisplayName("Duration (ms)").Desc(true),
			}).
			OverrideByName("Trace", traceLink()))

	// Recent runs, from the API.
	b = b.WithRow(dashboard.NewRowBuilder("Recent runs")).
		WithPanel(table.NewPanelBuilder().
			Title("Recent runs").
			Description(NonPromQLMarker+" The 50 newest runs from pyoco's GET /runs, through the Infinity data source (uid "+InfinityUID+").").
			Span(24).Height(10).
			Datasource(common.DataSourceRef{Type: cog.ToPtr(InfinityType), Uid: cog.ToPtr(InfinityUID)}).
			WithTarget(infinityRuns("/runs?limit=50")).
			Unit("none").
			Footer(tableFooter()).
			OverrideByName("Status", []dashboard.DynamicConfigValue{
				{Id: "custom.cellOptions", Value: map[string]any{"type": "color-text"}},
				{Id: "mappings", Value: []any{map[string]any{
					"type": "value",
					"options": map[string]any{
						"COMPLETED": map[string]any{"color": Lavender, "index": 0},
						"FAILED":    map[string]any{"color": Carrot, "index": 1},
						"CANCELLED": map[string]any{"color": Pink, "index": 2},
					},
				}}},
			}).
			OverrideByName("Trace", traceLink()))

	return build(b)
}

// traceLink is the data link of a table's Trace column: the run's trace
// in the Jaeger data source.
func traceLink() []dashboard.DynamicConfigValue {
	return []dashboard.DynamicConfigValue{
		{Id: "links", Value: []any{map[string]any{
			"title": "Open the trace in Jaeger",
			"url":   "",
			"internal": map[string]any{
				"datasourceUid":  "jaeger",
				"datasourceName": "Jaeger",
				"query":          map[string]any{"query": "${__value.raw}"},
			},
		}}},
	}
}
