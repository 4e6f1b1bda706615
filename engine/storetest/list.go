package storetest

import (
	"encoding/base64"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
)

// createRuns creates n runs of flow with CreatedAt b.now+i ms (i = 0…n-1)
// and returns them oldest first.
func createRuns(t testing.TB, b *testBundle, flow string, n int) []*engine.Run {
	t.Helper()
	runs := make([]*engine.Run, n)
	for i := range n {
		r := NewTestRun(flow, "a")
		r.CreatedAt = b.now.Add(time.Duration(i) * time.Millisecond)
		runs[i] = createRun(t, b, r)
	}
	return runs
}

// newestFirst returns the IDs of runs (given oldest first) newest first.
func newestFirst(runs []*engine.Run) []string {
	ids := runIDs(runs)
	slices.Reverse(ids)
	return ids
}

// listIDs returns the IDs of one page.
func listIDs(t testing.TB, b *testBundle, p *engine.RunListParams) ([]string, string) {
	t.Helper()
	page, err := b.store.RunList(b.ctx, p)
	require.NoError(t, err)
	return runIDs(page.Runs), page.NextCursor
}

// walk pages through RunList with p (p.Cursor is overwritten), calling
// between (if non-nil) after each page but the last. It fails on a page
// larger than the limit or on a duplicate, and returns the IDs in order.
func walk(t testing.TB, b *testBundle, p engine.RunListParams, between func(page int)) []string {
	t.Helper()
	var all []string
	seen := map[string]bool{}
	for page := 0; ; page++ {
		require.Less(t, page, 1000, "RunList does not end")
		got, next := listIDs(t, b, &p)
		require.LessOrEqual(t, len(got), p.Limit)
		for _, id := range got {
			require.False(t, seen[id], "run %s returned twice", id)
			seen[id] = true
		}
		all = append(all, got...)
		if next == "" {
			return all
		}
		require.NotEmpty(t, got, "a page with a NextCursor has runs")
		p.Cursor = next
		if between != nil {
			between(page)
		}
	}
}

func testRunList(t *testing.T, setup setupFunc) {
	t.Run("Empty", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		page, err := b.store.RunList(b.ctx, &engine.RunListParams{})
		require.NoError(t, err)
		require.Empty(t, page.Runs)
		require.Empty(t, page.NextCursor)
	})

	t.Run("NewestFirstTiesByIDDescending", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		runs := createRuns(t, b, "hello", 3)
		for _, id := range []string{"tie-b", "tie-c", "tie-a"} {
			r := NewTestRun("hello", "a")
			r.ID = id
			r.CreatedAt = b.now.Add(time.Second)
			createRun(t, b, r)
		}
		got, next := listIDs(t, b, &engine.RunListParams{})
		want := append([]string{"tie-c", "tie-b", "tie-a"}, newestFirst(runs)...)
		require.Equal(t, want, got)
		require.Empty(t, next)

		// Paging through the tie splits it correctly.
		require.Equal(t, want, walk(t, b, engine.RunListParams{Limit: 2}, nil))
	})

	t.Run("WithoutTasks", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := NewTestRun("hello", "a", "b")
		r.Tags = []string{"x"}
		createRun(t, b, r)
		startRun(t, b, r.ID, "w1", b.now.Add(time.Second))
		page, err := b.store.RunList(b.ctx, &engine.RunListParams{})
		require.NoError(t, err)
		require.Len(t, page.Runs, 1)
		require.Nil(t, page.Runs[0].Tasks)
		want := getRun(t, b, r.ID)
		want.Tasks = nil
		RequireRunEqual(t, want, page.Runs[0])
	})

	t.Run("Filters", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		// One run per (flow, status, tag set); created in a known order.
		type spec struct {
			name   string
			flow   string
			status engine.RunStatus
			tags   []string
		}
		specs := []spec{
			{"etl-pending", "etl", engine.RunPending, []string{"nightly"}},
			{"etl-running", "etl", engine.RunRunning, []string{"nightly", "team-x"}},
			{"etl-cancelling", "etl", engine.RunCancelling, nil},
			{"etl-completed", "etl", engine.RunCompleted, []string{"team-x"}},
			{"etl-failed", "etl", engine.RunFailed, []string{"nightly", "nightly"}},
			{"etl-cancelled", "etl", engine.RunCancelled, nil},
			{"web-pending", "web", engine.RunPending, []string{"team-x"}},
			{"web-running", "web", engine.RunRunning, []string{"nightly"}},
			{"web-completed", "web", engine.RunCompleted, []string{"nightly", "team-x"}},
		}
		ids := map[string]string{} // spec name → run ID
		for i, s := range specs {
			r := NewTestRun(s.flow, "a")
			r.Tags = s.tags
			r.CreatedAt = b.now.Add(time.Duration(i) * time.Millisecond)
			createRun(t, b, r)
			ids[s.name] = r.ID
			moveTo(t, b, r.ID, s.status)
		}
		// names returns the IDs of the named specs, newest first.
		names := func(ns ...string) []string {
			var out []string
			for i := len(specs) - 1; i >= 0; i-- {
				if slices.Contains(ns, specs[i].name) {
					out = append(out, ids[specs[i].name])
				}
			}
			return out
		}
		all := make([]string, len(specs))
		for i, s := range specs {
			all[i] = s.name
		}
		tests := []struct {
			name string
			p    engine.RunListParams
			want []string
		}{
			{"None", engine.RunListParams{}, names(all...)},
			{"OneStatus", engine.RunListParams{Statuses: []engine.RunStatus{engine.RunPending}}, names("etl-pending", "web-pending")},
			{"EachStatusCancelling", engine.RunListParams{Statuses: []engine.RunStatus{engine.RunCancelling}}, names("etl-cancelling")},
			{"TwoStatuses", engine.RunListParams{Statuses: []engine.RunStatus{engine.RunCompleted, engine.RunRunning}}, names("etl-running", "etl-completed", "web-running", "web-completed")},
			{"DuplicateStatuses", engine.RunListParams{Statuses: []engine.RunStatus{engine.RunPending, engine.RunPending}}, names("etl-pending", "web-pending")},
			{"AllStatuses", engine.RunListParams{Statuses: engine.RunStatuses}, names(all...)},
			{"UnknownStatus", engine.RunListParams{Statuses: []engine.RunStatus{"BOGUS"}}, nil},
			{"Flow", engine.RunListParams{Flow: "web"}, names("web-pending", "web-running", "web-completed")},
			{"UnknownFlow", engine.RunListParams{Flow: "nope"}, nil},
			{"Tag", engine.RunListParams{Tag: "nightly"}, names("etl-pending", "etl-running", "etl-failed", "web-running", "web-completed")},
			{"UnknownTag", engine.RunListParams{Tag: "nope"}, nil},
			{"StatusAndFlow", engine.RunListParams{Statuses: []engine.RunStatus{engine.RunPending, engine.RunCompleted}, Flow: "etl"}, names("etl-pending", "etl-completed")},
			{"StatusAndTag", engine.RunListParams{Statuses: []engine.RunStatus{engine.RunRunning}, Tag: "team-x"}, names("etl-running")},
			{"StatusesAndSmallerFlow", engine.RunListParams{Statuses: []engine.RunStatus{engine.RunPending, engine.RunRunning, engine.RunCancelling, engine.RunCompleted, engine.RunFailed}, Flow: "web"}, names("web-pending", "web-running", "web-completed")},
			{"StatusesAndSmallerTag", engine.RunListParams{Statuses: []engine.RunStatus{engine.RunPending, engine.RunRunning, engine.RunCompleted, engine.RunFailed}, Tag: "team-x"}, names("etl-running", "etl-completed", "web-pending", "web-completed")},
			{"FlowAndTag", engine.RunListParams{Flow: "web", Tag: "team-x"}, names("web-pending", "web-completed")},
			{"All3", engine.RunListParams{Statuses: []engine.RunStatus{engine.RunCompleted, engine.RunFailed}, Flow: "etl", Tag: "nightly"}, names("etl-failed")},
			{"All3NoMatch", engine.RunListParams{Statuses: []engine.RunStatus{engine.RunCancelled}, Flow: "web", Tag: "team-x"}, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, next := listIDs(t, b, &tt.p)
				require.Equal(t, tt.want, nilIfEmpty(got))
				require.Empty(t, next)
				for _, limit := range []int{1, 2} {
					p := tt.p
					p.Limit = limit
					require.Equal(t, tt.want, nilIfEmpty(walk(t, b, p, nil)), "limit %d", limit)
				}
			})
		}
	})

	t.Run("LimitDefaults50", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		runs := createRuns(t, b, "hello", 55)
		want := newestFirst(runs)
		got, next := listIDs(t, b, &engine.RunListParams{})
		require.Equal(t, want[:50], got)
		require.NotEmpty(t, next)
		got, next = listIDs(t, b, &engine.RunListParams{Cursor: next})
		require.Equal(t, want[50:], got)
		require.Empty(t, next)
	})

	t.Run("PagingWalksAllOnce", func(t *testing.T) {
		t.Parallel()
		for _, tt := range []struct{ n, limit int }{{23, 5}, {20, 5}, {5, 5}, {1, 1}, {7, 100}} {
			t.Run(fmt.Sprintf("%d/%d", tt.n, tt.limit), func(t *testing.T) {
				t.Parallel()
				b := setup(t)
				runs := createRuns(t, b, "hello", tt.n)
				pages := 0
				got := walk(t, b, engine.RunListParams{Limit: tt.limit}, func(int) { pages++ })
				require.Equal(t, newestFirst(runs), got)
				require.Equal(t, (tt.n+tt.limit-1)/tt.limit, pages+1, "the last full page has no NextCursor")
			})
		}
	})

	t.Run("PagingWhileRunsAreCreatedAndChange", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		runs := createRuns(t, b, "hello", 12)
		var created []string
		got := walk(t, b, engine.RunListParams{Limit: 4}, func(page int) {
			// Newer runs appear during the walk; statuses change.
			r := NewTestRun("hello", "a")
			r.CreatedAt = b.now.Add(time.Hour + time.Duration(page)*time.Millisecond)
			created = append(created, createRun(t, b, r).ID)
			startRun(t, b, runs[page].ID, "w1", b.now)
			startRun(t, b, runs[11-page].ID, "w1", b.now)
		})
		require.Equal(t, newestFirst(runs), got, "the walk returns the runs that existed when it began, once")
		for _, id := range created {
			require.NotContains(t, got, id)
		}
	})

	t.Run("PagingWhileStatusesChange", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		runs := createRuns(t, b, "hello", 12) // runs[11] is the newest
		pending := engine.RunListParams{Statuses: []engine.RunStatus{engine.RunPending}, Limit: 4}
		left := map[string]bool{}
		got := walk(t, b, pending, func(page int) {
			switch page {
			case 0: // page 0 was runs 11…8
				startRun(t, b, runs[10].ID, "w1", b.now) // seen: stays listed once
				startRun(t, b, runs[5].ID, "w1", b.now)  // not yet seen: leaves the filter
				left[runs[5].ID] = true
				r := NewTestRun("hello", "a") // newer than the cursor: not listed
				r.CreatedAt = b.now.Add(time.Hour)
				createRun(t, b, r)
				left[r.ID] = true
			case 1: // page 1 was runs 7, 6, 4, 3
				_, err := b.store.RunCancel(b.ctx, &engine.RunCancelParams{RunID: runs[2].ID, At: b.now})
				require.NoError(t, err)
				left[runs[2].ID] = true
			}
		})
		var want []string
		for _, id := range newestFirst(runs) {
			if !left[id] {
				want = append(want, id)
			}
		}
		require.Equal(t, want, got)
	})

	t.Run("BadCursor", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		createRuns(t, b, "hello", 3)
		for _, c := range []string{
			"!!not base64!!",
			base64.RawURLEncoding.EncodeToString([]byte("garbage")),
			base64.StdEncoding.EncodeToString([]byte{0xff, 0x00, 0x13}),
			"x",
		} {
			page, err := b.store.RunList(b.ctx, &engine.RunListParams{Cursor: c})
			require.ErrorIs(t, err, engine.ErrBadCursor, "cursor %q", c)
			require.Nil(t, page)
		}
	})
}

// moveTo drives run id from PENDING to st through the store's operations.
func moveTo(t testing.TB, b *testBundle, id string, st engine.RunStatus) {
	t.Helper()
	switch st {
	case engine.RunPending:
	case engine.RunCancelled:
		_, err := b.store.RunCancel(b.ctx, &engine.RunCancelParams{RunID: id, At: b.now})
		require.NoError(t, err)
	case engine.RunRunning:
		startRun(t, b, id, "w1", b.now)
	case engine.RunCancelling:
		startRun(t, b, id, "w1", b.now)
		_, err := b.store.RunCancel(b.ctx, &engine.RunCancelParams{RunID: id, At: b.now})
		require.NoError(t, err)
	default:
		startRun(t, b, id, "w1", b.now)
		_, err := b.store.RunFinish(b.ctx, &engine.RunFinishParams{RunID: id, Status: st, At: b.now})
		require.NoError(t, err)
	}
	require.Equal(t, st, getRun(t, b, id).Status)
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func testIndexConsistency(t *testing.T, setup setupFunc) {
	b := setup(t)
	r := NewTestRun("hello", "a")
	r.Tags = []string{"t"}
	createRun(t, b, r)
	other := createRun(t, b, NewTestRun("other", "a")) // stays PENDING

	requireOnlyUnder := func(st engine.RunStatus) {
		t.Helper()
		require.Equal(t, st, getRun(t, b, r.ID).Status)
		for _, s := range engine.RunStatuses {
			for _, p := range []engine.RunListParams{
				{Statuses: []engine.RunStatus{s}},
				{Statuses: []engine.RunStatus{s}, Flow: "hello"},
				{Statuses: []engine.RunStatus{s}, Tag: "t"},
			} {
				got, _ := listIDs(t, b, &p)
				if s == st {
					require.Contains(t, got, r.ID, "listed under %s", s)
					require.Len(t, slices.DeleteFunc(got, func(id string) bool { return id == other.ID }), 1)
				} else {
					require.NotContains(t, got, r.ID, "listed under %s while %s", s, st)
				}
			}
		}
		got, _ := listIDs(t, b, &engine.RunListParams{})
		require.ElementsMatch(t, []string{r.ID, other.ID}, got)
		page, err := b.store.RunList(b.ctx, &engine.RunListParams{Flow: "hello"})
		require.NoError(t, err)
		require.Len(t, page.Runs, 1)
		require.Equal(t, st, page.Runs[0].Status, "listed runs carry the current status")
	}

	requireOnlyUnder(engine.RunPending)
	startRun(t, b, r.ID, "w1", b.now)
	requireOnlyUnder(engine.RunRunning)
	startRun(t, b, r.ID, "w2", b.now) // takeover
	requireOnlyUnder(engine.RunRunning)
	_, err := b.store.RunCancel(b.ctx, &engine.RunCancelParams{RunID: r.ID, At: b.now})
	require.NoError(t, err)
	requireOnlyUnder(engine.RunCancelling)
	_, err = b.store.RunFinish(b.ctx, &engine.RunFinishParams{RunID: r.ID, Status: engine.RunCompleted, At: b.now})
	require.NoError(t, err)
	requireOnlyUnder(engine.RunCompleted)
	_, err = b.store.RunFinish(b.ctx, &engine.RunFinishParams{RunID: r.ID, Status: engine.RunFailed, At: b.now})
	require.ErrorIs(t, err, engine.ErrConflict)
	requireOnlyUnder(engine.RunCompleted)
}
