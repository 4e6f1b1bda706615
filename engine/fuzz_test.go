package engine_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pyoco/pyoco/engine"
	"github.com/stretchr/testify/require"
)

// flowFixtures returns the text of every flow fixture, as fuzz seeds.
func flowFixtures(f *testing.F) map[string][]byte {
	f.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "flows", "*", "*.yaml"))
	require.NoError(f, err)
	require.NotEmpty(f, files)
	out := make(map[string][]byte, len(files))
	for _, file := range files {
		b, err := os.ReadFile(file)
		require.NoError(f, err)
		out[file] = b
	}
	return out
}

func FuzzParseGraph(f *testing.F) {
	for _, s := range []string{
		"", "a", "a >> b", "a>>b>>c", "(a & b) >> c", "(a | b) >> c", "((a >> b) & c) >> d",
		"a >> (b | c) >> d; e # x\n\nf", "(a & b | c)", "(", ")", ">>", "a >> a", "(a|a)>>b",
		"x >> (a >> b | c) >> d", "a\r\nb >> c\t# é",
	} {
		f.Add(s)
	}
	for _, b := range flowFixtures(f) {
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, src string) {
		g, err := engine.ParseGraph(src)
		if err != nil {
			var le *engine.LoadError
			require.ErrorAs(t, err, &le)
			require.Positive(t, le.Pos.Line)
			require.Positive(t, le.Pos.Col)
			require.Empty(t, le.Pos.File)
			require.NotEmpty(t, le.Msg)
			return
		}
		for _, e := range g.Edges {
			require.NotEqual(t, e.From, e.To)
		}
		requireSameGraph(t, g, engine.FormatGraph(g))
	})
}

func FuzzLoadFlow(f *testing.F) {
	for _, b := range flowFixtures(f) {
		f.Add(b)
	}
	f.Add([]byte("version: 1\nflow: {name: x, graph: 'a >> b'}\ntasks: {a: {use: noop}, b: {use: noop, inputs: {m: $node.a.output}}}\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("<<: {version: 1}\n"))
	f.Add([]byte("? [a]\n: b\n"))
	f.Add([]byte("!!binary x: 1\n"))
	f.Add([]byte("version: 1\nflow: {name: x, schedule: [{cron: '*/5 * * * *', timezone: Europe/Paris}, {every: 30s, name: s, catchup: all}]}\ntasks: {a: {use: noop}}\n"))
	f.Add([]byte("version: 1\nflow: {name: x, schedule: {every: 1h, params: {k: [1]}}}\ntasks: {a: {use: noop}}\n"))
	reg := loaderRegistry(f)
	f.Fuzz(func(t *testing.T, src []byte) {
		for _, tasks := range []engine.TaskLookup{nil, reg} {
			fl, err := engine.LoadFlow("fuzz.yaml", src, tasks)
			if err == nil {
				require.NotNil(t, fl)
				require.NotEmpty(t, fl.Tasks)
				require.Len(t, fl.Order, len(fl.Tasks))
				for _, name := range fl.Order {
					spec := fl.Tasks[name]
					require.NotNil(t, spec)
					require.Positive(t, spec.Pos.Line)
					for _, up := range spec.Upstream {
						require.Contains(t, fl.Tasks, up)
					}
				}
				for _, w := range fl.Warnings {
					requirePositioned(t, w)
				}
				for _, s := range fl.Schedules {
					require.NotEmpty(t, s.Name)
					require.True(t, (s.Cron == "") != (s.Every == 0), "exactly one of cron and every: %+v", s)
					require.Positive(t, s.Pos.Line)
					now := time.Now()
					require.True(t, s.Next(now).After(now), "a loaded schedule fires: %+v", s)
				}
				continue
			}
			require.Nil(t, fl)
			var les engine.LoadErrors
			require.True(t, errors.As(err, &les), "error %T is not LoadErrors: %v", err, err)
			require.NotEmpty(t, les)
			for _, le := range les {
				requirePositioned(t, le)
			}
		}
	})
}

func requirePositioned(t *testing.T, le *engine.LoadError) {
	t.Helper()
	require.Equal(t, "fuzz.yaml", le.Pos.File, le.Error())
	require.Positive(t, le.Pos.Line, le.Error())
	require.Positive(t, le.Pos.Col, le.Error())
	require.NotEmpty(t, le.Msg)
}
