package dashboards

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
)

// NonPromQLMarker starts the description of every panel whose targets are
// not PromQL (they carry no "expr"), so that tools running every dashboard
// query against Prometheus know to skip them.
const NonPromQLMarker = "[non-promql]"

// The pyoco palette of the design note: lavender with pink and carrot
// orange, on the dark theme.
const (
	Lavender = "#cdb4db"
	Pink     = "#ffafcc"
	Carrot   = "#ffb562"
)

// Data source references. Prometheus is always the dashboard variable
// ${datasource}; the runs table uses the Infinity data source provisioned
// with uid "pyoco-api" (deploy/grafana/provisioning).
const (
	PrometheusType = "prometheus"
	InfinityType   = "yesoreyeram-infinity-datasource"
	InfinityUID    = "pyoco-api"
	datasourceVar  = "${datasource}"
)

// File is one dashboard JSON file and the function that builds it.
type File struct {
	// Name is the file name inside the dashboards directory.
	Name string
	// Build makes the dashboard.
	Build func() (dashboard.Dashboard, error)
	// Copies are more paths, relative to the repository root, that get the
	// same bytes (the seed's docs/grafana_pyoco_cute.json).
	Copies []string
}

// All lists every dashboard this package generates, in file name order.
func All() []File {
	return []File{
		{Name: "grafana_pyoco_cute.json", Build: Cute, Copies: []string{"docs/grafana_pyoco_cute.json"}},
		{Name: "pyoco_overview.json", Build: Overview},
	}
}

// JSON builds f's dashboard and renders it as the committed file (see
// [Marshal]).
func (f File) JSON() ([]byte, error) {
	d, err := f.Build()
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", f.Name, err)
	}
	b, err := Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name, err)
	}
	return b, nil
}

// Marshal renders a dashboard as the indented JSON that is committed, with a
// trailing newline. HTML characters (<, >, &) stay as they are, so that
// PromQL reads naturally in the file.
func Marshal(d dashboard.Dashboard) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		return nil, fmt.Errorf("marshal dashboard: %w", err)
	}
	return buf.Bytes(), nil
}

func promDS() common.DataSourceRef {
	return common.DataSourceRef{Type: cog.ToPtr(PrometheusType), Uid: cog.ToPtr(datasourceVar)}
}

// OrZero is what every PromQL target ends with: "or on() vector(0)" adds a
// 0 sample exactly when the query has no series (a fresh stack, a flow
// that never failed, no webhook configured), so that a panel shows 0
// rather than "No data"; with data it changes nothing. A histogram panel
// thus shows 0 until its first observation.
const OrZero = " or on() vector(0)"

// query is a PromQL target on the ${datasource} variable, ending with
// [OrZero].
func query(refID, expr, legend string) *prometheus.DataqueryBuilder {
	q := prometheus.NewDataqueryBuilder().
		Datasource(promDS()).
		RefId(refID).
		Expr("(" + expr + ")" + OrZero).
		EditorMode(prometheus.QueryEditorModeCode)
	if legend != "" {
		q = q.LegendFormat(legend)
	}
	return q
}

// datasourceVariable is the Prometheus data source picker every dashboard
// starts with.
func datasourceVariable() *dashboard.DatasourceVariableBuilder {
	return dashboard.NewDatasourceVariableBuilder("datasource").
		// The label dashboard-linter's template-datasource-rule asks for.
		Label("Data source").
		Type(PrometheusType).
		Regex("")
}

// flowVariable is $flow: every flow that ever entered a status, "All"
// meaning the regular expression .* (queries use flow=~"$flow").
func flowVariable() *dashboard.QueryVariableBuilder {
	all := "All"
	allValue := "$__all"
	return dashboard.NewQueryVariableBuilder("flow").
		Label("Flow").
		Datasource(promDS()).
		Query(dashboard.StringOrMap{String: cog.ToPtr(`label_values(pyoco_runs_total, flow)`)}).
		Definition(`label_values(pyoco_runs_total, flow)`).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc).
		Multi(true).
		IncludeAll(true).
		AllValue(".*").
		Current(dashboard.VariableOption{
			Selected: cog.ToPtr(true),
			Text:     dashboard.StringOrArrayOfString{ArrayOfString: []string{all}},
			Value:    dashboard.StringOrArrayOfString{ArrayOfString: []string{allValue}},
		})
}

func fixedColor(c string) *dashboard.FieldColorBuilder {
	return dashboard.NewFieldColorBuilder().Mode(dashboard.FieldColorModeIdFixed).FixedColor(c)
}

func baseThresholds(c string) *dashboard.ThresholdsConfigBuilder {
	return dashboard.NewThresholdsConfigBuilder().
		Mode(dashboard.ThresholdsModeAbsolute).
		Steps([]dashboard.Threshold{{Value: nil, Color: c}})
}

// colorOverride gives the series named name the colour c.
func colorOverride(c string) []dashboard.DynamicConfigValue {
	return []dashboard.DynamicConfigValue{{Id: "color", Value: map[string]any{"mode": "fixed", "fixedColor": c}}}
}

// build finishes a dashboard builder and numbers its panels 1, 2, … in
// order, so that the committed JSON is stable. A panel with no data source
// of its own gets ${datasource} when its targets use it (dashboard-linter's
// panel-datasource-rule reads the panel's, not the targets').
func build(b *dashboard.DashboardBuilder) (dashboard.Dashboard, error) {
	d, err := b.Build()
	if err != nil {
		return dashboard.Dashboard{}, err
	}
	var id uint32
	for _, p := range d.Panels {
		id++
		switch {
		case p.Panel != nil:
			p.Panel.Id = cog.ToPtr(id)
			panelDatasource(p.Panel)
		case p.RowPanel != nil:
			p.RowPanel.Id = id
			for i := range p.RowPanel.Panels {
				id++
				p.RowPanel.Panels[i].Id = cog.ToPtr(id)
				panelDatasource(&p.RowPanel.Panels[i])
			}
		}
	}
	return d, nil
}

// panelDatasource sets p's data source to ${datasource} when it has none
// and its targets are PromQL on ${datasource}.
func panelDatasource(p *dashboard.Panel) {
	if p.Datasource != nil || len(p.Targets) == 0 {
		return
	}
	for _, t := range p.Targets {
		q, ok := t.(prometheus.Dataquery)
		if pq, isPtr := t.(*prometheus.Dataquery); isPtr {
			q, ok = *pq, true
		}
		if !ok || q.Datasource == nil || q.Datasource.Uid == nil || *q.Datasource.Uid != datasourceVar {
			return
		}
	}
	ds := promDS()
	p.Datasource = &ds
}

// infinityRuns is the target of the runs table: GET /runs through the
// Infinity data source (its URL, the pyoco server, is set in the data
// source, so the path here is relative).
func infinityRuns(path string) cog.Builder[variants.Dataquery] {
	col := func(selector, text, typ string) map[string]any {
		return map[string]any{"selector": selector, "text": text, "type": typ}
	}
	return variants.NewUnknownDataqueryBuilderFromObject(variants.UnknownDataquery{
		"refId":         "A",
		"datasource":    map[string]any{"type": InfinityType, "uid": InfinityUID},
		"type":          "json",
		"source":        "url",
		"parser":        "backend",
		"format":        "table",
		"url":           path,
		"url_options":   map[string]any{"method": "GET", "data": ""},
		"root_selector": "runs",
		"columns": []any{
			col("run_id", "Run", "string"),
			col("flow_name", "Flow", "string"),
			col("status", "Status", "string"),
			col("created_at", "Created", "timestamp"),
			col("run_duration_ms", "Duration (ms)", "number"),
			col("queue_wait_ms", "Queue wait (ms)", "number"),
			col("attempt", "Attempt", "number"),
			col("worker_id", "Worker", "string"),
			col("trace_id", "Trace", "string"),
		},
	})
}

// tableFooter is a hidden footer with Grafana's default reducer (the SDK
// would otherwise write "reducer": null, which Grafana's schema rejects).
func tableFooter() *common.TableFooterOptionsBuilder {
	return common.NewTableFooterOptionsBuilder().Show(false).Reducer([]string{"sum"}).CountRows(false)
}
