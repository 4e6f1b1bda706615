package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
)

// newLogEntries returns n entries of task, texts "<task> 0", "<task> 1", …
func newLogEntries(b *testBundle, task string, n int) []engine.LogEntry {
	out := make([]engine.LogEntry, n)
	for i := range out {
		out[i] = engine.LogEntry{
			Task:      task,
			Stream:    engine.StreamStdout,
			Level:     "INFO",
			Text:      fmt.Sprintf("%s %d", task, i),
			Timestamp: b.now.Add(time.Duration(i) * time.Millisecond),
			TraceID:   "4bf92f3577b34da6a3ce929d0e0e4736",
			SpanID:    "00f067aa0ba902b7",
		}
	}
	return out
}

// seqs returns the Seqs of entries.
func seqs(entries []engine.LogEntry) []int64 {
	out := make([]int64, len(entries))
	for i, e := range entries {
		out[i] = e.Seq
	}
	return out
}

// requireLogs compares entries with timestamps as instants.
func requireLogs(t testing.TB, want, got []engine.LogEntry) {
	t.Helper()
	norm := func(es []engine.LogEntry) []engine.LogEntry {
		out := make([]engine.LogEntry, len(es))
		for i, e := range es {
			e.Timestamp = utc(e.Timestamp)
			out[i] = e
		}
		return out
	}
	require.Equal(t, norm(want), norm(got))
}

func testLog(t *testing.T, setup setupFunc) {
	t.Run("SeqAssignedAndWrittenBack", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := createRun(t, b, NewTestRun("hello", "a"))
		first := newLogEntries(b, "a", 3)
		require.NoError(t, b.store.LogAppend(b.ctx, r.ID, first))
		require.Equal(t, []int64{1, 2, 3}, seqs(first))
		second := newLogEntries(b, "a", 2)
		second[0].Stream, second[0].Level = engine.StreamStderr, "ERROR"
		require.NoError(t, b.store.LogAppend(b.ctx, r.ID, second))
		require.Equal(t, []int64{4, 5}, seqs(second))
		require.NoError(t, b.store.LogAppend(b.ctx, r.ID, nil), "an empty batch is fine")

		got, err := b.store.LogList(b.ctx, &engine.LogListParams{RunID: r.ID})
		require.NoError(t, err)
		requireLogs(t, append(append([]engine.LogEntry{}, first...), second...), got)

		// Copies both ways.
		first[0].Text = "mutated"
		got[1].Text = "mutated"
		again, err := b.store.LogList(b.ctx, &engine.LogListParams{RunID: r.ID})
		require.NoError(t, err)
		require.Equal(t, "a 0", again[0].Text)
		require.Equal(t, "a 1", again[1].Text)

		third := newLogEntries(b, "a", 1)
		require.NoError(t, b.store.LogAppend(b.ctx, r.ID, third))
		require.Equal(t, []int64{6}, seqs(third), "an empty batch uses no Seq")
	})

	t.Run("PerRun", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r1 := createRun(t, b, NewTestRun("hello", "a"))
		r2 := createRun(t, b, NewTestRun("hello", "a"))
		e1 := newLogEntries(b, "a", 3)
		e2 := newLogEntries(b, "a", 2)
		require.NoError(t, b.store.LogAppend(b.ctx, r1.ID, e1[:2]))
		require.NoError(t, b.store.LogAppend(b.ctx, r2.ID, e2))
		require.NoError(t, b.store.LogAppend(b.ctx, r1.ID, e1[2:]))
		require.Equal(t, []int64{1, 2, 3}, seqs(e1))
		require.Equal(t, []int64{1, 2}, seqs(e2))
		got, err := b.store.LogList(b.ctx, &engine.LogListParams{RunID: r2.ID})
		require.NoError(t, err)
		requireLogs(t, e2, got)
	})

	t.Run("AppendToFinishedRun", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := createRun(t, b, NewTestRun("hello", "a"))
		moveTo(t, b, r.ID, engine.RunCompleted)
		require.NoError(t, b.store.LogAppend(b.ctx, r.ID, newLogEntries(b, "a", 1)), "late lines of a finished run are kept")
	})

	t.Run("AppendUnknownRunNotFound", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		err := b.store.LogAppend(b.ctx, unknownID, newLogEntries(b, "a", 1))
		require.ErrorIs(t, err, engine.ErrNotFound)
	})

	t.Run("ConcurrentAppends", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := createRun(t, b, NewTestRun("hello", "a"))
		const goroutines, batches, perBatch = 16, 10, 3
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			errs []error
			got  [][]engine.LogEntry
		)
		for g := range goroutines {
			wg.Go(func() {
				for range batches {
					es := newLogEntries(b, fmt.Sprintf("t%d", g), perBatch)
					err := b.store.LogAppend(b.ctx, r.ID, es)
					mu.Lock()
					errs = append(errs, err)
					got = append(got, es)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		for _, err := range errs {
			require.NoError(t, err)
		}
		seen := map[int64]bool{}
		for _, es := range got {
			for i, e := range es {
				require.False(t, seen[e.Seq], "seq %d twice", e.Seq)
				seen[e.Seq] = true
				require.Equal(t, es[0].Seq+int64(i), e.Seq, "a batch gets consecutive seqs")
			}
		}
		const total = goroutines * batches * perBatch
		for s := int64(1); s <= total; s++ {
			require.True(t, seen[s], "seq %d missing", s)
		}
		list, err := b.store.LogList(b.ctx, &engine.LogListParams{RunID: r.ID})
		require.NoError(t, err)
		require.Len(t, list, total)
		for i, e := range list {
			require.Equal(t, int64(i+1), e.Seq)
		}
	})

	t.Run("Filters", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := createRun(t, b, NewTestRun("hello", "a", "b"))
		// Seq 1…10: odd seqs from task a, even from b.
		for range 5 {
			require.NoError(t, b.store.LogAppend(b.ctx, r.ID, newLogEntries(b, "a", 1)))
			require.NoError(t, b.store.LogAppend(b.ctx, r.ID, newLogEntries(b, "b", 1)))
		}
		tests := []struct {
			name string
			p    engine.LogListParams
			want []int64
		}{
			{"All", engine.LogListParams{}, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
			{"Task", engine.LogListParams{Task: "a"}, []int64{1, 3, 5, 7, 9}},
			{"UnknownTask", engine.LogListParams{Task: "zz"}, nil},
			{"After", engine.LogListParams{After: 4}, []int64{5, 6, 7, 8, 9, 10}},
			{"AfterLast", engine.LogListParams{After: 10}, nil},
			{"AfterBeyond", engine.LogListParams{After: 99}, nil},
			{"Tail", engine.LogListParams{Tail: 3}, []int64{8, 9, 10}},
			{"TailBeyond", engine.LogListParams{Tail: 99}, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
			{"Limit", engine.LogListParams{Limit: 3}, []int64{1, 2, 3}},
			{"TaskAfter", engine.LogListParams{Task: "a", After: 4}, []int64{5, 7, 9}},
			{"TaskTail", engine.LogListParams{Task: "b", Tail: 2}, []int64{8, 10}},
			{"TaskLimit", engine.LogListParams{Task: "b", Limit: 2}, []int64{2, 4}},
			{"AfterLimit", engine.LogListParams{After: 4, Limit: 2}, []int64{5, 6}},
			{"AfterTail", engine.LogListParams{After: 4, Tail: 2}, []int64{9, 10}},
			{"TailThenLimit", engine.LogListParams{Tail: 5, Limit: 2}, []int64{6, 7}},
			{"AllFour", engine.LogListParams{Task: "a", After: 2, Tail: 2, Limit: 1}, []int64{7}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				tt.p.RunID = r.ID
				got, err := b.store.LogList(b.ctx, &tt.p)
				require.NoError(t, err)
				gotSeqs := seqs(got)
				if len(gotSeqs) == 0 {
					gotSeqs = nil
				}
				require.Equal(t, tt.want, gotSeqs)
				for _, e := range got {
					want := "a"
					if e.Seq%2 == 0 {
						want = "b"
					}
					require.Equal(t, want, e.Task)
				}
			})
		}
	})
}
