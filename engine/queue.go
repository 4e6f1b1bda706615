package engine

import (
	"context"
	"time"
)

// Queue is an optional [Store] capability: a store that is also a Queue
// hands PENDING runs to workers. On such a store RunCreate also enqueues
// the run, in the same atomic step, so a created run is never lost between
// the two. A run is delivered to one worker at a time; a worker that stops
// heart-beating loses its leases after the lease time and another worker
// reclaims the run (SPEC §11).
//
// This interface is unstable until the queue issue lands.
type Queue interface {
	// QueuePop blocks until a run is available, p.Block passes (nil lease,
	// nil error), or ctx ends. It never returns a run that was not PENDING or
	// RUNNING when taken (cancelled runs are acknowledged and skipped); one
	// that ends in the instant after is refused by RunStart (ErrConflict).
	QueuePop(ctx context.Context, p *QueuePopParams) (*Lease, error)
	// QueueAck removes a finished (or handed-back) run from the worker's
	// pending entries.
	QueueAck(ctx context.Context, l *Lease) error
	// QueueReclaim takes over runs whose lease expired (their worker stopped
	// heart-beating), at most p.Count. Each returned lease has its
	// Deliveries incremented.
	QueueReclaim(ctx context.Context, p *QueueReclaimParams) ([]*Lease, error)
	// QueueHeartbeat renews the leases of the given runs held by workerID;
	// leases another worker took over meanwhile are left alone.
	QueueHeartbeat(ctx context.Context, workerID string, leases []*Lease) error
	// QueueRequeue acknowledges a handed-back run's lease and queues the run
	// again for any worker (its next delivery counts from 1); a terminal run
	// is only acknowledged. The memory store puts it at the front, Redis at
	// the end of the stream. When p.RunAttempt is set and differs from the
	// run's Attempt the run was taken over: ErrConflict, nothing changes.
	QueueRequeue(ctx context.Context, p *QueueRequeueParams) error
}

// QueueBatchPopper is an optional [Queue] capability: QueuePopBatch is
// [Queue.QueuePop] taking up to max runs in one step (a worker asks for as
// many as it has free slots). It returns at least one lease, or, like
// QueuePop, none when p.Block passes (nil, nil) or ctx ends.
type QueueBatchPopper interface {
	QueuePopBatch(ctx context.Context, p *QueuePopParams, max int) ([]*Lease, error)
}

// QueuePopParams are the arguments of [Queue.QueuePop].
type QueuePopParams struct {
	WorkerID string
	// Block bounds the wait; 0 waits until ctx ends.
	Block time.Duration
	// Start asks the store to start the runs it hands out, as
	// [RunStore.RunStart] would (WorkerID as the worker, the store's clock,
	// the delivery as the lease) in the same step, and to set
	// [Lease.Started]: the worker then saves a round trip per run. A store
	// may start some, all or none of them (the Redis store starts those it
	// had queued already, not those a blocked read waited for); the others'
	// Started is nil. A run that was gone or terminal is settled and not
	// handed out.
	Start bool
}

// QueueRequeueParams are the arguments of [Queue.QueueRequeue].
type QueueRequeueParams struct {
	Lease *Lease
	// RunAttempt is the fence of the execution that hands the run back (the
	// run's Attempt as its RunStart returned it), or 0 for a run this
	// worker never started.
	RunAttempt int
}

// QueueReclaimParams are the arguments of [Queue.QueueReclaim].
type QueueReclaimParams struct {
	WorkerID string
	// MinIdle is the lease: entries idle longer than this are reclaimed.
	MinIdle time.Duration
	Count   int
}

// Lease is one delivery of a queued run to a worker.
type Lease struct {
	RunID string
	// ID identifies the delivery in the queue (e.g. a stream entry id).
	ID string
	// Deliveries counts how many workers have taken the run (1 on the first).
	Deliveries int
	// Started is the run as the store started it while delivering it
	// ([QueuePopParams.Start]), nil when it did not: pass it to
	// [Engine.Execute] in [ExecuteParams.Started]. Its Attempt is the fence.
	Started *Run
}

// QueueStats is an optional [Store] capability used by metrics and the API.
type QueueStats interface {
	// QueueDepth returns the runs waiting in the queue, by flow.
	QueueDepth(ctx context.Context) (map[string]int64, error)
}

// QueueBacklog is an optional [Store] capability read by the backlog gauges
// (pyoco_queue_oldest_age_seconds, pyoco_queue_lag), which autoscalers
// watch: both reads are cheap enough for every scrape.
type QueueBacklog interface {
	// QueueOldest returns, for each flow with PENDING runs, the CreatedAt
	// of its oldest PENDING run. A store may bound the work: past its
	// bound a flow gets the CreatedAt of the last run it examined, older
	// than the flow's true oldest (the age is an upper bound).
	QueueOldest(ctx context.Context) (map[string]time.Time, error)
	// QueueLag returns the queue entries not yet delivered to any worker.
	QueueLag(ctx context.Context) (int64, error)
}

// WorkerInfo describes one live worker (GET /workers).
type WorkerInfo struct {
	ID            string    `json:"id"`
	Host          string    `json:"host"`
	StartedAt     time.Time `json:"started_at"`
	LastHeartbeat time.Time `json:"last_heartbeat"`
	// Running lists the ids of the runs it executes now.
	Running []string `json:"running"`
	// Concurrency is how many runs it executes at once at most.
	Concurrency int `json:"concurrency"`
	// Tasks are the names of the tasks it can execute (its registry:
	// built-ins, Go and exec plug-ins), sorted. A server that has no task
	// implementations lists the union of its live workers' (GET /tasks).
	Tasks []string `json:"tasks,omitempty"`
}

// WorkerRegistry is an optional [Store] capability: live workers announce
// themselves with heartbeats; entries older than the lease are not live.
type WorkerRegistry interface {
	WorkerHeartbeat(ctx context.Context, w *WorkerInfo, ttl time.Duration) error
	WorkerRemove(ctx context.Context, id string) error
	WorkerList(ctx context.Context) ([]WorkerInfo, error)
}

// Pinger is an optional [Store] capability for readiness checks.
type Pinger interface {
	Ping(ctx context.Context) error
}
