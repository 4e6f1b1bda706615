package engine

import (
	"context"
	"sync"
)

// BatchWriter is an optional [Store] capability: WriteBatch performs
// several writes, of any runs, in one round trip (the Redis store
// pipelines their scripts). Each op is applied as the matching [RunStore]
// method would apply it, atomically on its own, and gets that method's
// result in its Run and Err fields; ops do not see each other's failures,
// and an op that fails leaves the others applied. WriteBatch returns when
// every op has its result. The engine uses it for group commit: the starts,
// task writes and finishes of the runs it executes at the same moment share
// round trips.
type BatchWriter interface {
	WriteBatch(ctx context.Context, ops []*WriteOp)
}

// WriteOp is one write of a [BatchWriter] batch: exactly one of Start,
// Tasks and Finish is set.
type WriteOp struct {
	Start  *RunStartParams
	Tasks  *TaskUpdateManyParams
	Finish *RunFinishParams

	// Run is the run RunStart or RunFinish returned.
	Run *Run
	// Err is the write's error.
	Err error
}

const (
	// maxCommitBatch bounds the writes one group commit sends.
	maxCommitBatch = 64
	// maxCommitsInFlight bounds the batches in flight at once. A write
	// that finds fewer in flight is sent at once, alone: a lone run is
	// never delayed. Writes that find them all in flight wait for the
	// first to return (one round trip at most) and go together in the
	// next. Two keep the connection busy while the engine handles a reply.
	maxCommitsInFlight = 2
)

// committer is the engine's group commit (on a [BatchWriter] store): see
// maxCommitsInFlight. There is no timer: a write waits only for a batch in
// flight, so the delay it can add is bounded by one round trip, and a write
// on an idle engine adds none. The first waiter leads the next batch, in its
// own goroutine: the committer has no goroutine of its own.
type committer struct {
	bw BatchWriter

	mu       sync.Mutex
	inFlight int
	queue    []*commitReq
}

type commitReq struct {
	op   *WriteOp
	done chan bool // true: lead the next batch
}

// do performs op, alone or with others, and returns when it is done.
func (c *committer) do(ctx context.Context, op *WriteOp) {
	r := &commitReq{op: op, done: make(chan bool, 1)}
	c.mu.Lock()
	if c.inFlight >= maxCommitsInFlight {
		c.queue = append(c.queue, r)
		c.mu.Unlock()
		if lead := <-r.done; !lead {
			return // written by another's batch
		}
		c.lead(ctx, r, true)
		return
	}
	c.inFlight++
	c.mu.Unlock()
	c.lead(ctx, r, false)
}

// lead sends own, with up to maxCommitBatch-1 waiting writes when it was
// handed the lead (a write that found a batch slot free goes alone, even
// if others queued since), completes them and hands the lead (and its slot
// in flight) to the next waiter, if any.
func (c *committer) lead(ctx context.Context, own *commitReq, handed bool) {
	c.mu.Lock()
	n := 0
	if handed {
		n = min(len(c.queue), maxCommitBatch-1)
	}
	batch := make([]*commitReq, 0, n+1)
	batch = append(append(batch, own), c.queue[:n]...)
	c.queue = append(c.queue[:0], c.queue[n:]...)
	c.mu.Unlock()

	ops := make([]*WriteOp, len(batch))
	for i, r := range batch {
		ops[i] = r.op
	}
	// The leader's cancellation must not fail the others' writes.
	c.bw.WriteBatch(context.WithoutCancel(ctx), ops)

	c.mu.Lock()
	var next *commitReq
	if len(c.queue) > 0 {
		next = c.queue[0]
		c.queue = append(c.queue[:0], c.queue[1:]...)
	} else {
		c.inFlight--
	}
	c.mu.Unlock()
	for _, r := range batch[1:] {
		r.done <- false
	}
	if next != nil {
		next.done <- true
	}
}

// runStart, taskUpdateMany and runFinish are the engine's store writes of
// an execution: through the committer on a BatchWriter store, else direct.
func (e *Engine) runStart(ctx context.Context, p *RunStartParams) (*Run, error) {
	if e.commit == nil {
		return e.store.RunStart(ctx, p)
	}
	op := &WriteOp{Start: p}
	e.commit.do(ctx, op)
	return op.Run, op.Err
}

func (e *Engine) taskUpdateMany(ctx context.Context, p *TaskUpdateManyParams) error {
	if e.commit == nil {
		return e.store.TaskUpdateMany(ctx, p)
	}
	op := &WriteOp{Tasks: p}
	e.commit.do(ctx, op)
	return op.Err
}

func (e *Engine) runFinish(ctx context.Context, p *RunFinishParams) (*Run, error) {
	if e.commit == nil {
		return e.store.RunFinish(ctx, p)
	}
	op := &WriteOp{Finish: p}
	e.commit.do(ctx, op)
	return op.Run, op.Err
}
