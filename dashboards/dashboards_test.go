package dashboards_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/dashboards"
)

func init() {
	// Strict unmarshalling checks panel options, field config and queries
	// against the panel and data source types the SDK knows.
	plugins.RegisterDefaultPlugins()
}

// grafanaVars are the only variables dashboard expressions may use, with
// the values tests substitute for them (as the e2e stack test does).
var grafanaVars = map[string]string{
	"__rate_interval": "1m",
	"__range":         "5m",
	"__interval":      "15s",
	"flow":            ".*",
}

// dashboardFiles returns every *.json file of the dashboards directory.
func dashboardFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.json")
	require.NoError(t, err)
	for _, f := range dashboards.All() {
		require.Contains(t, files, f.Name)
	}
	return files
}

func TestCommittedJSONIsGenerated(t *testing.T) {
	t.Parallel()
	for _, f := range dashboards.All() {
		t.Run(f.Name, func(t *testing.T) {
			t.Parallel()
			want, err := f.JSON()
			require.NoError(t, err)
			got, err := os.ReadFile(f.Name)
			require.NoError(t, err)
			require.Equal(t, string(want), string(got), "%s differs from the generator's output: run `cd dashboards && go run ./gen`", f.Name)
			// The copies (docs/grafana_pyoco_cute.json, the seed's path)
			// are the same bytes.
			for _, c := range f.Copies {
				got, err := os.ReadFile(filepath.Join("..", filepath.FromSlash(c)))
				require.NoError(t, err)
				require.Equal(t, string(want), string(got), "%s differs from %s: run `cd dashboards && go run ./gen`", c, f.Name)
			}
		})
	}
}

// keyPaths lists the object keys of a JSON document as paths
// (panels[].targets[].expr).
func keyPaths(v any, prefix string, out map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			p := prefix + "." + k
			out[p] = true
			keyPaths(e, p, out)
		}
	case []any:
		for _, e := range x {
			keyPaths(e, prefix+"[]", out)
		}
	}
}

// parseStrict checks a dashboard with the SDK's strict decoder, which
// rejects unknown keys, wrong types and missing required fields, then
// decodes it with the SDK's regular decoder. (v0.0.22's strict decoder
// returns its error list even when it is empty, which also makes it drop
// every panel: the value comes from the regular decoder, which types the
// panel options and queries through the same registered plug-ins.)
func parseStrict(raw []byte) (dashboard.Dashboard, error) {
	var strict dashboard.Dashboard
	err := strict.UnmarshalJSONStrict(raw)
	if be, ok := err.(cog.BuildErrors); ok && len(be) == 0 {
		err = nil
	}
	if err != nil {
		return dashboard.Dashboard{}, err
	}
	var d dashboard.Dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		return dashboard.Dashboard{}, err
	}
	return d, nil
}

func TestDashboardsParseStrictly(t *testing.T) {
	t.Parallel()
	for _, file := range dashboardFiles(t) {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			raw, err := os.ReadFile(file)
			require.NoError(t, err)
			d, err := parseStrict(raw)
			require.NoError(t, err)
			require.NotEmpty(t, d.Panels)

			// Nothing is lost in a round trip through the SDK types: every
			// key of the file is a key the SDK knows.
			again, err := json.Marshal(d)
			require.NoError(t, err)
			var orig, round any
			require.NoError(t, json.Unmarshal(raw, &orig))
			require.NoError(t, json.Unmarshal(again, &round))
			origKeys, roundKeys := map[string]bool{}, map[string]bool{}
			keyPaths(orig, "", origKeys)
			keyPaths(round, "", roundKeys)
			var lost []string
			for k := range origKeys {
				if !roundKeys[k] {
					lost = append(lost, k)
				}
			}
			sort.Strings(lost)
			require.Empty(t, lost, "keys the SDK types do not know")
		})
	}
}

// TestStrictParseCatchesTypos proves the strict parse is strict enough: a
// misspelt key anywhere typed fails.
func TestStrictParseCatchesTypos(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("grafana_pyoco_cute.json")
	require.NoError(t, err)
	for _, tc := range []struct{ name, from, to string }{
		{"dashboard key", `"refresh":`, `"refesh":`},
		{"panel key", `"gridPos":`, `"gridPoss":`},
		{"stat option", `"graphMode":`, `"grapMode":`},
		{"timeseries custom field config", `"lineWidth":`, `"lineWidht":`},
		{"prometheus query", `"legendFormat":`, `"legendFormatt":`},
		{"variable", `"includeAll":`, `"includeAl":`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Contains(t, string(raw), tc.from)
			bad := strings.Replace(string(raw), tc.from, tc.to, 1)
			_, err := parseStrict([]byte(bad))
			require.Error(t, err)
		})
	}
}

// target is one query of a panel.
type target struct {
	Panel        string
	PanelType    string
	Description  string
	Expr         string
	HasExpr      bool
	DatasourceTy string
	DatasourceID string
}

// jsonTargets reads every panel's targets (in rows too) from a dashboard
// file, as plain JSON, like a tool that runs the queries would.
func jsonTargets(t *testing.T, file string) []target {
	t.Helper()
	raw, err := os.ReadFile(file)
	require.NoError(t, err)
	type jsonPanel struct {
		Type        string `json:"type"`
		Title       string `json:"title"`
		Description string `json:"description"`
		Datasource  *struct {
			Type string `json:"type"`
			UID  string `json:"uid"`
		} `json:"datasource"`
		Targets []map[string]any `json:"targets"`
		Panels  []json.RawMessage
	}
	var doc struct {
		Panels []json.RawMessage `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(raw, &doc))
	var out []target
	var walk func([]json.RawMessage)
	walk = func(panels []json.RawMessage) {
		for _, r := range panels {
			var p jsonPanel
			require.NoError(t, json.Unmarshal(r, &p))
			walk(p.Panels)
			for _, tg := range p.Targets {
				expr, ok := tg["expr"].(string)
				tt := target{Panel: p.Title, PanelType: p.Type, Description: p.Description, Expr: expr, HasExpr: ok}
				if ds, ok := tg["datasource"].(map[string]any); ok {
					tt.DatasourceTy, _ = ds["type"].(string)
					tt.DatasourceID, _ = ds["uid"].(string)
				}
				out = append(out, tt)
			}
		}
	}
	walk(doc.Panels)
	return out
}

func TestDashboardConventions(t *testing.T) {
	t.Parallel()
	for _, file := range dashboardFiles(t) {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			raw, err := os.ReadFile(file)
			require.NoError(t, err)
			d, err := parseStrict(raw)
			require.NoError(t, err)
			require.Contains(t, d.Tags, "pyoco")
			require.NotNil(t, d.Uid)

			// The Prometheus data source is the ${datasource} variable.
			var dsVar *dashboard.VariableModel
			for i, v := range d.Templating.List {
				if v.Name == "datasource" {
					dsVar = &d.Templating.List[i]
				}
			}
			require.NotNil(t, dsVar, "a datasource variable")
			require.Equal(t, dashboard.VariableTypeDatasource, dsVar.Type)
			require.NotNil(t, dsVar.Query)
			require.Equal(t, "prometheus", *dsVar.Query.String)

			targets := jsonTargets(t, file)
			require.NotEmpty(t, targets)
			for _, tg := range targets {
				if strings.HasPrefix(tg.Description, dashboards.NonPromQLMarker) {
					require.False(t, tg.HasExpr, "%s: a non-PromQL panel has no expr", tg.Panel)
					require.NotEqual(t, "prometheus", tg.DatasourceTy, tg.Panel)
					continue
				}
				require.True(t, tg.HasExpr, "%s: every other target is PromQL", tg.Panel)
				require.NotEmpty(t, tg.Expr, tg.Panel)
				require.Equal(t, "prometheus", tg.DatasourceTy, tg.Panel)
				require.Equal(t, "${datasource}", tg.DatasourceID, tg.Panel)
			}
		})
	}
}

// TestCuteDashboard pins the design note's preset.
func TestCuteDashboard(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("grafana_pyoco_cute.json")
	require.NoError(t, err)
	d, err := parseStrict(raw)
	require.NoError(t, err)
	require.Equal(t, "Pyoco Cute Ops", *d.Title)
	var got [][2]string
	for _, p := range d.Panels {
		require.NotNil(t, p.Panel, "no rows")
		got = append(got, [2]string{p.Panel.Type, *p.Panel.Title})
	}
	require.Equal(t, [][2]string{
		{"stat", "Runs in progress"},
		{"timeseries", "Run completions (last 5m)"},
		{"table", "Average run duration by flow"},
	}, got)
	targets := jsonTargets(t, "grafana_pyoco_cute.json")
	require.Equal(t, "(sum(pyoco_runs_in_progress))"+dashboards.OrZero, targets[0].Expr)
	require.Contains(t, targets[1].Expr, `status=~"COMPLETED|FAILED|CANCELLED"`)
	require.Contains(t, targets[1].Expr, "[5m]")
	for _, c := range []string{dashboards.Lavender, dashboards.Pink, dashboards.Carrot} {
		require.Contains(t, string(raw), `"`+c+`"`)
	}
}

var (
	exportedOnce sync.Once
	exported     map[string]dto.MetricType
	exportedLbls map[string]map[string]bool
)

// exportedSeries returns, once per test binary, the series names pyoco's
// exporter serves (see scrapeExporter) and each one's label names.
func exportedSeries(t *testing.T) (map[string]dto.MetricType, map[string]map[string]bool) {
	t.Helper()
	exportedOnce.Do(func() { exported, exportedLbls = scrapeExporter(t) })
	if exported == nil {
		t.Fatal("scraping pyoco's exporter failed (see the test that did it first)")
	}
	return exported, exportedLbls
}

var varRef = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`)

// substitute replaces the allowed Grafana variables and reports any other.
func substitute(expr string) (string, []string) {
	var unknown []string
	out := varRef.ReplaceAllStringFunc(expr, func(m string) string {
		name := varRef.FindStringSubmatch(m)[1]
		v, ok := grafanaVars[name]
		if !ok {
			unknown = append(unknown, m)
			return m
		}
		return v
	})
	return out, unknown
}

// metricName is the metric a selector selects (its name or __name__="…").
func metricName(vs *parser.VectorSelector) string {
	if vs.Name != "" {
		return vs.Name
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
			return m.Value
		}
	}
	return ""
}

// TestPromQLUsesExportedNames parses every expression of every dashboard
// (and the $flow variable's query) with the Prometheus parser and checks
// each selector's metric name and label matchers, and each aggregation's
// grouping labels, against what pyoco's real exporter serves.
func TestPromQLUsesExportedNames(t *testing.T) {
	t.Parallel()
	names, lbls := exportedSeries(t)

	type expr struct{ where, promql string }
	var exprs []expr
	for _, file := range dashboardFiles(t) {
		for _, tg := range jsonTargets(t, file) {
			if tg.HasExpr {
				exprs = append(exprs, expr{file + ": " + tg.Panel, tg.Expr})
			}
		}
	}
	// label_values(METRIC, LABEL) of the $flow variable.
	exprs = append(exprs, expr{"$flow variable", "group by (flow) (pyoco_runs_total)"})
	require.NotEmpty(t, exprs)

	p := parser.NewParser(parser.Options{})
	used := map[string]bool{}
	for _, e := range exprs {
		s, unknown := substitute(e.promql)
		require.Empty(t, unknown, "%s: only $__rate_interval, $__range, $__interval and $flow: %s", e.where, e.promql)
		ast, err := p.ParseExpr(s)
		require.NoError(t, err, "%s: %s", e.where, e.promql)
		parser.Inspect(ast, func(n parser.Node, _ []parser.Node) error {
			switch n := n.(type) {
			case *parser.VectorSelector:
				name := metricName(n)
				require.NotEmpty(t, name, "%s: every selector names its metric: %s", e.where, e.promql)
				_, ok := names[name]
				require.True(t, ok, "%s: pyoco exports no %q (%s)", e.where, name, e.promql)
				used[name] = true
				for _, m := range n.LabelMatchers {
					if m.Name == labels.MetricName {
						continue
					}
					require.True(t, lbls[name][m.Name], "%s: %s has no label %q (has %v)", e.where, name, m.Name, keys(lbls[name]))
				}
			case *parser.AggregateExpr:
				if n.Without {
					return nil
				}
				have := map[string]bool{}
				for _, sel := range parser.ExtractSelectors(n.Expr) {
					for _, m := range sel {
						if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
							for l := range lbls[m.Value] {
								have[l] = true
							}
						}
					}
				}
				for _, g := range n.Grouping {
					require.True(t, have[g], "%s: grouping by %q, a label none of its metrics has (%v): %s", e.where, g, keys(have), e.promql)
				}
			}
			return nil
		})
	}
	// Each SPEC §5 metric has a panel somewhere.
	for _, n := range []string{
		"pyoco_runs_total", "pyoco_runs_in_progress", "pyoco_run_duration_seconds_bucket",
		"pyoco_task_duration_seconds_bucket", "pyoco_tasks_total", "pyoco_runs_queued",
		"pyoco_queue_wait_seconds_bucket", "pyoco_workers", "pyoco_webhook_deliveries_total",
		"http_server_request_duration_seconds_bucket",
	} {
		require.True(t, used[n], "no dashboard query uses %s", n)
	}
}

// TestPromQLCheckRejects shows the name check is real: a typo in a metric
// or label name fails it.
func TestPromQLCheckRejects(t *testing.T) {
	t.Parallel()
	names, lbls := exportedSeries(t)
	_, ok := names["pyoco_run_total"]
	require.False(t, ok)
	require.False(t, lbls["pyoco_runs_total"]["stauts"])
	require.True(t, lbls["pyoco_runs_total"]["status"])
	require.True(t, lbls["pyoco_run_duration_seconds_bucket"]["le"])
	_, unknown := substitute(`rate(x[$__rate_interval]) * $nope`)
	require.Equal(t, []string{"$nope"}, unknown)
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
