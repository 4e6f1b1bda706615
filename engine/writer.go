package engine

import (
	"context"
	"errors"
	"sync"
	"time"
)

// taskEndDelay bounds how long a task change that need not be stored
// before anything else happens (a task's end, a skip, a reset) waits in the
// execution's writer for the next write it can ride with: the next task's
// start, or the run's finish. The engine issues that write within
// microseconds when one follows, so nearly every end shares its round trip
// (a single-task run costs one finish script that writes its task's end
// with the status change); a worker that dies loses an end only within
// this delay plus one round trip, and the takeover runs that task again in
// a new attempt, exactly as if the worker had died just before the write.
const taskEndDelay = time.Millisecond

// writer is one execution's only way to the store for task changes and
// the finish (River's BatchCompleter is the model): it owns their batching
// and, through [execution.persist], the single retry and outage policy.
//
//   - A task's start (RUNNING, with its attempt record) is written before
//     [writer.start] returns, so a task's side effects never precede the
//     record of its attempt, together with every change held before it, in
//     one [RunStore.TaskUpdateMany]: no task starts before its upstream
//     tasks' ends are stored. Starts that arrive while a write is in
//     flight (a fan-out's tasks, admitted together) wait for it and then
//     go together in the next write: n tasks that start at once cost two
//     writes, not n.
//   - Every other change is held ([writer.later]) and written with the
//     next start, with the finish (in [RunFinishParams.Tasks]), or on its
//     own after taskEndDelay, whichever comes first.
//   - [writer.close] writes what is left and waits for the delayed write:
//     it replaces the Redis store's former Flush on shutdown.
//
// Changes reach the store in the order they were made: mu serialises the
// writes and each takes every change held so far.
type writer struct {
	x *execution

	mu sync.Mutex // held while writing; orders the writes

	hmu     sync.Mutex
	held    []*TaskUpdateParams
	starts  []*startReq // waiting for the next write, in arrival order
	timer   *time.Timer
	pending sync.WaitGroup // the delayed write, while armed or running
	closed  bool
}

// startReq is a task start waiting in [writer.start]; written is set, with
// mu held, by the write that carried it.
type startReq struct {
	p       *TaskUpdateParams
	written bool
}

// take returns the held changes and disarms the delayed write (hmu held by
// the caller).
func (w *writer) take() []*TaskUpdateParams {
	h := w.held
	w.held = nil
	if w.timer != nil && w.timer.Stop() {
		w.pending.Done()
	}
	w.timer = nil
	return h
}

// later holds p until the next write, or taskEndDelay; after close it is
// written at once.
func (w *writer) later(p *TaskUpdateParams) {
	w.hmu.Lock()
	w.held = append(w.held, p)
	closed := w.closed
	if !closed && w.timer == nil {
		w.pending.Add(1)
		w.timer = time.AfterFunc(taskEndDelay, func() {
			defer w.pending.Done()
			w.write()
		})
	}
	w.hmu.Unlock()
	if closed {
		w.write()
	}
}

// start writes p (a task's start) with every held change, before
// returning: in the next write, which carries every start waiting by then.
func (w *writer) start(p *TaskUpdateParams) {
	req := &startReq{p: p}
	w.hmu.Lock()
	w.starts = append(w.starts, req)
	w.hmu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	if !req.written { // else the write this one waited for carried it
		w.writeLocked()
	}
}

// flush writes every held change now.
func (w *writer) flush() {
	w.write()
}

// write stores the held changes (and any waiting starts) now, in one
// TaskUpdateMany through persist (see writeLocked).
func (w *writer) write() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writeLocked()
}

// writeLocked stores the held changes, then the waiting starts, in one
// TaskUpdateMany through persist (mu held). A refusal with ErrConflict
// means the run is no longer this execution's: it stops (see
// execution.ownerLost); a start that could not be stored is seen by its
// task through execution.lost.
func (w *writer) writeLocked() {
	w.hmu.Lock()
	tasks := w.take()
	starts := w.starts
	w.starts = nil
	w.hmu.Unlock()
	for _, r := range starts {
		tasks = append(tasks, r.p)
		r.written = true
	}
	if len(tasks) == 0 {
		return
	}
	x := w.x
	params := &TaskUpdateManyParams{RunID: x.run.ID, RunAttempt: x.fence, Tasks: tasks}
	err := x.persist(func(c context.Context) error { return x.e.taskUpdateMany(c, params) })
	if errors.Is(err, ErrConflict) {
		x.loseOwnership()
	}
}

// finish moves the run to a terminal status with every held change in the
// same store call, through persist. fn is called with the stored run or
// the refusal (see execution.finish).
func (w *writer) finish(p *RunFinishParams, fn func(c context.Context, r *Run, err error) error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.hmu.Lock()
	p.Tasks = append(w.take(), p.Tasks...)
	w.hmu.Unlock()
	x := w.x
	return x.persist(func(c context.Context) error {
		r, err := x.e.runFinish(c, p)
		return fn(c, r, err)
	})
}

// close writes the held changes and waits for a delayed write in flight;
// later changes are written at once.
func (w *writer) close() {
	w.hmu.Lock()
	w.closed = true
	w.hmu.Unlock()
	w.write()
	w.pending.Wait()
}
