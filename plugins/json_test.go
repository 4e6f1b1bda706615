package plugins_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/plugins"
)

// GET /plugins and `pyoco plugins list --json` encode a Report: nil lists
// must come out as [], as the schema says, never null.
func TestReportJSONEmptyListsNotNull(t *testing.T) {
	b, err := json.Marshal(&plugins.Report{})
	require.NoError(t, err)
	require.JSONEq(t, `{"path":[],"plugins":[]}`, string(b))

	b, err = json.Marshal(plugins.Report{Plugins: []plugins.PluginReport{{Name: "x", Origin: plugins.OriginGo}}})
	require.NoError(t, err)
	require.JSONEq(t, `{"path":[],"plugins":[{"name":"x","origin":"go","version":"","tasks":[],"warnings":[],"errors":[]}]}`, string(b))
}
