package memstore

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/pyoco/pyoco/engine"
)

// defaultListLimit is the page size of RunList when RunListParams.Limit is 0.
const defaultListLimit = 50

// Store is an in-memory [engine.Store] that also implements
// [engine.CancelNotifier], [engine.ScheduleStore] (schedule.go) and
// [engine.IdempotencyStore] (idempotency.go). The
// zero value is not usable; call [New].
//
// A Store is safe for concurrent use. It keeps every run, log entry and event
// until the process exits (no retention yet). Values passed in and returned
// are copies, except Run.Params values, which are shared and must be treated
// as immutable (see [engine.Run.Clone]).
type Store struct {
	mu sync.Mutex

	runs map[string]*runRecord

	// Indexes for RunList, each sorted oldest first.
	all      index
	byStatus map[engine.RunStatus]*index
	byFlow   map[string]*index
	byTag    map[string]*index

	events []engine.Event // events[i] has ID strconv.Itoa(i+1)

	schedules map[scheduleKey]engine.ScheduleState // schedule.go

	q queueState // the run queue and worker registry (queue.go)

	idem *Idempotency // Idempotency-Key bindings (idempotency.go), own lock
}

// runRecord is everything the store keeps about one run.
type runRecord struct {
	run     *engine.Run // owned; never handed out
	key     runKey
	tags    []string // run.Tags without duplicates, for the tag index
	logs    []engine.LogEntry
	waiters []*waiter // RunCancelNotify subscribers
}

// waiter is one RunCancelNotify subscription.
type waiter struct {
	ch   chan struct{}
	stop func() bool // stops the context.AfterFunc
}

// New returns an empty Store.
func New() *Store {
	return &Store{
		runs:     make(map[string]*runRecord),
		byStatus: make(map[engine.RunStatus]*index),
		byFlow:   make(map[string]*index),
		byTag:    make(map[string]*index),
		q:        newQueueState(),
		idem:     NewIdempotency(),
	}
}

// RunCreate stores a copy of run. run.Status must be PENDING and each task
// PENDING; a zero CreatedAt is set to the current time (in the stored copy
// only). It returns an error wrapping [engine.ErrConflict] if the ID exists.
// It records a PENDING [engine.Event].
func (s *Store) RunCreate(ctx context.Context, run *engine.Run) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r, err := newRunCopy(run)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.insertRun(r)
}

// newRunCopy checks a run given to RunCreate and returns the copy to store.
func newRunCopy(run *engine.Run) (*engine.Run, error) {
	if run == nil || run.ID == "" {
		return nil, fmt.Errorf("create run: missing run ID")
	}
	if run.Status != engine.RunPending {
		return nil, fmt.Errorf("create run %s: status is %s, want %s", run.ID, run.Status, engine.RunPending)
	}
	for name, ts := range run.Tasks {
		if ts == nil || ts.Status != engine.TaskPending {
			return nil, fmt.Errorf("create run %s: task %s is not %s", run.ID, name, engine.TaskPending)
		}
	}
	r := run.Clone()
	if r.CreatedAt.IsZero() {
		r.CreatedAt = time.Now().UTC()
	}
	if r.Tasks == nil {
		r.Tasks = map[string]*engine.TaskState{}
	}
	return r, nil
}

// insertRun stores r (a copy made by newRunCopy) with its indexes, event
// and queue entry. The caller holds s.mu.
func (s *Store) insertRun(r *engine.Run) error {
	if _, ok := s.runs[r.ID]; ok {
		return fmt.Errorf("create run %s: %w", r.ID, engine.ErrConflict)
	}
	rec := &runRecord{
		run:  r,
		key:  runKey{created: r.CreatedAt.UnixNano(), id: r.ID},
		tags: uniq(r.Tags),
	}
	s.runs[r.ID] = rec
	s.all.insert(rec.key)
	indexOf(s.byStatus, r.Status).insert(rec.key)
	indexOf(s.byFlow, r.FlowName).insert(rec.key)
	for _, tag := range rec.tags {
		indexOf(s.byTag, tag).insert(rec.key)
	}
	s.appendEvent(r, r.CreatedAt)
	if r.ParentRunID == "" {
		s.enqueue(r.ID) // a sub-flow's run is run by its parent, not queued
	}
	return nil
}

// RunGet returns a copy of the run with its tasks, or an error wrapping
// [engine.ErrNotFound].
func (s *Store) RunGet(ctx context.Context, id string) (*engine.Run, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.runs[id]
	if !ok {
		return nil, fmt.Errorf("get run %s: %w", id, engine.ErrNotFound)
	}
	return rec.run.Clone(), nil
}

// RunStart hands the run to p.WorkerID: PENDING becomes RUNNING with
// StartedAt p.At (recording a RUNNING event); a RUNNING or CANCELLING run
// (a takeover) keeps its status and StartedAt and records no event. Either
// way Attempt is incremented and WorkerID set. A zero p.At means now. It
// returns a copy of the run with its tasks; an error wrapping
// [engine.ErrConflict] if the run is terminal, [engine.ErrNotFound] if
// unknown, and then acknowledges p.Lease (if set) in the same step.
func (s *Store) RunStart(ctx context.Context, p *engine.RunStartParams) (*engine.Run, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	at := orNow(p.At)
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.runs[p.RunID]
	if !ok {
		s.settle(p.Lease)
		return nil, fmt.Errorf("start run %s: %w", p.RunID, engine.ErrNotFound)
	}
	r := rec.run
	if r.Status.Terminal() {
		s.settle(p.Lease)
		return nil, fmt.Errorf("start run %s: run is %s: %w", p.RunID, r.Status, engine.ErrConflict)
	}
	if r.Status == engine.RunPending {
		s.setStatus(rec, engine.RunRunning)
		r.StartedAt = at
		s.appendEvent(r, at)
	}
	r.Attempt++
	r.WorkerID = p.WorkerID
	return r.Clone(), nil
}

// RunFinish moves a non-terminal run to p.Status (COMPLETED, FAILED or
// CANCELLED), sets EndedAt to p.At (zero means now) and Error to p.Error, and
// records an event. Any run that is not terminal may finish, PENDING included.
// p.Tasks are applied first, in the same step (one of an unknown task is
// skipped). It returns a copy of the run with its tasks; an error wrapping
// [engine.ErrConflict] if the run is already terminal, [engine.ErrNotFound]
// if unknown, and a plain error if p.Status is not terminal. p.Lease (if
// set) is acknowledged in the same step, whatever the outcome, except when
// p.RunAttempt is set and differs from the run's Attempt: then the run was
// taken over and the error wraps [engine.ErrConflict] ("owner lost"),
// changing nothing.
func (s *Store) RunFinish(ctx context.Context, p *engine.RunFinishParams) (*engine.Run, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !p.Status.Terminal() {
		return nil, fmt.Errorf("finish run %s: status %q is not terminal", p.RunID, p.Status)
	}
	at := orNow(p.At)
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.runs[p.RunID]
	if ok {
		if err := fenced(rec, p.RunAttempt); err != nil {
			return nil, fmt.Errorf("finish run %s: %w", p.RunID, err)
		}
	}
	s.settle(p.Lease)
	if !ok {
		return nil, fmt.Errorf("finish run %s: %w", p.RunID, engine.ErrNotFound)
	}
	r := rec.run
	if r.Status.Terminal() {
		return nil, fmt.Errorf("finish run %s: run is %s: %w", p.RunID, r.Status, engine.ErrConflict)
	}
	for _, t := range p.Tasks {
		if ts, ok := taskRow(r, t); ok {
			applyTask(ts, t)
		}
	}
	s.setStatus(rec, p.Status)
	r.EndedAt = at
	r.Error = p.Error
	s.appendEvent(r, at)
	return r.Clone(), nil
}

// RunCancel requests cancellation: a PENDING run becomes CANCELLED at once
// (EndedAt p.At), a RUNNING one CANCELLING; both record an event and close
// the run's [Store.RunCancelNotify] channels. A CANCELLING run stays so, with
// no event. It returns the new status; for a terminal run it returns the
// run's status and an error wrapping [engine.ErrConflict]; for an unknown
// run "" and [engine.ErrNotFound].
func (s *Store) RunCancel(ctx context.Context, p *engine.RunCancelParams) (engine.RunStatus, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	at := orNow(p.At)
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.runs[p.RunID]
	if !ok {
		return "", fmt.Errorf("cancel run %s: %w", p.RunID, engine.ErrNotFound)
	}
	r := rec.run
	switch r.Status {
	case engine.RunPending:
		s.setStatus(rec, engine.RunCancelled)
		r.EndedAt = at
		for _, t := range r.Tasks {
			if t != nil && t.Status == engine.TaskPending {
				t.Status, t.EndedAt, t.Error = engine.TaskCancelled, at, engine.CancelledBeforeStartMsg
			}
		}
	case engine.RunRunning:
		s.setStatus(rec, engine.RunCancelling)
	case engine.RunCancelling:
		return r.Status, nil
	default:
		return r.Status, fmt.Errorf("cancel run %s: run is %s: %w", p.RunID, r.Status, engine.ErrConflict)
	}
	s.appendEvent(r, at)
	for _, w := range rec.waiters {
		w.stop()
		close(w.ch)
	}
	rec.waiters = nil
	return r.Status, nil
}

// RunList returns runs newest first (by CreatedAt, then ID, both descending),
// without tasks. It walks the smallest index that the filters select (the
// union of the status indexes, the flow's or the tag's), so a selective
// filter does not scan every run. p.Limit defaults to 50. NextCursor is ""
// when no further run matches. A cursor holds the position of the last run of
// the page, so a walk never returns a run twice; an unparsable one gives an
// error wrapping [engine.ErrBadCursor].
func (s *Store) RunList(ctx context.Context, p *engine.RunListParams) (*engine.RunPage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var after *runKey
	if p.Cursor != "" {
		k, err := decodeCursor(p.Cursor)
		if err != nil {
			return nil, fmt.Errorf("list runs: %w", err)
		}
		after = &k
	}
	limit := p.Limit
	if limit <= 0 {
		limit = defaultListLimit
	}
	statuses := uniq(p.Statuses)

	s.mu.Lock()
	defer s.mu.Unlock()

	// Pick the index to walk: the smallest the filters allow.
	walk := []index{s.all}
	size := len(s.all)
	if len(statuses) > 0 {
		var ixs []index
		n := 0
		for _, st := range statuses {
			if ix := s.byStatus[st]; ix != nil {
				ixs = append(ixs, *ix)
				n += len(*ix)
			}
		}
		walk, size = ixs, n
	}
	if p.Flow != "" {
		ix := s.byFlow[p.Flow]
		if ix == nil {
			return &engine.RunPage{}, nil
		}
		if len(*ix) < size {
			walk, size = []index{*ix}, len(*ix)
		}
	}
	if p.Tag != "" {
		ix := s.byTag[p.Tag]
		if ix == nil {
			return &engine.RunPage{}, nil
		}
		if len(*ix) < size {
			walk = []index{*ix}
		}
	}

	page := &engine.RunPage{}
	c := newCursor(walk, after)
	for {
		k, ok := c.next()
		if !ok {
			break
		}
		rec := s.runs[k.id]
		r := rec.run
		if len(statuses) > 0 && !slices.Contains(statuses, r.Status) ||
			p.Flow != "" && r.FlowName != p.Flow ||
			p.Tag != "" && !slices.Contains(rec.tags, p.Tag) {
			continue
		}
		if len(page.Runs) == limit {
			page.NextCursor = encodeCursor(s.runs[page.Runs[limit-1].ID].key)
			break
		}
		page.Runs = append(page.Runs, summary(r))
	}
	return page, nil
}

// TaskUpdate changes one task of a run as [engine.TaskUpdateParams]
// describes. ResetEnd is applied before EndedAt, so both together set
// EndedAt. Attempts stay sorted by Number. It returns an error wrapping
// [engine.ErrNotFound] if the run or task is unknown, [engine.ErrConflict]
// if the run is terminal or, when p.RunAttempt is set and differs from the
// run's Attempt, taken over ("owner lost"). It records no event.
func (s *Store) TaskUpdate(ctx context.Context, p *engine.TaskUpdateParams) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.runs[p.RunID]
	if !ok {
		return fmt.Errorf("update task %s of run %s: %w", p.Task, p.RunID, engine.ErrNotFound)
	}
	if err := fenced(rec, p.RunAttempt); err != nil {
		return fmt.Errorf("update task %s of run %s: %w", p.Task, p.RunID, err)
	}
	if rec.run.Status.Terminal() {
		return fmt.Errorf("update task %s of run %s: run is %s: %w", p.Task, p.RunID, rec.run.Status, engine.ErrConflict)
	}
	t, ok := taskRow(rec.run, p)
	if !ok {
		return fmt.Errorf("update task %s of run %s: task: %w", p.Task, p.RunID, engine.ErrNotFound)
	}
	applyTask(t, p)
	return nil
}

// TaskUpdateMany applies p.Tasks to the run in order, in one step, as
// [Store.TaskUpdate] each, fenced by p.RunAttempt. A change of an unknown
// task is skipped, except the last one's: an error wrapping
// [engine.ErrNotFound], leaving the earlier ones applied.
func (s *Store) TaskUpdateMany(ctx context.Context, p *engine.TaskUpdateManyParams) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.runs[p.RunID]
	if !ok {
		return fmt.Errorf("update tasks of run %s: %w", p.RunID, engine.ErrNotFound)
	}
	if err := fenced(rec, p.RunAttempt); err != nil {
		return fmt.Errorf("update tasks of run %s: %w", p.RunID, err)
	}
	if rec.run.Status.Terminal() {
		return fmt.Errorf("update tasks of run %s: run is %s: %w", p.RunID, rec.run.Status, engine.ErrConflict)
	}
	for i, u := range p.Tasks {
		t, ok := taskRow(rec.run, u)
		if !ok {
			if i == len(p.Tasks)-1 {
				return fmt.Errorf("update task %s of run %s: task: %w", u.Task, p.RunID, engine.ErrNotFound)
			}
			continue
		}
		applyTask(t, u)
	}
	return nil
}

// fenced returns an error wrapping [engine.ErrConflict] if attempt is set
// and is not the run's Attempt: another worker took the run over since the
// writer's RunStart. The caller holds s.mu.
func fenced(rec *runRecord, attempt int) error {
	if attempt != 0 && rec.run.Attempt != attempt {
		return fmt.Errorf("owner lost: the run was taken over (attempt %d): %w", rec.run.Attempt, engine.ErrConflict)
	}
	return nil
}

// taskRow returns the task p changes, creating a foreach iteration's row
// ([engine.IterationOf]) on its first write if the run has its task.
func taskRow(r *engine.Run, p *engine.TaskUpdateParams) (*engine.TaskState, bool) {
	if t, ok := r.Tasks[p.Task]; ok {
		return t, true
	}
	parent, _, ok := engine.IterationOf(p.Task)
	if !ok || r.Tasks[parent] == nil {
		return nil, false
	}
	t := &engine.TaskState{Name: p.Task, Use: p.Use, Status: engine.TaskPending}
	r.Tasks[p.Task] = t
	return t, true
}

// applyTask applies the change p to t.
func applyTask(t *engine.TaskState, p *engine.TaskUpdateParams) {
	t.Status = p.Status
	t.Error = p.Error
	if !p.StartedAt.IsZero() {
		t.StartedAt = p.StartedAt
	}
	if p.ResetEnd {
		t.EndedAt = time.Time{}
	}
	if !p.EndedAt.IsZero() {
		t.EndedAt = p.EndedAt
	}
	if len(p.Output) > 0 {
		t.Output = slices.Clone(p.Output)
		t.OutputTruncated = p.OutputTruncated
	}
	if a := p.Attempt; a != nil {
		i, found := slices.BinarySearchFunc(t.Attempts, a.Number, func(x engine.Attempt, n int) int { return x.Number - n })
		if found {
			t.Attempts[i] = *a
		} else {
			t.Attempts = slices.Insert(t.Attempts, i, *a)
		}
	}
}

// LogAppend appends entries to a run's logs (terminal runs included),
// assigning Seq 1, 2, 3… per run and writing each Seq back into entries; one
// call's entries get consecutive Seqs. It returns an error wrapping
// [engine.ErrNotFound] if the run is unknown.
func (s *Store) LogAppend(ctx context.Context, runID string, entries []engine.LogEntry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.runs[runID]
	if !ok {
		return fmt.Errorf("append logs of run %s: %w", runID, engine.ErrNotFound)
	}
	for i := range entries {
		entries[i].Seq = int64(len(rec.logs)) + 1
		rec.logs = append(rec.logs, entries[i])
	}
	return nil
}

// LogList returns a run's entries in Seq order: those of p.Task (if set) with
// Seq > p.After, then the last p.Tail of them (if set), then the first
// p.Limit (if set). It returns an error wrapping [engine.ErrNotFound] if the
// run is unknown.
func (s *Store) LogList(ctx context.Context, p *engine.LogListParams) ([]engine.LogEntry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.runs[p.RunID]
	if !ok {
		return nil, fmt.Errorf("list logs of run %s: %w", p.RunID, engine.ErrNotFound)
	}
	// Seq n is rec.logs[n-1], so After skips without scanning.
	from := int(min(max(p.After, 0), int64(len(rec.logs))))
	var out []engine.LogEntry
	if p.Task == "" {
		out = slices.Clone(rec.logs[from:])
	} else {
		for _, e := range rec.logs[from:] {
			if e.Task == p.Task {
				out = append(out, e)
			}
		}
	}
	if p.Tail > 0 && len(out) > p.Tail {
		out = out[len(out)-p.Tail:]
	}
	if p.Limit > 0 && len(out) > p.Limit {
		out = out[:p.Limit]
	}
	return out, nil
}

// EventList returns events after p.After ("" = from the start), oldest first,
// at most p.Limit of them (0: all). Event IDs are decimal numbers counting
// from 1; an After that is not one gives an error wrapping
// [engine.ErrBadCursor].
func (s *Store) EventList(ctx context.Context, p *engine.EventListParams) ([]engine.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var after uint64
	if p.After != "" {
		n, err := strconv.ParseUint(p.After, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("list events after %q: %w", p.After, engine.ErrBadCursor)
		}
		after = n
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	from := int(min(after, uint64(len(s.events))))
	out := s.events[from:]
	if p.Limit > 0 && len(out) > p.Limit {
		out = out[:p.Limit]
	}
	return slices.Clone(out), nil
}

// RunCancelNotify returns a channel that is closed when [Store.RunCancel]
// requests the run's cancellation, or when ctx ends. If cancellation was
// already requested (the run is CANCELLING or CANCELLED) the channel is
// closed at once. It returns an error wrapping [engine.ErrNotFound] if the
// run is unknown. No goroutine outlives the subscription: the ctx watch is a
// [context.AfterFunc], stopped when the channel closes.
func (s *Store) RunCancelNotify(ctx context.Context, runID string) (<-chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.runs[runID]
	if !ok {
		return nil, fmt.Errorf("notify cancel of run %s: %w", runID, engine.ErrNotFound)
	}
	ch := make(chan struct{})
	if st := rec.run.Status; st == engine.RunCancelling || st == engine.RunCancelled || ctx.Err() != nil {
		close(ch)
		return ch, nil
	}
	w := &waiter{ch: ch}
	w.stop = context.AfterFunc(ctx, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		// RunCancel may have closed the channel and dropped w meanwhile.
		if i := slices.Index(rec.waiters, w); i >= 0 {
			rec.waiters = slices.Delete(rec.waiters, i, i+1)
			close(w.ch)
		}
	})
	rec.waiters = append(rec.waiters, w)
	return ch, nil
}

// setStatus changes a run's status and moves it between status indexes.
// The caller holds s.mu and records the event.
func (s *Store) setStatus(rec *runRecord, st engine.RunStatus) {
	indexOf(s.byStatus, rec.run.Status).remove(rec.key)
	rec.run.Status = st
	indexOf(s.byStatus, st).insert(rec.key)
}

// appendEvent records r's current status. The caller holds s.mu.
func (s *Store) appendEvent(r *engine.Run, at time.Time) {
	s.events = append(s.events, engine.Event{
		ID:       strconv.Itoa(len(s.events) + 1),
		RunID:    r.ID,
		FlowName: r.FlowName,
		Status:   r.Status,
		Time:     at,
	})
}

// indexOf returns m[k], creating it if needed.
func indexOf[K comparable](m map[K]*index, k K) *index {
	ix := m[k]
	if ix == nil {
		ix = new(index)
		m[k] = ix
	}
	return ix
}

// summary is a copy of r without tasks, as RunList returns it.
func summary(r *engine.Run) *engine.Run {
	c := *r
	c.Tasks = nil
	return c.Clone()
}

// uniq returns s without duplicates, in first-seen order.
func uniq[T comparable](s []T) []T {
	var out []T
	for _, v := range s {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// orNow returns t, or the current time if t is zero.
func orNow(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now().UTC()
	}
	return t
}

var (
	_ engine.Store          = (*Store)(nil)
	_ engine.CancelNotifier = (*Store)(nil)
)
