//go:build linux

package e2e_test

// The dashboards part of TestStack: every PromQL target of every
// dashboards/*.json, with Grafana's variables substituted, must return data
// from the stack's Prometheus.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// dashboardVars are the values the test gives Grafana's variables.
var dashboardVars = map[string]string{
	"__rate_interval": "1m",
	"__range":         "5m",
	"__interval":      "15s",
	"flow":            ".*",
}

// grafanaVar matches $name, ${name}, ${name:format} and [[name]].
var grafanaVar = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)(?::[A-Za-z0-9_]+)?\}|\$([A-Za-z0-9_]+)|\[\[([A-Za-z0-9_]+)\]\]`)

// substituteVars replaces Grafana's variables in expr; an unknown variable
// is an error (the dashboards may use only dashboardVars).
func substituteVars(expr string) (string, error) {
	var unknown []string
	out := grafanaVar.ReplaceAllStringFunc(expr, func(m string) string {
		sub := grafanaVar.FindStringSubmatch(m)
		name := sub[1] + sub[2] + sub[3]
		v, ok := dashboardVars[name]
		if !ok {
			unknown = append(unknown, m)
			return m
		}
		return v
	})
	if len(unknown) > 0 {
		return "", fmt.Errorf("unknown variables %v", unknown)
	}
	return out, nil
}

// dashTarget is one query of a dashboard panel.
type dashTarget struct {
	where string // file, panel and refId, for messages
	kind  string // the datasource type: "prometheus", or another one
	expr  string // PromQL (kind prometheus)
	raw   map[string]any
}

// dashboardFiles returns the repository's dashboards/*.json.
func dashboardFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "dashboards", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no dashboards/*.json")
	return files
}

// dashboardTargets reads every panel target of the dashboard files,
// including panels nested in rows.
func dashboardTargets(t *testing.T, files []string) []dashTarget {
	t.Helper()
	var out []dashTarget
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		var d struct {
			Title  string           `json:"title"`
			Panels []map[string]any `json:"panels"`
		}
		require.NoError(t, json.Unmarshal(data, &d), f)
		var walk func(panels []any, path string)
		walk = func(panels []any, path string) {
			for _, pv := range panels {
				p, _ := pv.(map[string]any)
				title, _ := p["title"].(string)
				if sub, ok := p["panels"].([]any); ok {
					walk(sub, path+title+" / ")
				}
				targets, _ := p["targets"].([]any)
				for _, tv := range targets {
					tg, _ := tv.(map[string]any)
					ref, _ := tg["refId"].(string)
					kind := datasourceType(tg["datasource"])
					if kind == "" {
						kind = datasourceType(p["datasource"])
					}
					expr, hasExpr := tg["expr"].(string)
					if kind == "" && hasExpr {
						kind = "prometheus"
					}
					out = append(out, dashTarget{
						where: fmt.Sprintf("%s: %q %s%s refId %s", filepath.Base(f), d.Title, path, title, ref),
						kind:  kind, expr: expr, raw: tg,
					})
				}
			}
		}
		panels := make([]any, len(d.Panels))
		for i, p := range d.Panels {
			panels[i] = p
		}
		walk(panels, "")
	}
	return out
}

// datasourceType is a panel's or target's datasource type ("" if unset).
func datasourceType(v any) string {
	ds, _ := v.(map[string]any)
	s, _ := ds["type"].(string)
	return s
}

// orZero ends every generated PromQL target (dashboards.OrZero, wrapping
// the query in parentheses): it makes an empty result a 0.
const orZero = " or on() vector(0)"

// checkDashboards runs every PromQL target of the dashboards as an instant
// query and requires data; targets of the Infinity datasource that read
// the pyoco API are fetched from it and must return rows (unless api is
// nil). fresh runs the targets as they are, on a stack that ran nothing:
// none may say "No data". Otherwise the orZero fallback is cut off, so that
// each query must find its own series.
func checkDashboards(t *testing.T, s *stack, p *prometheus, api *pyocoAPI, files []string, fresh bool) {
	t.Helper()
	targets := dashboardTargets(t, files)
	require.NotEmpty(t, targets, "the dashboards have no targets")
	promql, other := 0, 0
	for _, tg := range targets {
		switch {
		case tg.kind == "prometheus":
			require.NotEmpty(t, tg.expr, "%s: a Prometheus target without expr", tg.where)
			expr, err := substituteVars(tg.expr)
			require.NoError(t, err, tg.where)
			require.True(t, strings.HasSuffix(expr, orZero), "%s: a target ends with%s, so it never says No data", tg.where, orZero)
			if !fresh {
				expr = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSuffix(expr, orZero), "("), ")")
			}
			promql++
			eventually(t, 30*time.Second, fmt.Sprintf("data for %s: %s", tg.where, expr), func() error {
				r, err := s.query(p, expr)
				if err != nil {
					return err
				}
				if len(r) == 0 {
					return fmt.Errorf("empty result")
				}
				return nil
			})
		case strings.Contains(tg.kind, "infinity") && api != nil:
			u, _ := tg.raw["url"].(string)
			if !strings.HasPrefix(u, "/") {
				t.Logf("dashboard target not checked: %s (%s, url %q)", tg.where, tg.kind, u)
				continue
			}
			other++
			var body map[string]any
			require.NoError(t, s.do(http.MethodGet, api.url+u, nil, http.StatusOK, &body), tg.where)
			root, _ := tg.raw["root_selector"].(string)
			rows, _ := body[root].([]any)
			require.NotEmpty(t, rows, "%s: GET %s has no %q rows", tg.where, u, root)
			cols, _ := tg.raw["columns"].([]any)
			first, _ := rows[0].(map[string]any)
			for _, c := range cols {
				sel, _ := c.(map[string]any)["selector"].(string)
				_, ok := first[sel]
				require.True(t, ok, "%s: column %q is not a field of GET %s", tg.where, sel, u)
			}
		default:
			t.Logf("dashboard target not checked: %s (datasource %s)", tg.where, tg.kind)
		}
	}
	t.Logf("dashboards (fresh %v): %d PromQL queries returned data, %d API tables checked (%d files)", fresh, promql, other, len(files))
}
