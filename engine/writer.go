package engine

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"
)

// taskEndDelay bounds how long a task change that need not be stored
// before anything else happens (a task's end, a skip, a reset, the start of
// a task whose upstream ends are all stored) waits in the execution's
// writer for the next write it can ride with: the next start that must be
// stored, or the run's finish. So a single-task run costs one finish
// script that writes its task's start and end with the status change, and
// a fan-out's tasks that end quickly cost no write of their own. A worker
// that dies loses a change only within this delay plus one round trip, and
// the takeover runs that task again in a new attempt, exactly as if the
// worker had died just before the write.
const taskEndDelay = time.Millisecond

// writer is one execution's only way to the store for task changes and
// the finish (River's BatchCompleter is the model): it owns their batching
// and, through [execution.persist], the single retry and outage policy.
//
//   - A task's start (RUNNING, with its attempt record) is held like an
//     end when no change of its upstream tasks is held: every upstream end
//     is stored by then, so the order "no task starts before its upstream
//     tasks' ends are stored" holds. A task that runs longer than taskEndDelay has its
//     start stored by then; a quicker one's start rides with its end. A
//     sub-flow task's start is never held: its attempt names the child run
//     the task creates.
//   - A start that finds an upstream end held is written before [writer.start]
//     returns, together with every change held before it, in one
//     [RunStore.TaskUpdateMany]. Starts that arrive while a write is in
//     flight (a fan-out's tasks, admitted together after their upstream
//     task) wait for it and then go together in the next write: n tasks
//     that start at once cost two writes, not n.
//   - Every other change is held ([writer.later]) and written with the
//     next start that is written, with the finish (in
//     [RunFinishParams.Tasks]), or on its own after taskEndDelay, whichever
//     comes first.
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
	heldEnd []string // the tasks of held's changes other than starts
	// heldStart maps a task to the index in held of its start, while
	// that is the task's last held change.
	heldStart map[string]int
	starts    []*startReq // waiting for the next write, in arrival order
	timer     *time.Timer
	pending   sync.WaitGroup // the delayed write, while armed or running
	closed    bool
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
	w.held, w.heldEnd = nil, w.heldEnd[:0]
	clear(w.heldStart)
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
	closed := w.closed
	if i, ok := w.heldStart[p.Task]; ok && p.Attempt != nil && w.held[i].Attempt != nil &&
		p.Attempt.Number == w.held[i].Attempt.Number {
		// The same attempt's next change: it replaces the held start (a
		// write of one change, one attempt record, instead of two).
		w.held[i] = mergeStart(w.held[i], p)
		delete(w.heldStart, p.Task)
	} else {
		w.holdLocked(p)
	}
	w.heldEnd = append(w.heldEnd, p.Task)
	w.hmu.Unlock()
	if closed {
		w.write()
	}
}

// holdLocked holds p and arms the delayed write (hmu held).
func (w *writer) holdLocked(p *TaskUpdateParams) {
	w.held = append(w.held, p)
	if !w.closed && w.timer == nil {
		w.pending.Add(1)
		w.timer = time.AfterFunc(taskEndDelay, func() {
			defer w.pending.Done()
			w.write()
		})
	}
}

// mergeStart returns the one change that writes start (a task's start)
// and then next (the same attempt's next change, which sets every field
// start does but StartedAt and ResetEnd).
func mergeStart(start, next *TaskUpdateParams) *TaskUpdateParams {
	m := *next
	if m.StartedAt.IsZero() {
		m.StartedAt = start.StartedAt
	}
	m.ResetEnd = m.ResetEnd || start.ResetEnd
	if m.Use == "" {
		m.Use = start.Use
	}
	return &m
}

// holdsAny reports whether a change other than a start of one of tasks (or
// of an iteration of one) is held (hmu held).
func (w *writer) holdsAny(tasks []string) bool {
	for _, h := range w.heldEnd {
		if i := strings.IndexByte(h, '['); i > 0 {
			h = h[:i]
		}
		if slices.Contains(tasks, h) {
			return true
		}
	}
	return false
}

// start stores p (a task's start): held when hold is set and no change of
// an upstream task is held (see writer), else written before returning
// with every held change, in the next write, which carries every start
// waiting by then.
func (w *writer) start(p *TaskUpdateParams, upstream []string, hold bool) {
	w.hmu.Lock()
	if hold && !w.closed && !w.holdsAny(upstream) {
		if w.heldStart == nil {
			w.heldStart = make(map[string]int)
		}
		w.heldStart[p.Task] = len(w.held)
		w.holdLocked(p)
		w.hmu.Unlock()
		return
	}
	req := &startReq{p: p}
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
