package plugins

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDocsProtocolExamples keeps the protocol 1 examples of docs/plugins.md
// true: the describe document validates, the run request is exactly what
// pyoco sends, and the results parse.
func TestDocsProtocolExamples(t *testing.T) {
	t.Parallel()
	md, err := os.ReadFile("../docs/plugins.md")
	require.NoError(t, err)
	blocks := regexp.MustCompile("(?s)```json\n(.*?)```").FindAllSubmatch(md, -1)
	require.Len(t, blocks, 4, "describe, run request, output, error")

	doc, err := parseDescribe(blocks[0][1])
	require.NoError(t, err)
	require.NoError(t, doc.validate())
	require.Equal(t, "pyfun", doc.Name)

	var req runRequest
	dec := json.NewDecoder(bytes.NewReader(blocks[1][1]))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&req))
	require.Equal(t, Protocol, req.Protocol)
	again, err := json.Marshal(req)
	require.NoError(t, err)
	require.JSONEq(t, string(blocks[1][1]), string(again), "the documented request has every field pyoco sends")

	res, err := parseResult(blocks[2][1])
	require.NoError(t, err)
	require.Equal(t, map[string]any{"slug": "creme-brulee-for-2"}, res.output)
	res, err = parseResult(blocks[3][1])
	require.NoError(t, err)
	require.True(t, res.isError)
	require.Equal(t, `input "text": required input is missing`, res.errMsg)
}
