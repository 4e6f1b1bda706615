package dashboards_test

import (
	"bytes"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
	"github.com/stretchr/testify/require"
)

// The expositions of pyoco's /metrics that scrapeExporter read: the
// Prometheus text format and OpenMetrics (Accept: application/openmetrics-text).
var exportedText, exportedOpenMetrics []byte

// omSuffixes are the sample names OpenMetrics allows in a family of each type.
var omSuffixes = map[string][]string{
	"counter":        {"_total", "_created"},
	"gauge":          {""},
	"unknown":        {""},
	"info":           {"_info"},
	"stateset":       {""},
	"histogram":      {"_bucket", "_count", "_sum", "_created"},
	"gaugehistogram": {"_bucket", "_gcount", "_gsum"},
	"summary":        {"", "_count", "_sum", "_created"},
}

// TestOpenMetricsStrict parses pyoco's OpenMetrics exposition (after real
// runs, with exemplars) with Prometheus's own OpenMetrics parser
// (github.com/prometheus/prometheus/model/textparse, the one a Prometheus
// server scrapes with) to io.EOF, which needs the closing "# EOF", and
// checks what that parser leaves to the writer: each family is described
// once (no two families of one name, as go_memstats_alloc_bytes gauge and
// go_memstats_alloc_bytes_total counter were), and every sample's name is
// its family's name with a suffix its type allows.
func TestOpenMetricsStrict(t *testing.T) {
	t.Parallel()
	exportedSeries(t)
	om := exportedOpenMetrics
	require.True(t, bytes.HasSuffix(om, []byte("# EOF\n")), "OpenMetrics ends with # EOF")

	p := textparse.NewOpenMetricsParser(om, labels.NewSymbolTable())
	types := map[string]string{}
	var family, typ string
	samples, exemplars := 0, 0
	for {
		et, err := p.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, "strict OpenMetrics parse")
		switch et {
		case textparse.EntryType:
			name, mt := p.Type()
			family, typ = string(name), string(mt)
			_, dup := types[family]
			require.False(t, dup, "family %q is described twice (names clash in OpenMetrics)", family)
			types[family] = typ
		case textparse.EntrySeries:
			samples++
			var lset labels.Labels
			p.Labels(&lset)
			name := lset.Get(labels.MetricName)
			require.True(t, strings.HasPrefix(name, family), "sample %s outside its family %s", name, family)
			require.True(t, slices.Contains(omSuffixes[typ], strings.TrimPrefix(name, family)),
				"sample %s in %s family %s: suffix not allowed", name, typ, family)
			var ex exemplar.Exemplar
			for p.Exemplar(&ex) {
				exemplars++
			}
		}
	}
	require.Greater(t, samples, 100)
	require.Positive(t, exemplars, "histograms and counters carry exemplars after traced runs")
	require.Contains(t, types, "pyoco_runs", "the counter pyoco_runs_total is family pyoco_runs")
	require.NotContains(t, types, "go_memstats_alloc_bytes")
}

// TestPromtoolCheckMetrics runs `promtool check metrics` (Prometheus's
// lint for expositions: naming, suffixes, HELP) on pyoco's /metrics.
func TestPromtoolCheckMetrics(t *testing.T) {
	t.Parallel()
	promtool := tool(t, "", "promtool", "/usr/bin/promtool")
	exportedSeries(t)
	cmd := exec.CommandContext(t.Context(), promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(exportedText)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "promtool check metrics:\n%s", out)
}
