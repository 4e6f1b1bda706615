package memstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/pyoco/pyoco/engine"
)

// queueState is the in-memory run queue, shaped like a Redis stream with one
// consumer group: ready entries wait in FIFO order; a popped entry is
// pending, owned by a worker, until acknowledged; a pending entry idle for
// longer than the lease may be reclaimed by another worker. It is guarded by
// Store.mu.
type queueState struct {
	seq     uint64
	ready   []queueEntry
	pending map[string]*pendingEntry // by entry ID
	// wake is closed (and replaced) whenever an entry becomes ready, waking
	// every blocked QueuePop.
	wake    chan struct{}
	workers map[string]workerEntry
}

type queueEntry struct {
	id    string
	runID string
}

type pendingEntry struct {
	queueEntry
	worker     string
	delivered  time.Time // last delivery or heartbeat
	deliveries int
}

type workerEntry struct {
	info    engine.WorkerInfo
	expires time.Time
}

func newQueueState() queueState {
	return queueState{
		pending: make(map[string]*pendingEntry),
		wake:    make(chan struct{}),
		workers: make(map[string]workerEntry),
	}
}

// enqueue appends run id to the queue (at the front if front) and wakes the
// waiting workers. The caller holds s.mu.
func (s *Store) enqueue(runID string) { s.push(runID, false) }

func (s *Store) push(runID string, front bool) {
	q := &s.q
	q.seq++
	e := queueEntry{id: strconv.FormatUint(q.seq, 10), runID: runID}
	if front {
		q.ready = slices.Insert(q.ready, 0, e)
	} else {
		q.ready = append(q.ready, e)
	}
	close(q.wake)
	q.wake = make(chan struct{})
}

// live reports whether run id exists and is not terminal. The caller holds s.mu.
func (s *Store) live(runID string) bool {
	rec, ok := s.runs[runID]
	return ok && !rec.run.Status.Terminal()
}

// QueuePop takes the oldest ready run for p.WorkerID, waiting until one is
// ready, p.Block passes (nil lease, nil error) or ctx ends (ctx's error).
// Entries of runs that are terminal (cancelled while PENDING) or gone are
// dropped, never returned. The returned lease has Deliveries 1.
func (s *Store) QueuePop(ctx context.Context, p *engine.QueuePopParams) (*engine.Lease, error) {
	var timeout <-chan time.Time
	if p.Block > 0 {
		t := time.NewTimer(p.Block)
		defer t.Stop()
		timeout = t.C
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s.mu.Lock()
		q := &s.q
		for len(q.ready) > 0 {
			e := q.ready[0]
			q.ready = q.ready[1:]
			if !s.live(e.runID) {
				continue
			}
			q.pending[e.id] = &pendingEntry{queueEntry: e, worker: p.WorkerID, delivered: time.Now(), deliveries: 1}
			s.mu.Unlock()
			return &engine.Lease{RunID: e.runID, ID: e.id, Deliveries: 1}, nil
		}
		wake := q.wake
		s.mu.Unlock()
		select {
		case <-wake:
		case <-timeout:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// QueuePopBatch is [Store.QueuePop] taking up to n runs: it waits for the
// first as QueuePop does, then takes the others that are ready at once.
// With p.Start it starts each as [Store.RunStart] would, with its lease
// (a run that ended meanwhile is settled and left out).
func (s *Store) QueuePopBatch(ctx context.Context, p *engine.QueuePopParams, n int) ([]*engine.Lease, error) {
	l, err := s.QueuePop(ctx, p)
	if l == nil {
		return nil, err
	}
	out := []*engine.Lease{l}
	s.mu.Lock()
	q := &s.q
	now := time.Now()
	for len(out) < n && len(q.ready) > 0 {
		e := q.ready[0]
		q.ready = q.ready[1:]
		if !s.live(e.runID) {
			continue
		}
		q.pending[e.id] = &pendingEntry{queueEntry: e, worker: p.WorkerID, delivered: now, deliveries: 1}
		out = append(out, &engine.Lease{RunID: e.runID, ID: e.id, Deliveries: 1})
	}
	s.mu.Unlock()
	if !p.Start {
		return out, nil
	}
	started := out[:0]
	for _, l := range out {
		r, err := s.RunStart(ctx, &engine.RunStartParams{RunID: l.RunID, WorkerID: p.WorkerID, At: now.UTC(), Lease: l})
		switch {
		case errors.Is(err, engine.ErrConflict), errors.Is(err, engine.ErrNotFound):
			continue // settled by RunStart
		case err == nil:
			l.Started = r
		}
		started = append(started, l)
	}
	return started, nil
}

// QueueAck forgets the lease's entry. Acknowledging an unknown entry does
// nothing.
func (s *Store) QueueAck(ctx context.Context, l *engine.Lease) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.q.pending, l.ID)
	return nil
}

// settle forgets l's pending entry (nil: nothing), as QueueAck does. The
// caller holds s.mu.
func (s *Store) settle(l *engine.Lease) {
	if l != nil {
		delete(s.q.pending, l.ID)
	}
}

// QueueReclaim hands p.WorkerID up to p.Count pending entries that nobody
// renewed for p.MinIdle, oldest first, each with Deliveries incremented.
// Entries of terminal or vanished runs are dropped instead.
func (s *Store) QueueReclaim(ctx context.Context, p *engine.QueueReclaimParams) ([]*engine.Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	var due []*pendingEntry
	for _, pe := range s.q.pending {
		if now.Sub(pe.delivered) >= p.MinIdle {
			due = append(due, pe)
		}
	}
	slices.SortFunc(due, func(a, b *pendingEntry) int {
		x, _ := strconv.ParseUint(a.id, 10, 64)
		y, _ := strconv.ParseUint(b.id, 10, 64)
		return cmp.Compare(x, y)
	})
	var out []*engine.Lease
	for _, pe := range due {
		if p.Count > 0 && len(out) >= p.Count {
			break
		}
		if !s.live(pe.runID) {
			delete(s.q.pending, pe.id)
			continue
		}
		pe.worker, pe.delivered = p.WorkerID, now
		pe.deliveries++
		out = append(out, &engine.Lease{RunID: pe.runID, ID: pe.id, Deliveries: pe.deliveries})
	}
	return out, nil
}

// QueueHeartbeat renews the leases that workerID still holds; leases taken
// over by another worker (or acknowledged) are left alone.
func (s *Store) QueueHeartbeat(ctx context.Context, workerID string, leases []*engine.Lease) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for _, l := range leases {
		if pe, ok := s.q.pending[l.ID]; ok && pe.worker == workerID {
			pe.delivered = now
		}
	}
	return nil
}

// QueueRequeue acknowledges the lease and queues its run again, at the
// front, for any worker; the new delivery counts from 1. When p.RunAttempt
// is set and differs from the run's Attempt the run was taken over: an
// error wrapping [engine.ErrConflict], nothing changes.
func (s *Store) QueueRequeue(ctx context.Context, p *engine.QueueRequeueParams) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l := p.Lease
	s.mu.Lock()
	defer s.mu.Unlock()
	if rec, ok := s.runs[l.RunID]; ok {
		if err := fenced(rec, p.RunAttempt); err != nil {
			return fmt.Errorf("requeue run %s: %w", l.RunID, err)
		}
	}
	delete(s.q.pending, l.ID)
	if s.live(l.RunID) {
		s.push(l.RunID, true)
	}
	return nil
}

// QueueDepth returns the number of PENDING runs by flow (flows with none are
// left out).
func (s *Store) QueueDepth(ctx context.Context) (map[string]int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int64)
	if ix := s.byStatus[engine.RunPending]; ix != nil {
		for _, k := range *ix {
			out[s.runs[k.id].run.FlowName]++
		}
	}
	return out, nil
}

// QueueOldest returns the CreatedAt of the oldest PENDING run of each flow
// that has one.
func (s *Store) QueueOldest(ctx context.Context) (map[string]time.Time, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]time.Time)
	if ix := s.byStatus[engine.RunPending]; ix != nil {
		for _, k := range *ix { // oldest first
			r := s.runs[k.id].run
			if _, ok := out[r.FlowName]; !ok {
				out[r.FlowName] = r.CreatedAt
			}
		}
	}
	return out, nil
}

// QueueLag returns the entries waiting in the queue that no worker took
// yet (entries of runs that ended meanwhile, which QueuePop drops, do not
// count: Redis deletes them).
func (s *Store) QueueLag(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, e := range s.q.ready {
		if s.live(e.runID) {
			n++
		}
	}
	return n, nil
}

// WorkerHeartbeat records w (a copy) as live for ttl.
func (s *Store) WorkerHeartbeat(ctx context.Context, w *engine.WorkerInfo, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if w == nil || w.ID == "" {
		return fmt.Errorf("worker heartbeat: missing worker ID")
	}
	c := *w
	c.Running = slices.Clone(w.Running)
	c.Tasks = slices.Clone(w.Tasks)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.q.workers[w.ID] = workerEntry{info: c, expires: time.Now().Add(ttl)}
	return nil
}

// WorkerRemove forgets worker id (a worker that stops cleanly).
func (s *Store) WorkerRemove(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.q.workers, id)
	return nil
}

// WorkerList returns the live workers by ID, dropping expired entries.
func (s *Store) WorkerList(ctx context.Context) ([]engine.WorkerInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	out := make([]engine.WorkerInfo, 0, len(s.q.workers))
	for id, w := range s.q.workers {
		if !now.Before(w.expires) {
			delete(s.q.workers, id)
			continue
		}
		c := w.info
		c.Running = slices.Clone(w.info.Running)
		c.Tasks = slices.Clone(w.info.Tasks)
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b engine.WorkerInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// Ping always succeeds: the memory store is always there.
func (s *Store) Ping(ctx context.Context) error { return ctx.Err() }

var (
	_ engine.Queue            = (*Store)(nil)
	_ engine.QueueBatchPopper = (*Store)(nil)
	_ engine.QueueStats       = (*Store)(nil)
	_ engine.QueueBacklog     = (*Store)(nil)
	_ engine.WorkerRegistry   = (*Store)(nil)
	_ engine.Pinger           = (*Store)(nil)
)
