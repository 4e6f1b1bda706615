package cli

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
)

// TestBoardModel: the board's frame for given reports at given times: the
// header with counts and the run's time, one line per running task with its
// attempt and timer (or its retry), nothing once stopped.
func TestBoardModel(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	m := &boardModel{running: map[string]*boardTask{}, total: 3, now: t0}
	for _, ev := range []engine.Progress{
		{Kind: engine.ProgressRunStarted, FlowName: "f", RunID: "r", Time: t0},
		{Kind: engine.ProgressTaskStarted, Task: "a", Attempt: 1, Time: t0},
		{Kind: engine.ProgressTaskFinished, Task: "a", Attempt: 1, Status: "SUCCEEDED", Time: t0.Add(time.Second)},
		{Kind: engine.ProgressTaskStarted, Task: "long_task_name", Attempt: 1, Time: t0.Add(time.Second)},
		{Kind: engine.ProgressTaskStarted, Task: "c", Attempt: 1, Time: t0.Add(time.Second)},
		{Kind: engine.ProgressTaskRetrying, Task: "c", Attempt: 1, RetryIn: 5 * time.Second, Time: t0.Add(2 * time.Second)},
	} {
		m.apply(ev)
	}
	m.Update(boardNow(t0.Add(3500 * time.Millisecond)))
	require.Equal(t, "── f  2 running · 1/3 done · 3.5s ──\n"+
		"  ⏳ long_task_name  attempt 1  running 2.5s\n"+
		"  ⏳ c               attempt 1  retrying in 3.5s\n", m.View())
	m.apply(engine.Progress{Kind: engine.ProgressTaskStarted, Task: "c", Attempt: 2, Time: t0.Add(7 * time.Second)})
	m.apply(engine.Progress{Kind: engine.ProgressTaskRetrying, Task: "long_task_name", Attempt: 1, RetryIn: -1, Time: t0.Add(7 * time.Second)})
	m.Update(boardNow(t0.Add(67 * time.Second)))
	require.Equal(t, "── f  2 running · 1/3 done · 1m07s ──\n"+
		"  ⏳ long_task_name  attempt 1  retrying\n"+
		"  ⏳ c               attempt 2  running 1m00s\n", m.View())
	m.Update(boardStop{})
	require.Empty(t, m.View())
}

// TestBoardOffTerminal: a board on a writer that is not a terminal still
// starts, keeps the lines in order and stops (PYOCO_PROGRESS=board).
func TestBoardOffTerminal(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	b := startBoard(&out, 1)
	for i := range 50 {
		b.event(engine.Progress{Kind: engine.ProgressTaskLog, Task: "a"}, strings.Repeat("x", i%3+1)+"\n")
	}
	b.stop()
	b.stop()
	var got []string
	text := regexp.MustCompile(`\x1b\[[0-9;?]*[a-zA-Z]`).ReplaceAllString(out.String(), "")
	for _, l := range strings.Split(text, "\n") {
		if l = strings.Trim(l, " \r"); l != "" && strings.Trim(l, "x") == "" {
			got = append(got, l)
		}
	}
	require.Len(t, got, 50, "%q", out.String())
	for i, l := range got {
		require.Equal(t, strings.Repeat("x", i%3+1), l)
	}
}
