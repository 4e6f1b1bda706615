package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
)

// testConcurrency drives many runs through their lifecycle from many
// goroutines while others page through RunList, then checks that statuses,
// indexes, logs and events agree. Run it with -race.
func testConcurrency(t *testing.T, setup setupFunc) {
	b := setup(t)
	const workers, runsPerWorker, listers = 8, 12, 4

	var (
		mu       sync.Mutex
		errs     []error
		final    = map[string]engine.RunStatus{}
		fail     = func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }
		done     = make(chan struct{})
		wgWork   sync.WaitGroup
		wgListen sync.WaitGroup
	)
	for w := range workers {
		wgWork.Go(func() {
			worker := fmt.Sprintf("w%d", w)
			for i := range runsPerWorker {
				if err := lifecycle(b, worker, i, func(id string, st engine.RunStatus) {
					mu.Lock()
					final[id] = st
					mu.Unlock()
				}); err != nil {
					fail(fmt.Errorf("%s run %d: %w", worker, i, err))
					return
				}
			}
		})
	}
	for l := range listers {
		wgListen.Go(func() {
			filters := []engine.RunListParams{
				{Limit: 7},
				{Statuses: []engine.RunStatus{engine.RunRunning, engine.RunCancelling}, Limit: 3},
				{Flow: "flow-1", Limit: 5},
				{Tag: "even", Statuses: []engine.RunStatus{engine.RunCompleted}, Limit: 4},
			}
			p := filters[l%len(filters)]
			for {
				select {
				case <-done:
					return
				default:
				}
				if err := walkOnce(b, p); err != nil {
					fail(err)
					return
				}
			}
		})
	}
	wgWork.Wait()
	close(done)
	wgListen.Wait()
	require.NoError(t, errors.Join(errs...))

	// Every status index agrees with the runs.
	require.Len(t, final, workers*runsPerWorker)
	want := map[engine.RunStatus][]string{}
	for id, st := range final {
		want[st] = append(want[st], id)
		require.Equal(t, st, getRun(t, b, id).Status)
	}
	for _, st := range engine.RunStatuses {
		got := walk(t, b, engine.RunListParams{Statuses: []engine.RunStatus{st}, Limit: 10}, nil)
		require.ElementsMatch(t, want[st], got, "status %s", st)
	}
	all := walk(t, b, engine.RunListParams{Limit: 500}, nil)
	require.Len(t, all, workers*runsPerWorker)

	// Events: PENDING, RUNNING, [CANCELLING,] terminal per run, in order per run.
	perRun := map[string][]engine.RunStatus{}
	for _, e := range listEvents(t, b) {
		perRun[e.RunID] = append(perRun[e.RunID], e.Status)
	}
	for id, st := range final {
		wantEv := []engine.RunStatus{engine.RunPending, engine.RunRunning}
		if st == engine.RunCancelled {
			wantEv = append(wantEv, engine.RunCancelling)
		}
		wantEv = append(wantEv, st)
		require.Equal(t, wantEv, perRun[id], "events of %s", id)
	}
}

// lifecycle creates run i of worker and takes it to a terminal status, as a
// scheduler would, reporting the final status through done.
func lifecycle(b *testBundle, worker string, i int, done func(string, engine.RunStatus)) error {
	r := NewTestRun(fmt.Sprintf("flow-%d", i%3), "a", "b")
	if i%2 == 0 {
		r.Tags = []string{"even"}
	}
	if err := b.store.RunCreate(b.ctx, r); err != nil {
		return err
	}
	now := time.Now().UTC()
	if _, err := b.store.RunStart(b.ctx, &engine.RunStartParams{RunID: r.ID, WorkerID: worker, At: now}); err != nil {
		return err
	}
	for _, task := range []string{"a", "b"} {
		if err := b.store.TaskUpdate(b.ctx, &engine.TaskUpdateParams{
			RunID: r.ID, Task: task, Status: engine.TaskSucceeded, StartedAt: now, EndedAt: now,
			Attempt: &engine.Attempt{Number: 1, Status: engine.TaskSucceeded, StartedAt: now, EndedAt: now, WorkerID: worker},
		}); err != nil {
			return err
		}
		if err := b.store.LogAppend(b.ctx, r.ID, newLogEntries(b, task, 2)); err != nil {
			return err
		}
	}
	status := []engine.RunStatus{engine.RunCompleted, engine.RunFailed, engine.RunCancelled}[i%3]
	if status == engine.RunCancelled {
		st, err := b.store.RunCancel(b.ctx, &engine.RunCancelParams{RunID: r.ID, At: now})
		if err != nil {
			return err
		}
		if st != engine.RunCancelling {
			return fmt.Errorf("cancel: status %s, want CANCELLING", st)
		}
	}
	if _, err := b.store.RunFinish(b.ctx, &engine.RunFinishParams{RunID: r.ID, Status: status, At: now}); err != nil {
		return err
	}
	logs, err := b.store.LogList(b.ctx, &engine.LogListParams{RunID: r.ID})
	if err != nil {
		return err
	}
	if len(logs) != 4 || logs[3].Seq != 4 {
		return fmt.Errorf("logs: got %d entries, want seqs 1…4", len(logs))
	}
	done(r.ID, status)
	return nil
}

// walkOnce pages through RunList with p and reports a duplicate run, a page
// over the limit, or a listed run that does not match the filter.
func walkOnce(b *testBundle, p engine.RunListParams) error {
	seen := map[string]bool{}
	for {
		page, err := b.store.RunList(b.ctx, &p)
		if err != nil {
			return err
		}
		if len(page.Runs) > p.Limit {
			return fmt.Errorf("page of %d runs over limit %d", len(page.Runs), p.Limit)
		}
		for _, r := range page.Runs {
			if seen[r.ID] {
				return fmt.Errorf("run %s listed twice in one walk", r.ID)
			}
			seen[r.ID] = true
			if r.Tasks != nil {
				return fmt.Errorf("run %s listed with tasks", r.ID)
			}
			if p.Flow != "" && r.FlowName != p.Flow {
				return fmt.Errorf("run %s of flow %s listed under flow %s", r.ID, r.FlowName, p.Flow)
			}
			if len(p.Statuses) > 0 && !containsStatus(p.Statuses, r.Status) {
				return fmt.Errorf("run %s %s listed under %v", r.ID, r.Status, p.Statuses)
			}
		}
		if page.NextCursor == "" {
			return nil
		}
		p.Cursor = page.NextCursor
	}
}

func containsStatus(ss []engine.RunStatus, s engine.RunStatus) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
