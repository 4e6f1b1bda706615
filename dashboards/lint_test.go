package dashboards_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/dashboards"
)

// lintConfig is dashboard-linter's .lint file: rules excluded, in whole or
// for some dashboard/panel pairs.
type lintConfig struct {
	Exclusions map[string]*struct {
		Reason  string `yaml:"reason"`
		Entries []struct {
			Dashboard string `yaml:"dashboard"`
			Panel     string `yaml:"panel"`
		} `yaml:"entries"`
	} `yaml:"exclusions"`
}

func (c *lintConfig) excluded(rule, dash, panel string) bool {
	ex, ok := c.Exclusions[rule]
	if !ok {
		return false
	}
	if ex == nil || len(ex.Entries) == 0 {
		return true
	}
	for _, e := range ex.Entries {
		if e.Dashboard == dash && (panel == "" || e.Panel == panel) {
			return true
		}
	}
	return false
}

// lintUnits are the units of dashboard-linter's panel-units-rule list that
// pyoco's panels may use (the linter accepts more).
var lintUnits = []string{"none", "short", "percent", "percentunit", "s", "ms", "ops", "reqps", "bytes", "string"}

type lintPanel struct {
	Type        string `json:"type"`
	Title       string `json:"title"`
	Description string `json:"description"`
	Datasource  *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Targets []map[string]any `json:"targets"`
	Panels  []lintPanel      `json:"panels"`
}

type lintDashboard struct {
	Title      string `json:"title"`
	Editable   bool   `json:"editable"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Label      string `json:"label"`
			Type       string `json:"type"`
			Query      any    `json:"query"`
			Refresh    int    `json:"refresh"`
			Datasource *struct {
				UID string `json:"uid"`
			} `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
	Panels []lintPanel `json:"panels"`
}

var labelValuesRE = regexp.MustCompile(`^label_values\((.+),\s*([A-Za-z_][A-Za-z0-9_]*)\)$`)

// TestDashboardLint stands in for Grafana's dashboard-linter, which the
// module proxy does not serve (github.com/grafana/dashboard-linter has no
// listed version). It applies the linter's rules, by their names, to every
// generated dashboard and its copies, with the exclusions of the .lint file
// beside them (the linter's own format):
//
//   - template-datasource-rule: one datasource variable, named
//     "datasource", labelled "Data source";
//   - template-job-rule, template-instance-rule: excluded (.lint says why);
//   - template-label-promql-rule: query variables are label_values(SELECTOR,
//     LABEL) with a valid PromQL selector;
//   - template-on-time-change-reload-rule: query variables refresh on time
//     range change (2);
//   - panel-datasource-rule: graph, table, timeseries and singlestat panels
//     use the templated data source at panel level;
//   - panel-title-description-rule: every panel has a title and a description;
//   - panel-units-rule: stat, singlestat, graph, table, timeseries and gauge
//     panels set a valid unit;
//   - panel-no-targets-rule: every panel but rows has targets;
//   - target-promql-rule: every PromQL target parses;
//   - target-rate-interval-rule: rate() and irate() range over
//     $__rate_interval;
//   - target-job-rule, target-instance-rule: excluded;
//   - target-counter-agg-rule: a counter (_total) is only read through
//     rate, irate or increase;
//   - uneditable-dashboard-rule: "editable": false (the dashboards are
//     provisioned from files).
func TestDashboardLint(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(".lint")
	require.NoError(t, err)
	var cfg lintConfig
	require.NoError(t, yaml.Unmarshal(raw, &cfg))
	for rule, ex := range cfg.Exclusions {
		require.NotNil(t, ex, rule)
		require.NotEmpty(t, ex.Reason, "every exclusion of %s says why", rule)
	}

	files := dashboardFiles(t)
	for _, f := range dashboards.All() {
		for _, c := range f.Copies {
			files = append(files, filepath.Join("..", filepath.FromSlash(c)))
		}
	}
	for _, file := range files {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			raw, err := os.ReadFile(file)
			require.NoError(t, err)
			var d lintDashboard
			require.NoError(t, json.Unmarshal(raw, &d))
			problems := lintDashboardProblems(&cfg, &d)
			require.Empty(t, problems, "dashboard-linter rules")
		})
	}
}

// TestDashboardLintCatches: each rule finds what it is about.
func TestDashboardLintCatches(t *testing.T) {
	t.Parallel()
	var cfg lintConfig
	var d lintDashboard
	d.Title = "Bad"
	d.Editable = true
	d.Templating.List = append(d.Templating.List, struct {
		Name       string `json:"name"`
		Label      string `json:"label"`
		Type       string `json:"type"`
		Query      any    `json:"query"`
		Refresh    int    `json:"refresh"`
		Datasource *struct {
			UID string `json:"uid"`
		} `json:"datasource"`
	}{Name: "datasource", Label: "Prometheus", Type: "datasource", Query: "prometheus"})
	d.Panels = []lintPanel{
		{Type: "stat", Title: "No unit", Targets: []map[string]any{{"expr": `sum(pyoco_runs_total)`}}},
		{Type: "timeseries", Title: "Rate", Description: "d", Targets: []map[string]any{{"expr": `rate(pyoco_runs_total[5m])`}}},
		{Type: "timeseries", Title: "Empty", Description: "d"},
	}
	got := strings.Join(lintDashboardProblems(&cfg, &d), "\n")
	for _, rule := range []string{"template-datasource-rule", "panel-datasource-rule", "panel-title-description-rule",
		"panel-units-rule", "panel-no-targets-rule", "target-rate-interval-rule", "target-counter-agg-rule",
		"uneditable-dashboard-rule", "template-job-rule", "target-job-rule"} {
		require.Contains(t, got, rule+":")
	}
}

func lintDashboardProblems(cfg *lintConfig, d *lintDashboard) []string {
	var problems []string
	add := func(rule, panel, format string, args ...any) {
		if cfg.excluded(rule, d.Title, panel) {
			return
		}
		problems = append(problems, fmt.Sprintf("%s: %s: %s", rule, panel, fmt.Sprintf(format, args...)))
	}

	var dsVars []string
	hasVar := map[string]bool{}
	for _, v := range d.Templating.List {
		hasVar[v.Name] = true
		switch v.Type {
		case "datasource":
			dsVars = append(dsVars, v.Name)
			if v.Name != "datasource" || v.Label != "Data source" {
				add("template-datasource-rule", "", "variable %q labelled %q: want datasource, \"Data source\"", v.Name, v.Label)
			}
		case "query":
			q, _ := v.Query.(string)
			if m, ok := v.Query.(map[string]any); ok {
				q, _ = m["query"].(string)
			}
			m := labelValuesRE.FindStringSubmatch(strings.TrimSpace(q))
			if m == nil {
				add("template-label-promql-rule", "", "variable %q: %q is not label_values(SELECTOR, LABEL)", v.Name, q)
			} else if _, err := parser.NewParser(parser.Options{}).ParseExpr(m[1]); err != nil {
				add("template-label-promql-rule", "", "variable %q: %v", v.Name, err)
			}
			if v.Refresh != 2 {
				add("template-on-time-change-reload-rule", "", "variable %q refreshes %d, want 2 (on time range change)", v.Name, v.Refresh)
			}
		}
	}
	if len(dsVars) != 1 {
		add("template-datasource-rule", "", "want one templated data source, have %v", dsVars)
	}
	for _, v := range []string{"job", "instance"} {
		if !hasVar[v] {
			add("template-"+v+"-rule", "", "no $%s variable", v)
		}
	}
	if d.Editable {
		add("uneditable-dashboard-rule", "", "is editable, it should be set to 'editable: false'")
	}

	var walk func([]lintPanel)
	walk = func(panels []lintPanel) {
		for _, p := range panels {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if p.Title == "" || p.Description == "" {
				add("panel-title-description-rule", p.Title, "want a title and a description")
			}
			if len(p.Targets) == 0 {
				add("panel-no-targets-rule", p.Title, "no targets")
			}
			switch p.Type {
			case "singlestat", "graph", "table", "timeseries":
				if p.Datasource == nil || (p.Datasource.UID != "$datasource" && p.Datasource.UID != "${datasource}") {
					add("panel-datasource-rule", p.Title, "does not use the templated data source at panel level: %+v", p.Datasource)
				}
			}
			switch p.Type {
			case "stat", "singlestat", "graph", "table", "timeseries", "gauge":
				if !slices.Contains(lintUnits, p.FieldConfig.Defaults.Unit) {
					add("panel-units-rule", p.Title, "no or invalid unit %q", p.FieldConfig.Defaults.Unit)
				}
			}
			for _, tg := range p.Targets {
				expr, ok := tg["expr"].(string)
				if !ok {
					continue
				}
				lintTarget(add, p.Title, expr)
			}
		}
	}
	walk(d.Panels)
	return problems
}

// rateIntervalMark stands for $__rate_interval in parsed expressions, so
// that it is told apart from any literal range.
const (
	rateIntervalMark = "61s"
	rateInterval     = 61 * time.Second
)

func lintTarget(add func(rule, panel, format string, args ...any), panel, expr string) {
	for _, v := range []string{"job", "instance"} {
		if !strings.Contains(expr, "$"+v) {
			add("target-"+v+"-rule", panel, "no %s matcher: %s", v, expr)
		}
	}
	s := strings.NewReplacer("${__rate_interval}", rateIntervalMark, "$__rate_interval", rateIntervalMark).Replace(expr)
	s, _ = substitute(s)
	ast, err := parser.NewParser(parser.Options{}).ParseExpr(s)
	if err != nil {
		add("target-promql-rule", panel, "%v: %s", err, expr)
		return
	}
	_ = parser.Walk(inspectFunc(func(n parser.Node, path []parser.Node) {
		var parent *parser.Call
		for i := len(path) - 1; i >= 0; i-- {
			if c, ok := path[i].(*parser.Call); ok {
				parent = c
				break
			}
			if _, ok := path[i].(*parser.MatrixSelector); !ok {
				break
			}
		}
		switch n := n.(type) {
		case *parser.MatrixSelector:
			if parent != nil && (parent.Func.Name == "rate" || parent.Func.Name == "irate") && n.Range != rateInterval {
				add("target-rate-interval-rule", panel, "%s() should range over $__rate_interval: %s", parent.Func.Name, expr)
			}
		case *parser.VectorSelector:
			if strings.HasSuffix(metricName(n), "_total") {
				if parent == nil || !slices.Contains([]string{"rate", "irate", "increase"}, parent.Func.Name) {
					add("target-counter-agg-rule", panel, "counter %s read without rate, irate or increase: %s", metricName(n), expr)
				}
			}
		}
	}), ast, nil)
}

type inspectFunc func(parser.Node, []parser.Node)

func (f inspectFunc) Visit(n parser.Node, path []parser.Node) (parser.Visitor, error) {
	if n != nil {
		f(n, path)
	}
	return f, nil
}
