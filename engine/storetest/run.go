package storetest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
)

func testRunCreate(t *testing.T, setup setupFunc) {
	t.Run("StoresRunWithTasks", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := NewTestRun("hello", "a", "b")
		r.Tags = []string{"nightly", "team-x"}
		r.ParentSpanID = "00f067aa0ba902b7"
		want := r.Clone()
		createRun(t, b, r)
		RequireRunEqual(t, want, getRun(t, b, r.ID))
	})

	t.Run("ParentUnsampledRoundTrip", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		for _, unsampled := range []bool{true, false} {
			r := NewTestRun("hello", "a")
			r.TraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
			r.ParentSpanID = "00f067aa0ba902b7"
			r.ParentUnsampled = unsampled
			want := r.Clone()
			createRun(t, b, r)
			got := getRun(t, b, r.ID)
			require.Equal(t, unsampled, got.ParentUnsampled)
			RequireRunEqual(t, want, got)
			page, err := b.store.RunList(b.ctx, &engine.RunListParams{Limit: 100})
			require.NoError(t, err)
			for _, lr := range page.Runs {
				if lr.ID == r.ID {
					require.Equal(t, unsampled, lr.ParentUnsampled, "RunList")
				}
			}
		}
	})

	t.Run("ZeroCreatedAtSetByStore", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := NewTestRun("hello", "a")
		r.CreatedAt = time.Time{}
		before := time.Now().Add(-time.Second)
		createRun(t, b, r)
		got := getRun(t, b, r.ID)
		require.False(t, got.CreatedAt.IsZero())
		require.True(t, got.CreatedAt.After(before), "CreatedAt %v", got.CreatedAt)
		require.True(t, got.CreatedAt.Before(time.Now().Add(time.Second)), "CreatedAt %v", got.CreatedAt)
	})

	t.Run("StatusMustBePending", func(t *testing.T) {
		t.Parallel()
		for _, st := range engine.RunStatuses[1:] {
			t.Run(string(st), func(t *testing.T) {
				t.Parallel()
				b := setup(t)
				r := NewTestRun("hello", "a")
				r.Status = st
				err := b.store.RunCreate(b.ctx, r)
				require.Error(t, err)
				require.NotErrorIs(t, err, engine.ErrConflict)
				_, err = b.store.RunGet(b.ctx, r.ID)
				require.ErrorIs(t, err, engine.ErrNotFound)
			})
		}
	})

	t.Run("TasksMustBePending", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := NewTestRun("hello", "a", "b")
		r.Tasks["b"].Status = engine.TaskSucceeded
		require.Error(t, b.store.RunCreate(b.ctx, r))
		_, err := b.store.RunGet(b.ctx, r.ID)
		require.ErrorIs(t, err, engine.ErrNotFound)
	})

	t.Run("DuplicateIDConflicts", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := createRun(t, b, NewTestRun("hello", "a"))
		dup := NewTestRun("other", "x")
		dup.ID = r.ID
		require.ErrorIs(t, b.store.RunCreate(b.ctx, dup), engine.ErrConflict)
		RequireRunEqual(t, r, getRun(t, b, r.ID))
		events, err := b.store.EventList(b.ctx, &engine.EventListParams{})
		require.NoError(t, err)
		require.Len(t, events, 1)
	})

	t.Run("StoresACopy", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := NewTestRun("hello", "a")
		r.Tags = []string{"t1"}
		want := r.Clone()
		createRun(t, b, r)

		r.Status = engine.RunRunning
		r.FlowName = "mutated"
		r.Tags[0] = "mutated"
		r.Tasks["a"].Status = engine.TaskFailed
		r.Tasks["a"].Attempts = append(r.Tasks["a"].Attempts, engine.Attempt{Number: 1})
		r.Tasks["new"] = &engine.TaskState{Name: "new"}
		RequireRunEqual(t, want, getRun(t, b, r.ID))
	})

	t.Run("ReturnsCopies", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := NewTestRun("hello", "a")
		r.Tags = []string{"t1"}
		createRun(t, b, r)
		require.NoError(t, b.store.TaskUpdate(b.ctx, &engine.TaskUpdateParams{
			RunID: r.ID, Task: "a", Status: engine.TaskPending,
			Attempt: &engine.Attempt{Number: 1, Status: engine.TaskFailed, StartedAt: b.now},
			Output:  json.RawMessage(`{"x":1}`),
		}))
		want := getRun(t, b, r.ID)

		mutate := func(got *engine.Run) {
			got.Status = engine.RunFailed
			got.Tags[0] = "mutated"
			if got.Tasks != nil {
				got.Tasks["a"].Status = engine.TaskFailed
				got.Tasks["a"].Attempts[0].Error = "mutated"
				got.Tasks["a"].Output[0] = '['
				got.Tasks["new"] = &engine.TaskState{Name: "new"}
			}
		}
		mutate(getRun(t, b, r.ID))
		RequireRunEqual(t, want, getRun(t, b, r.ID))

		page, err := b.store.RunList(b.ctx, &engine.RunListParams{})
		require.NoError(t, err)
		require.Len(t, page.Runs, 1)
		mutate(page.Runs[0])
		RequireRunEqual(t, want, getRun(t, b, r.ID))

		started := startRun(t, b, r.ID, "w1", b.now)
		want = getRun(t, b, r.ID)
		mutate(started)
		RequireRunEqual(t, want, getRun(t, b, r.ID))

		finished, err := b.store.RunFinish(b.ctx, &engine.RunFinishParams{RunID: r.ID, Status: engine.RunCompleted, At: b.now})
		require.NoError(t, err)
		want = getRun(t, b, r.ID)
		mutate(finished)
		RequireRunEqual(t, want, getRun(t, b, r.ID))
	})
}

func testRunGet(t *testing.T, setup setupFunc) {
	t.Run("UnknownNotFound", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		got, err := b.store.RunGet(b.ctx, unknownID)
		require.ErrorIs(t, err, engine.ErrNotFound)
		require.Nil(t, got)
	})
}

func testRunStart(t *testing.T, setup setupFunc) {
	t.Run("PendingToRunning", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := createRun(t, b, NewTestRun("hello", "a", "b"))
		at := b.now.Add(time.Second)
		got := startRun(t, b, r.ID, "w1", at)

		want := r.Clone()
		want.Status = engine.RunRunning
		want.StartedAt = at
		want.WorkerID = "w1"
		want.Attempt = 1
		RequireRunEqual(t, want, got)
		RequireRunEqual(t, want, getRun(t, b, r.ID))
	})

	t.Run("TakeoverIncrementsAttempt", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := createRun(t, b, NewTestRun("hello", "a"))
		startRun(t, b, r.ID, "w1", b.now.Add(time.Second))
		got := startRun(t, b, r.ID, "w2", b.now.Add(time.Minute))
		require.Equal(t, engine.RunRunning, got.Status)
		require.Equal(t, 2, got.Attempt)
		require.Equal(t, "w2", got.WorkerID)
		requireTimeEqual(t, b.now.Add(time.Second), got.StartedAt, "takeover keeps StartedAt")
		require.Len(t, got.Tasks, 1)
		RequireRunEqual(t, got, getRun(t, b, r.ID))

		got = startRun(t, b, r.ID, "w3", b.now.Add(2*time.Minute))
		require.Equal(t, 3, got.Attempt)
		require.Equal(t, "w3", got.WorkerID)
	})

	t.Run("TakeoverKeepsCancelling", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := createRun(t, b, NewTestRun("hello", "a"))
		startRun(t, b, r.ID, "w1", b.now)
		_, err := b.store.RunCancel(b.ctx, &engine.RunCancelParams{RunID: r.ID, At: b.now})
		require.NoError(t, err)
		got := startRun(t, b, r.ID, "w2", b.now.Add(time.Minute))
		require.Equal(t, engine.RunCancelling, got.Status)
		require.Equal(t, 2, got.Attempt)
		require.Equal(t, "w2", got.WorkerID)
		requireTimeEqual(t, b.now, got.StartedAt)
		require.Equal(t, engine.RunCancelling, getRun(t, b, r.ID).Status)
	})

	t.Run("TerminalConflicts", func(t *testing.T) {
		t.Parallel()
		for _, st := range []engine.RunStatus{engine.RunCompleted, engine.RunFailed, engine.RunCancelled} {
			t.Run(string(st), func(t *testing.T) {
				t.Parallel()
				b := setup(t)
				r := createRun(t, b, NewTestRun("hello", "a"))
				startRun(t, b, r.ID, "w1", b.now)
				_, err := b.store.RunFinish(b.ctx, &engine.RunFinishParams{RunID: r.ID, Status: st, At: b.now})
				require.NoError(t, err)
				want := getRun(t, b, r.ID)

				got, err := b.store.RunStart(b.ctx, &engine.RunStartParams{RunID: r.ID, WorkerID: "w2", At: b.now})
				require.ErrorIs(t, err, engine.ErrConflict)
				require.Nil(t, got)
				RequireRunEqual(t, want, getRun(t, b, r.ID))
			})
		}
	})

	t.Run("UnknownNotFound", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		_, err := b.store.RunStart(b.ctx, &engine.RunStartParams{RunID: unknownID, WorkerID: "w1", At: b.now})
		require.ErrorIs(t, err, engine.ErrNotFound)
	})
}

func testRunFinish(t *testing.T, setup setupFunc) {
	t.Run("SetsStatusEndedAtError", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			status engine.RunStatus
			errMsg string
		}{
			{engine.RunCompleted, ""},
			{engine.RunFailed, "task a failed"},
			{engine.RunCancelled, "cancelled by user"},
		}
		for _, tt := range tests {
			t.Run(string(tt.status), func(t *testing.T) {
				t.Parallel()
				b := setup(t)
				r := createRun(t, b, NewTestRun("hello", "a"))
				startRun(t, b, r.ID, "w1", b.now)
				at := b.now.Add(time.Minute)
				got, err := b.store.RunFinish(b.ctx, &engine.RunFinishParams{RunID: r.ID, Status: tt.status, At: at, Error: tt.errMsg})
				require.NoError(t, err)

				want := r.Clone()
				want.Status = tt.status
				want.StartedAt = b.now
				want.EndedAt = at
				want.Error = tt.errMsg
				want.WorkerID = "w1"
				want.Attempt = 1
				RequireRunEqual(t, want, got)
				RequireRunEqual(t, want, getRun(t, b, r.ID))
			})
		}
	})

	t.Run("Brief", func(t *testing.T) {
		// A brief finish stores the same run; what it returns holds at
		// least the fields the finish set, and the attempt.
		t.Parallel()
		b := setup(t)
		r := createRun(t, b, NewTestRun("hello", "a", "b"))
		startRun(t, b, r.ID, "w1", b.now)
		at := b.now.Add(time.Minute)
		got, err := b.store.RunFinish(b.ctx, &engine.RunFinishParams{RunID: r.ID, Status: engine.RunFailed, At: at, Error: "a failed", Brief: true,
			Tasks: []*engine.TaskUpdateParams{{Task: "a", Status: engine.TaskFailed, EndedAt: at, Error: "boom"}}})
		require.NoError(t, err)
		require.Equal(t, r.ID, got.ID)
		require.Equal(t, engine.RunFailed, got.Status)
		require.Equal(t, "a failed", got.Error)
		require.Equal(t, 1, got.Attempt)
		requireTimeEqual(t, at, got.EndedAt)

		stored := getRun(t, b, r.ID)
		require.Equal(t, engine.RunFailed, stored.Status)
		require.Equal(t, "w1", stored.WorkerID)
		requireTimeEqual(t, at, stored.EndedAt)
		require.Equal(t, engine.TaskFailed, stored.Tasks["a"].Status)
		require.Equal(t, "boom", stored.Tasks["a"].Error)
		require.Equal(t, engine.TaskPending, stored.Tasks["b"].Status)

		_, err = b.store.RunFinish(b.ctx, &engine.RunFinishParams{RunID: r.ID, Status: engine.RunCompleted, At: at, Brief: true})
		require.ErrorIs(t, err, engine.ErrConflict)
	})

	t.Run("FromPendingAndCancelling", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		pending := createRun(t, b, NewTestRun("hello", "a"))
		got, err := b.store.RunFinish(b.ctx, &engine.RunFinishParams{RunID: pending.ID, Status: engine.RunFailed, At: b.now, Error: "bad flow"})
		require.NoError(t, err)
		require.Equal(t, engine.RunFailed, got.Status)
		require.True(t, got.StartedAt.IsZero())

		cancelling := createRun(t, b, NewTestRun("hello", "a"))
		startRun(t, b, cancelling.ID, "w1", b.now)
		_, err = b.store.RunCancel(b.ctx, &engine.RunCancelParams{RunID: cancelling.ID, At: b.now})
		require.NoError(t, err)
		got, err = b.store.RunFinish(b.ctx, &engine.RunFinishParams{RunID: cancelling.ID, Status: engine.RunCancelled, At: b.now.Add(time.Second)})
		require.NoError(t, err)
		require.Equal(t, engine.RunCancelled, got.Status)
		requireTimeEqual(t, b.now.Add(time.Second), got.EndedAt)
	})

	t.Run("SecondFinishConflicts", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := createRun(t, b, NewTestRun("hello", "a"))
		startRun(t, b, r.ID, "w1", b.now)
		_, err := b.store.RunFinish(b.ctx, &engine.RunFinishParams{RunID: r.ID, Status: engine.RunCompleted, At: b.now})
		require.NoError(t, err)
		want := getRun(t, b, r.ID)

		got, err := b.store.RunFinish(b.ctx, &engine.RunFinishParams{RunID: r.ID, Status: engine.RunFailed, At: b.now.Add(time.Hour), Error: "late"})
		require.ErrorIs(t, err, engine.ErrConflict)
		require.Nil(t, got)
		RequireRunEqual(t, want, getRun(t, b, r.ID))
	})

	t.Run("NonTerminalStatusRejected", func(t *testing.T) {
		t.Parallel()
		for _, st := range []engine.RunStatus{engine.RunPending, engine.RunRunning, engine.RunCancelling, "", "DONE"} {
			t.Run(string(st), func(t *testing.T) {
				t.Parallel()
				b := setup(t)
				r := createRun(t, b, NewTestRun("hello", "a"))
				startRun(t, b, r.ID, "w1", b.now)
				want := getRun(t, b, r.ID)
				_, err := b.store.RunFinish(b.ctx, &engine.RunFinishParams{RunID: r.ID, Status: st, At: b.now})
				require.Error(t, err)
				require.NotErrorIs(t, err, engine.ErrNotFound)
				require.NotErrorIs(t, err, engine.ErrConflict)
				RequireRunEqual(t, want, getRun(t, b, r.ID))
			})
		}
	})

	t.Run("UnknownNotFound", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		_, err := b.store.RunFinish(b.ctx, &engine.RunFinishParams{RunID: unknownID, Status: engine.RunCompleted, At: b.now})
		require.ErrorIs(t, err, engine.ErrNotFound)
	})
}

func testRunCancel(t *testing.T, setup setupFunc) {
	t.Run("PendingCancelledAtOnce", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := createRun(t, b, NewTestRun("hello", "a", "b", "c"))
		at := b.now.Add(time.Second)
		st, err := b.store.RunCancel(b.ctx, &engine.RunCancelParams{RunID: r.ID, At: at})
		require.NoError(t, err)
		require.Equal(t, engine.RunCancelled, st)
		got := getRun(t, b, r.ID)
		require.Equal(t, engine.RunCancelled, got.Status)
		requireTimeEqual(t, at, got.EndedAt)
		require.True(t, got.StartedAt.IsZero())
		require.NotEmpty(t, got.Tasks)
		for name, ts := range got.Tasks {
			require.Equal(t, engine.TaskCancelled, ts.Status, "task %s", name)
			require.Equal(t, engine.CancelledBeforeStartMsg, ts.Error, "task %s", name)
			requireTimeEqual(t, at, ts.EndedAt)
			require.True(t, ts.StartedAt.IsZero(), "task %s", name)
		}
	})

	t.Run("RunningToCancelling", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := createRun(t, b, NewTestRun("hello", "a"))
		startRun(t, b, r.ID, "w1", b.now)
		st, err := b.store.RunCancel(b.ctx, &engine.RunCancelParams{RunID: r.ID, At: b.now.Add(time.Second)})
		require.NoError(t, err)
		require.Equal(t, engine.RunCancelling, st)
		got := getRun(t, b, r.ID)
		require.Equal(t, engine.RunCancelling, got.Status)
		require.True(t, got.EndedAt.IsZero())
	})

	t.Run("CancellingIdempotent", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := createRun(t, b, NewTestRun("hello", "a"))
		startRun(t, b, r.ID, "w1", b.now)
		for range 3 {
			st, err := b.store.RunCancel(b.ctx, &engine.RunCancelParams{RunID: r.ID, At: b.now})
			require.NoError(t, err)
			require.Equal(t, engine.RunCancelling, st)
		}
		require.Equal(t, engine.RunCancelling, getRun(t, b, r.ID).Status)
	})

	t.Run("TerminalConflictsWithStatus", func(t *testing.T) {
		t.Parallel()
		for _, st := range []engine.RunStatus{engine.RunCompleted, engine.RunFailed, engine.RunCancelled} {
			t.Run(string(st), func(t *testing.T) {
				t.Parallel()
				b := setup(t)
				r := createRun(t, b, NewTestRun("hello", "a"))
				startRun(t, b, r.ID, "w1", b.now)
				_, err := b.store.RunFinish(b.ctx, &engine.RunFinishParams{RunID: r.ID, Status: st, At: b.now})
				require.NoError(t, err)
				want := getRun(t, b, r.ID)

				got, err := b.store.RunCancel(b.ctx, &engine.RunCancelParams{RunID: r.ID, At: b.now.Add(time.Second)})
				require.ErrorIs(t, err, engine.ErrConflict)
				require.Equal(t, st, got, "the run's status comes with ErrConflict")
				RequireRunEqual(t, want, getRun(t, b, r.ID))
			})
		}
	})

	t.Run("UnknownNotFound", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		_, err := b.store.RunCancel(b.ctx, &engine.RunCancelParams{RunID: unknownID, At: b.now})
		require.ErrorIs(t, err, engine.ErrNotFound)
	})
}

func testTaskUpdate(t *testing.T, setup setupFunc) {
	// started returns a RUNNING run with tasks a and b.
	started := func(t *testing.T, b *testBundle) *engine.Run {
		t.Helper()
		r := createRun(t, b, NewTestRun("hello", "a", "b"))
		startRun(t, b, r.ID, "w1", b.now)
		return r
	}
	update := func(t *testing.T, b *testBundle, p *engine.TaskUpdateParams) *engine.TaskState {
		t.Helper()
		require.NoError(t, b.store.TaskUpdate(b.ctx, p))
		return getRun(t, b, p.RunID).Tasks[p.Task]
	}

	t.Run("StatusAndErrorAlwaysSet", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := started(t, b)
		got := update(t, b, &engine.TaskUpdateParams{RunID: r.ID, Task: "a", Status: engine.TaskFailed, Error: "boom"})
		require.Equal(t, engine.TaskFailed, got.Status)
		require.Equal(t, "boom", got.Error)

		got = update(t, b, &engine.TaskUpdateParams{RunID: r.ID, Task: "a", Status: engine.TaskRunning})
		require.Equal(t, engine.TaskRunning, got.Status)
		require.Empty(t, got.Error, "an empty Error clears it")
	})

	t.Run("OptionalFieldsOnlyWhenNonZero", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := started(t, b)
		start, end := b.now.Add(time.Second), b.now.Add(2*time.Second)
		got := update(t, b, &engine.TaskUpdateParams{
			RunID: r.ID, Task: "a", Status: engine.TaskSucceeded,
			StartedAt: start, EndedAt: end,
			Output: json.RawMessage(`{"n":1}`), OutputTruncated: true,
		})
		requireTimeEqual(t, start, got.StartedAt)
		requireTimeEqual(t, end, got.EndedAt)
		require.JSONEq(t, `{"n":1}`, string(got.Output))
		require.True(t, got.OutputTruncated)

		// Zero values leave them alone; OutputTruncated goes with Output only.
		got = update(t, b, &engine.TaskUpdateParams{RunID: r.ID, Task: "a", Status: engine.TaskSucceeded, OutputTruncated: false})
		requireTimeEqual(t, start, got.StartedAt)
		requireTimeEqual(t, end, got.EndedAt)
		require.JSONEq(t, `{"n":1}`, string(got.Output))
		require.True(t, got.OutputTruncated)

		got = update(t, b, &engine.TaskUpdateParams{RunID: r.ID, Task: "a", Status: engine.TaskSucceeded, Output: json.RawMessage(`[2]`)})
		require.JSONEq(t, `[2]`, string(got.Output))
		require.False(t, got.OutputTruncated)

		other := getRun(t, b, r.ID).Tasks["b"]
		require.Equal(t, engine.TaskPending, other.Status, "other tasks are untouched")
		require.True(t, other.StartedAt.IsZero())
		require.Empty(t, other.Output)
	})

	t.Run("AttemptsUpsertByNumber", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := started(t, b)
		a1 := engine.Attempt{Number: 1, Status: engine.TaskRunning, StartedAt: b.now, WorkerID: "w1", SpanID: "00f067aa0ba902b7"}
		a2 := engine.Attempt{Number: 2, Status: engine.TaskRunning, StartedAt: b.now.Add(time.Second), WorkerID: "w2"}
		update(t, b, &engine.TaskUpdateParams{RunID: r.ID, Task: "a", Status: engine.TaskRunning, Attempt: &a2})
		got := update(t, b, &engine.TaskUpdateParams{RunID: r.ID, Task: "a", Status: engine.TaskRunning, Attempt: &a1})
		requireAttempts(t, []engine.Attempt{a1, a2}, got.Attempts)

		a1.Status, a1.EndedAt, a1.Error = engine.TaskFailed, b.now.Add(time.Second), "boom"
		got = update(t, b, &engine.TaskUpdateParams{RunID: r.ID, Task: "a", Status: engine.TaskRunning, Attempt: &a1})
		requireAttempts(t, []engine.Attempt{a1, a2}, got.Attempts)

		got = update(t, b, &engine.TaskUpdateParams{RunID: r.ID, Task: "a", Status: engine.TaskRunning})
		requireAttempts(t, []engine.Attempt{a1, a2}, got.Attempts)
	})

	t.Run("ResetEnd", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := started(t, b)
		update(t, b, &engine.TaskUpdateParams{RunID: r.ID, Task: "a", Status: engine.TaskFailed, StartedAt: b.now, EndedAt: b.now.Add(time.Second)})
		got := update(t, b, &engine.TaskUpdateParams{RunID: r.ID, Task: "a", Status: engine.TaskRunning, ResetEnd: true})
		require.True(t, got.EndedAt.IsZero())
		requireTimeEqual(t, b.now, got.StartedAt)
	})

	t.Run("AllowedWhileCancelling", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := started(t, b)
		_, err := b.store.RunCancel(b.ctx, &engine.RunCancelParams{RunID: r.ID, At: b.now})
		require.NoError(t, err)
		got := update(t, b, &engine.TaskUpdateParams{RunID: r.ID, Task: "a", Status: engine.TaskCancelled, Error: "cancelled"})
		require.Equal(t, engine.TaskCancelled, got.Status)
	})

	t.Run("UnknownRunOrTaskNotFound", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := started(t, b)
		err := b.store.TaskUpdate(b.ctx, &engine.TaskUpdateParams{RunID: unknownID, Task: "a", Status: engine.TaskRunning})
		require.ErrorIs(t, err, engine.ErrNotFound)
		err = b.store.TaskUpdate(b.ctx, &engine.TaskUpdateParams{RunID: r.ID, Task: "nope", Status: engine.TaskRunning})
		require.ErrorIs(t, err, engine.ErrNotFound)
		require.NotContains(t, getRun(t, b, r.ID).Tasks, "nope")
	})

	t.Run("IterationRowsCreated", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := started(t, b)
		att := engine.Attempt{Number: 1, Status: engine.TaskRunning, StartedAt: b.now, WorkerID: "w1"}
		// The first write of "a[1]" creates it, with its Use; "nope[0]" has
		// no task "nope" and stays unknown.
		require.NoError(t, b.store.TaskUpdate(b.ctx, &engine.TaskUpdateParams{RunID: r.ID, Task: "a[1]", Use: "noop", Status: engine.TaskRunning, StartedAt: b.now, Attempt: &att}))
		err := b.store.TaskUpdate(b.ctx, &engine.TaskUpdateParams{RunID: r.ID, Task: "nope[0]", Use: "noop", Status: engine.TaskRunning})
		require.ErrorIs(t, err, engine.ErrNotFound)
		err = b.store.TaskUpdate(b.ctx, &engine.TaskUpdateParams{RunID: r.ID, Task: "a[x]", Use: "noop", Status: engine.TaskRunning})
		require.ErrorIs(t, err, engine.ErrNotFound, "not an iteration name")
		att2 := att
		att2.Status, att2.EndedAt = engine.TaskSucceeded, b.now
		require.NoError(t, b.store.TaskUpdateMany(b.ctx, &engine.TaskUpdateManyParams{RunID: r.ID, Tasks: []*engine.TaskUpdateParams{
			{Task: "a[1]", Use: "noop", Status: engine.TaskSucceeded, EndedAt: b.now, Output: json.RawMessage(`{"i":1}`), Attempt: &att2},
			{Task: "a[0]", Use: "noop", Status: engine.TaskRunning, StartedAt: b.now},
		}}))
		got := getRun(t, b, r.ID)
		require.NotContains(t, got.Tasks, "nope[0]")
		require.NotContains(t, got.Tasks, "a[x]")
		it := got.Tasks["a[1]"]
		require.NotNil(t, it)
		require.Equal(t, "a[1]", it.Name)
		require.Equal(t, "noop", it.Use)
		require.Equal(t, engine.TaskSucceeded, it.Status)
		require.JSONEq(t, `{"i":1}`, string(it.Output))
		requireAttempts(t, []engine.Attempt{att2}, it.Attempts)
		require.Equal(t, engine.TaskRunning, got.Tasks["a[0]"].Status)
		require.Equal(t, engine.TaskPending, got.Tasks["a"].Status, "the task's own row is not changed")

		// The finish may carry iterations too, new ones included.
		_, err = b.store.RunFinish(b.ctx, &engine.RunFinishParams{RunID: r.ID, Status: engine.RunCompleted, At: b.now, Tasks: []*engine.TaskUpdateParams{
			{Task: "a[0]", Use: "noop", Status: engine.TaskSucceeded, EndedAt: b.now},
			{Task: "a[2]", Use: "noop", Status: engine.TaskCancelled, EndedAt: b.now, Error: "cancelled"},
		}})
		require.NoError(t, err)
		got = getRun(t, b, r.ID)
		require.Equal(t, engine.TaskSucceeded, got.Tasks["a[0]"].Status)
		require.Equal(t, engine.TaskCancelled, got.Tasks["a[2]"].Status)
	})

	t.Run("TerminalRunConflicts", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := started(t, b)
		_, err := b.store.RunFinish(b.ctx, &engine.RunFinishParams{RunID: r.ID, Status: engine.RunCompleted, At: b.now})
		require.NoError(t, err)
		err = b.store.TaskUpdate(b.ctx, &engine.TaskUpdateParams{RunID: r.ID, Task: "a", Status: engine.TaskRunning})
		require.ErrorIs(t, err, engine.ErrConflict)
		require.Equal(t, engine.TaskPending, getRun(t, b, r.ID).Tasks["a"].Status)
	})
}

// requireAttempts compares attempts with times as instants.
func requireAttempts(t testing.TB, want, got []engine.Attempt) {
	t.Helper()
	norm := func(as []engine.Attempt) []engine.Attempt {
		out := make([]engine.Attempt, len(as))
		for i, a := range as {
			a.StartedAt, a.EndedAt = utc(a.StartedAt), utc(a.EndedAt)
			out[i] = a
		}
		return out
	}
	require.Equal(t, norm(want), norm(got))
}
