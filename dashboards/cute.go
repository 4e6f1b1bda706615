package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// Cute builds grafana_pyoco_cute.json, the preset of the v0.5.0 design
// note: "Pyoco Cute Ops", three panels (runs in progress, run completions
// of the last 5 minutes by terminal status, average run duration by flow)
// in lavender #cdb4db with pink #ffafcc and carrot orange #ffb562, meant
// for the dark theme, which it sets itself: its "Dark theme" link opens it
// with ?theme=dark, the one per-dashboard theme switch Grafana 12 has (the
// legacy "style": "dark" key is gone from Grafana's dashboard schema and
// the SDK types), and compose.yaml makes dark Grafana's default.
func Cute() (dashboard.Dashboard, error) {
	inProgress := stat.NewPanelBuilder().
		Title("Runs in progress").
		Description("Runs executing right now, summed over the server and every worker (pyoco_runs_in_progress).").
		Span(6).Height(8).
		WithTarget(query("A", `sum(pyoco_runs_in_progress)`, "running")).
		Unit("none").Decimals(0).
		ColorScheme(fixedColor(Lavender)).
		Thresholds(baseThresholds(Lavender)).
		ColorMode(common.BigValueColorModeBackground).
		GraphMode(common.BigValueGraphModeArea).
		TextMode(common.BigValueTextModeValue).
		Orientation(common.VizOrientationAuto).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}).Values(false))

	completions := timeseries.NewPanelBuilder().
		Title("Run completions (last 5m)").
		Description("Runs that reached a terminal status in the 5 minutes before each point, by status.").
		Span(18).Height(8).
		WithTarget(query("A",
			`sum by (status) (increase(pyoco_runs_total{status=~"COMPLETED|FAILED|CANCELLED"}[5m]))`,
			"{{status}}")).
		Unit("none").Min(0).
		ColorScheme(fixedColor(Lavender)).
		DrawStyle(common.GraphDrawStyleLine).
		LineWidth(2).FillOpacity(25).
		GradientMode(common.GraphGradientModeOpacity).
		LineInterpolation(common.LineInterpolationSmooth).
		ShowPoints(common.VisibilityModeNever).
		Legend(common.NewVizLegendOptionsBuilder().
			DisplayMode(common.LegendDisplayModeList).
			Placement(common.LegendPlacementBottom).
			ShowLegend(true)).
		Tooltip(common.NewVizTooltipOptionsBuilder().Mode(common.TooltipDisplayModeMulti).Sort(common.SortOrderDescending)).
		OverrideByName("COMPLETED", colorOverride(Lavender)).
		OverrideByName("FAILED", colorOverride(Carrot)).
		OverrideByName("CANCELLED", colorOverride(Pink))

	avgDuration := table.NewPanelBuilder().
		Title("Average run duration by flow").
		Description("Mean start-to-end time of the runs that finished in the dashboard's time range.").
		Span(24).Height(9).
		WithTarget(query("A",
			`sum by (flow) (increase(pyoco_run_duration_seconds_sum[$__range])) / sum by (flow) (increase(pyoco_run_duration_seconds_count[$__range]))`,
			"{{flow}}").
			Instant().
			Format(prometheus.PromQueryFormatTable)).
		Unit("s").Decimals(2).
		ColorScheme(fixedColor(Pink)).
		Thresholds(baseThresholds(Pink)).
		CellOptions(common.TableCellOptions{TableColorTextCellOptions: &common.TableColorTextCellOptions{
			Type: common.TableCellDisplayModeColorText,
		}}).
		// Applied after the transformation below renames the columns.
		OverrideByName("Flow", colorOverride(Lavender)).
		WithTransformation(dashboard.DataTransformerConfig{
			Id: "organize",
			Options: map[string]any{
				"excludeByName": map[string]any{"Time": true},
				"renameByName":  map[string]any{"flow": "Flow", "Value": "Average duration"},
			},
		}).
		Footer(tableFooter()).
		SortBy([]cog.Builder[common.TableSortByFieldState]{
			common.NewTableSortByFieldStateBuilder().DisplayName("Average duration").Desc(true),
		})

	return build(dashboard.NewDashboardBuilder("Pyoco Cute Ops").
		Uid("pyoco-cute-ops").
		Description("pyoco's cute preset (v0.5.0 design note): runs in progress, recent completions and average run duration. Best on the dark theme.").
		Tags([]string{"pyoco"}).
		Readonly().
		Refresh("30s").
		Time("now-1h", "now").
		Timezone(common.TimeZoneBrowser).
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		WithVariable(datasourceVariable()).
		Link(dashboard.NewDashboardLinkBuilder("Dark theme").
			Type(dashboard.DashboardLinkTypeLink).
			Url("/d/pyoco-cute-ops?theme=dark").
			Icon("dashboard").
			Tooltip("This dashboard on the dark theme it is made for").
			AsDropdown(false).
			IncludeVars(true).
			KeepTime(true)).
		WithPanel(inProgress).
		WithPanel(completions).
		WithPanel(avgDuration))
}
