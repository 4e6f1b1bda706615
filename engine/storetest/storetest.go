package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
)

// Run runs the conformance suite against the stores that newStore returns.
// newStore is called once per subtest and must return a fresh, empty store
// that no other test uses (subtests run in parallel); it should register any
// cleanup with t.Cleanup.
func Run(t *testing.T, newStore func(t *testing.T) engine.Store) {
	t.Helper()
	setup := func(t *testing.T) *testBundle {
		t.Helper()
		return &testBundle{
			store: newStore(t),
			ctx:   t.Context(),
			now:   time.Now().UTC().Truncate(time.Millisecond),
		}
	}
	t.Run("RunCreate", func(t *testing.T) { t.Parallel(); testRunCreate(t, setup) })
	t.Run("RunGet", func(t *testing.T) { t.Parallel(); testRunGet(t, setup) })
	t.Run("RunStart", func(t *testing.T) { t.Parallel(); testRunStart(t, setup) })
	t.Run("RunFinish", func(t *testing.T) { t.Parallel(); testRunFinish(t, setup) })
	t.Run("RunCancel", func(t *testing.T) { t.Parallel(); testRunCancel(t, setup) })
	t.Run("TaskUpdate", func(t *testing.T) { t.Parallel(); testTaskUpdate(t, setup) })
	t.Run("RunList", func(t *testing.T) { t.Parallel(); testRunList(t, setup) })
	t.Run("IndexConsistency", func(t *testing.T) { t.Parallel(); testIndexConsistency(t, setup) })
	t.Run("Log", func(t *testing.T) { t.Parallel(); testLog(t, setup) })
	t.Run("EventList", func(t *testing.T) { t.Parallel(); testEventList(t, setup) })
	t.Run("CancelNotifier", func(t *testing.T) { t.Parallel(); testCancelNotifier(t, setup) })
	t.Run("Concurrency", func(t *testing.T) { t.Parallel(); testConcurrency(t, setup) })
}

// testBundle is what every subtest starts from.
type testBundle struct {
	store engine.Store
	ctx   context.Context
	now   time.Time // truncated to the millisecond
}

type setupFunc func(t *testing.T) *testBundle

// NewTestRun returns a PENDING run of flow with a fresh ID and trace ID,
// CreatedAt now (UTC, truncated to the millisecond), string Params, no tags,
// and one PENDING task per name in tasks (Use "echo"). The caller may change
// any field before passing it to [engine.RunStore.RunCreate].
func NewTestRun(flow string, tasks ...string) *engine.Run {
	r := &engine.Run{
		ID:         engine.NewRunID(),
		FlowName:   flow,
		FlowSource: "version: 1\nname: " + flow + "\n",
		FlowFile:   flow + ".yaml",
		Status:     engine.RunPending,
		Params:     map[string]any{"who": "world"},
		CreatedAt:  time.Now().UTC().Truncate(time.Millisecond),
		TraceID:    engine.NewTraceID().String(),
		SpanID:     engine.NewSpanID().String(),
		Tasks:      make(map[string]*engine.TaskState, len(tasks)),
	}
	for _, name := range tasks {
		r.Tasks[name] = &engine.TaskState{Name: name, Use: "echo", Status: engine.TaskPending}
	}
	return r
}

// RequireRunEqual fails t unless want and got describe the same run: times
// are compared as instants (location and monotonic reading ignored) and
// empty slices and maps equal nil ones. Use it instead of require.Equal on
// runs read back from a store.
func RequireRunEqual(t testing.TB, want, got *engine.Run) {
	t.Helper()
	require.Equal(t, normalizeRun(want), normalizeRun(got))
}

// normalizeRun returns a copy of r in a canonical form for comparison.
func normalizeRun(r *engine.Run) *engine.Run {
	if r == nil {
		return nil
	}
	c := r.Clone()
	c.CreatedAt, c.StartedAt, c.EndedAt = utc(c.CreatedAt), utc(c.StartedAt), utc(c.EndedAt)
	if len(c.Tags) == 0 {
		c.Tags = nil
	}
	if len(c.FlowIncludes) == 0 {
		c.FlowIncludes = nil
	}
	if len(c.Params) == 0 {
		c.Params = nil
	}
	if len(c.Tasks) == 0 {
		c.Tasks = nil
	}
	for _, ts := range c.Tasks {
		ts.StartedAt, ts.EndedAt = utc(ts.StartedAt), utc(ts.EndedAt)
		if len(ts.Attempts) == 0 {
			ts.Attempts = nil
		}
		for i := range ts.Attempts {
			ts.Attempts[i].StartedAt = utc(ts.Attempts[i].StartedAt)
			ts.Attempts[i].EndedAt = utc(ts.Attempts[i].EndedAt)
		}
		if len(ts.Output) == 0 {
			ts.Output = nil
		}
	}
	return c
}

// utc returns t in UTC without a monotonic reading; the zero time stays zero.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

// requireTimeEqual fails t unless want and got are the same instant.
func requireTimeEqual(t testing.TB, want, got time.Time, msgAndArgs ...any) {
	t.Helper()
	require.Equal(t, utc(want), utc(got), msgAndArgs...)
}

// createRun stores r and returns it.
func createRun(t testing.TB, b *testBundle, r *engine.Run) *engine.Run {
	t.Helper()
	require.NoError(t, b.store.RunCreate(b.ctx, r))
	return r
}

// startRun starts run id as worker w at at.
func startRun(t testing.TB, b *testBundle, id, w string, at time.Time) *engine.Run {
	t.Helper()
	r, err := b.store.RunStart(b.ctx, &engine.RunStartParams{RunID: id, WorkerID: w, At: at})
	require.NoError(t, err)
	return r
}

// getRun reads run id.
func getRun(t testing.TB, b *testBundle, id string) *engine.Run {
	t.Helper()
	r, err := b.store.RunGet(b.ctx, id)
	require.NoError(t, err)
	return r
}

// runIDs returns the IDs of runs, in order.
func runIDs(runs []*engine.Run) []string {
	ids := make([]string, len(runs))
	for i, r := range runs {
		ids[i] = r.ID
	}
	return ids
}

// partitioned reports whether store spreads runs over several partitions
// (it has a Partitions method returning more than 1, as redisstore.Store
// does): each partition keeps its own order, so the suite pins the order
// of queue deliveries and of events across runs only for a store with one.
func partitioned(store engine.Store) bool {
	p, ok := store.(interface{ Partitions() int })
	return ok && p.Partitions() > 1
}

// unknownID is a run ID that no test creates.
const unknownID = "00000000-0000-7000-8000-000000000000"
