package engine_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
)

func TestLoadFlowSchedule(t *testing.T) {
	t.Parallel()
	f, err := engine.LoadFlowFile("testdata/flows/schedule/good.yaml", loaderRegistry(t))
	require.NoError(t, err)
	require.Len(t, f.Schedules, 3)
	paris, err := time.LoadLocation("Europe/Paris")
	require.NoError(t, err)

	s := f.Schedules[0]
	require.Equal(t, "0", s.Name)
	require.Equal(t, "*/5 * * * *", s.Cron)
	require.Equal(t, "*/5 * * * *", s.Spec())
	require.Equal(t, "Europe/Paris", s.Timezone)
	require.Equal(t, paris.String(), s.Location.String())
	require.Equal(t, map[string]any{"size": int64(5)}, s.Params)
	require.Equal(t, engine.CatchupOne, s.Catchup)
	require.Equal(t, "schedule:0", s.Tag())
	require.Equal(t, engine.Position{File: "testdata/flows/schedule/good.yaml", Line: 6, Col: 7}, s.Pos)
	at := time.Date(2026, 3, 1, 10, 2, 0, 0, time.UTC)
	require.Equal(t, time.Date(2026, 3, 1, 10, 5, 0, 0, time.UTC), s.Next(at))

	s = f.Schedules[1]
	require.Equal(t, "fast", s.Name)
	require.Equal(t, 30*time.Second, s.Every)
	require.Equal(t, "every 30s", s.Spec())
	require.Equal(t, engine.CatchupAll, s.Catchup)
	require.Equal(t, time.UTC, s.Location)
	require.Equal(t, time.Date(2026, 3, 1, 10, 2, 30, 0, time.UTC), s.Next(at))
	require.Equal(t, time.Date(2026, 3, 1, 10, 3, 0, 0, time.UTC), s.Next(at.Add(30*time.Second)), "a tick is strictly after t")

	s = f.Schedules[2]
	require.Equal(t, "2", s.Name)
	require.Equal(t, engine.CatchupNone, s.Catchup)
	require.Equal(t, time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC), s.Next(at), "cron without timezone is read in UTC")
}

func TestScheduleNextTimezone(t *testing.T) {
	t.Parallel()
	src := "version: 1\nflow:\n  name: tz\n  schedule: [{cron: \"30 2 * * *\", timezone: Europe/Paris}]\ntasks: {a: {use: noop}}\n"
	f, err := engine.LoadFlow("", []byte(src), nil)
	require.NoError(t, err)
	s := f.Schedules[0]
	// Winter: Paris is UTC+1; summer: UTC+2.
	require.Equal(t, time.Date(2026, 1, 10, 1, 30, 0, 0, time.UTC), s.Next(time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)))
	require.Equal(t, time.Date(2026, 7, 10, 0, 30, 0, 0, time.UTC), s.Next(time.Date(2026, 7, 10, 0, 0, 0, 0, time.UTC)))
	require.Equal(t, time.UTC, s.Next(time.Now()).Location())
}

func TestLoadFlowScheduleBad(t *testing.T) {
	t.Parallel()
	tests := map[string][]string{
		"bad": {
			`bad.yaml:5:13: flow.schedule[0]: bad cron "61 * * * *"`,
			`bad.yaml:7:17: flow.schedule[1]: unknown timezone "Mars/Olympus"`,
			"bad.yaml:8:14: flow.schedule[2]: every must be at least 1s, got 0s",
			`bad.yaml:9:14: bad duration "-5s" for flow.schedule[3].every: must not be negative`,
			"bad.yaml:10:14: flow.schedule[4]: every must be at least 1s, got 500ms",
			"bad.yaml:11:27: flow.schedule[5] has both cron and every",
			`bad.yaml:12:27: unknown key "cron_tz" in flow.schedule[6]`,
			`bad.yaml:14:8: duplicate schedule name "x" (first at 13:8)`,
			`bad.yaml:15:14: flow.schedule[9]: invalid name "a b"`,
			`bad.yaml:16:28: flow.schedule[10]: bad catchup "some" (want none, one or all)`,
			"bad.yaml:17:19: flow.schedule[11]: timezone applies to cron only",
			"bad.yaml:18:27: flow.schedule[12].params must be a mapping, got a list",
			"bad.yaml:19:8: flow.schedule[13] needs cron",
			`bad.yaml:20:13: flow.schedule[14]: bad cron "@every 5m": write every: <duration> instead of @every`,
			`bad.yaml:21:13: flow.schedule[15]: cron "0 0 30 2 *" never fires`,
			`bad.yaml:22:13: flow.schedule[16]: bad cron "12"`,
			"bad.yaml:23:7: flow.schedule[17] must be a mapping, got a string",
		},
		"not_list": {"not_list.yaml:4:13: flow.schedule must be a list of schedules, got a string"},
	}
	for name, wants := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join("testdata", "flows", "schedule", name+".yaml")
			f, err := engine.LoadFlowFile(path, nil)
			require.Error(t, err)
			require.Nil(t, f)
			got := filepath.ToSlash(err.Error()) + "\n"
			for _, want := range wants {
				require.Contains(t, got, want)
			}
			require.Len(t, strings.Split(strings.TrimSpace(got), "\n"), len(wants), "one error per bad entry:\n%s", got)
			golden := strings.TrimSuffix(path, ".yaml") + ".err"
			if updateGolden() {
				require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "run with -update to create %s", golden)
			require.Equal(t, string(want), got)
		})
	}
}
