package worker

import (
	"context"
	"errors"
	"fmt"
	"github.com/pyoco/pyoco/internal/backoff"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pyoco/pyoco/engine"
)

// Defaults of [Config].
const (
	DefaultConcurrency = 16
	DefaultLease       = 30 * time.Second
	DefaultMaxAttempts = 3
)

// popBlock bounds one QueuePop, so a stopping worker stops asking for runs
// within it; a run queued meanwhile still arrives at once. One goroutine
// takes runs for all the slots, as many at once as there are free slots
// ([engine.QueueBatchPopper]), and hands them to the slots.
const popBlock = 500 * time.Millisecond

// Config tunes a [Worker]. The zero value (or nil) means every default.
type Config struct {
	// ID names the worker: its queue consumer, its registry entry and the
	// worker_id of the runs it executes. Defaults to the engine's
	// [engine.Engine.WorkerID]; it should equal it.
	ID string
	// Concurrency is how many runs the worker executes at once. Defaults to
	// 16. A run whose tasks all ended gives its slot to the next while its
	// finish is written ([engine.ExecuteParams.FinishingFunc]), so the
	// worker holds up to twice as many: Concurrency executing, as many
	// finishing.
	Concurrency int
	// Lease is how long a run's lease lasts without a heartbeat: another
	// worker reclaims the runs of a worker silent for this long. Defaults to
	// 30s.
	Lease time.Duration
	// MaxAttempts is how many workers may take a run: a run reclaimed after
	// that many (so taken over MaxAttempts times) ends FAILED. Defaults to 3.
	MaxAttempts int
	// HeartbeatInterval is how often leases and the registry entry are
	// renewed. Defaults to Lease/3; must be less than Lease.
	HeartbeatInterval time.Duration
	// Logger receives the worker's operational records. Defaults to
	// discarding them.
	Logger *slog.Logger
	// Host is reported in the worker registry. Defaults to the hostname.
	Host string
}

func (c *Config) withDefaults(eng *engine.Engine) (Config, error) {
	var cfg Config
	if c != nil {
		cfg = *c
	}
	if cfg.ID == "" {
		cfg.ID = eng.WorkerID()
	}
	switch {
	case cfg.Concurrency == 0:
		cfg.Concurrency = DefaultConcurrency
	case cfg.Concurrency < 0:
		return cfg, fmt.Errorf("worker config: Concurrency %d: want 1 or more", cfg.Concurrency)
	}
	switch {
	case cfg.Lease == 0:
		cfg.Lease = DefaultLease
	case cfg.Lease < 10*time.Millisecond:
		return cfg, fmt.Errorf("worker config: Lease %s: want at least 10ms", cfg.Lease)
	}
	switch {
	case cfg.MaxAttempts == 0:
		cfg.MaxAttempts = DefaultMaxAttempts
	case cfg.MaxAttempts < 0:
		return cfg, fmt.Errorf("worker config: MaxAttempts %d: want 1 or more", cfg.MaxAttempts)
	}
	switch {
	case cfg.HeartbeatInterval == 0:
		cfg.HeartbeatInterval = cfg.Lease / 3
	case cfg.HeartbeatInterval < 0 || cfg.HeartbeatInterval >= cfg.Lease:
		return cfg, fmt.Errorf("worker config: HeartbeatInterval %s: want more than 0 and less than Lease (%s)", cfg.HeartbeatInterval, cfg.Lease)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Host == "" {
		cfg.Host, _ = os.Hostname()
	}
	return cfg, nil
}

// Worker takes runs from a queue and executes them. Create it with [New],
// then [Worker.Start] and [Worker.Stop] it. Its methods are safe for
// concurrent use.
type Worker struct {
	eng     *engine.Engine
	q       engine.Queue
	reg     engine.WorkerRegistry // nil if the store has none
	tasks   []string              // announced in the worker record
	cfg     Config
	log     *slog.Logger
	started time.Time

	mu       sync.Mutex
	state    int                 // stateNew, stateRunning, stateStopped
	held     map[string]*holding // by lease ID: every lease this worker holds
	stopTake context.CancelFunc  // stops taking runs
	stopAll  context.CancelFunc  // stops heartbeats and the reclaimer
	wg       sync.WaitGroup      // slot goroutines
	rwg      sync.WaitGroup      // the reclaimer and the taker goroutines
	bg       sync.WaitGroup      // the heartbeat goroutine

	reclaimed chan *engine.Lease // reclaimed runs waiting for a slot
	taken     chan *engine.Lease // queued runs taken, waiting for a slot
	freed     chan struct{}      // a held lease was released, or its run is finishing
	// slots holds a token per run executing: at most Concurrency. A run
	// whose finish is being written has given its token back
	// ([engine.ExecuteParams.FinishingFunc]; holding.finishing).
	slots chan struct{}

	// handingBack is set (under mu) when Stop's context ended: a run whose
	// execution registers its stop func after that is handed back at once.
	handingBack bool
	// beforeExecute, if set, is called by a slot before it executes a run
	// (tests widen the race between taking a run and executing it).
	beforeExecute func(*engine.Lease)

	down     atomic.Bool // the store is unavailable (one warning per outage)
	downedAt atomic.Int64
}

// holding is one lease and, once executing, how to hand it back.
type holding struct {
	lease *engine.Lease
	stop  context.CancelCauseFunc // nil until the run executes
	// lost is set when the heartbeat learnt that this worker no longer
	// holds the lease: the run is stopped, never acknowledged nor requeued.
	lost bool
	// settled is set when the store acknowledged the lease as it finished
	// the run here ([engine.ExecuteParams.SettledFunc]).
	settled bool
	// ended is set when the execution returned (the lease is being
	// acknowledged, requeued or released).
	ended bool
	// finishing is set while the run's finish is being written, its slot
	// given to another run.
	finishing bool
}

// finishedHere reports whether h's run is no longer executing because it
// ended here: the heartbeat then finds the lease gone without a takeover.
// w.mu must be held.
func (h *holding) finishedHere() bool {
	return h.ended || h.settled
}

// heartbeatLoser is an optional [engine.Queue] capability (the Redis store
// has it): QueueHeartbeat that also returns the leases workerID no longer
// holds (another worker took the run over), whose runs must stop at once.
type heartbeatLoser interface {
	QueueHeartbeatLost(ctx context.Context, workerID string, leases []*engine.Lease) ([]*engine.Lease, error)
}

// errOwnerLost stops a run whose lease another worker took over. It wraps
// [engine.ErrHandBack] so that the engine stops the run without ending it
// (the new owner goes on with it).
var errOwnerLost = fmt.Errorf("owner lost: another worker took the run over: %w", engine.ErrHandBack)

const (
	stateNew = iota
	stateRunning
	stateStopped
)

// New returns a Worker that executes runs of q with eng. q is normally
// eng's store; if it also implements [engine.WorkerRegistry] the worker
// announces itself there. It returns an error for nil arguments or a bad
// Config, naming the field.
func New(eng *engine.Engine, q engine.Queue, cfg *Config) (*Worker, error) {
	if eng == nil || q == nil {
		return nil, errors.New("worker: engine and queue are required")
	}
	c, err := cfg.withDefaults(eng)
	if err != nil {
		return nil, err
	}
	w := &Worker{
		eng:       eng,
		q:         q,
		cfg:       c,
		log:       c.Logger.With(engine.LogKeyWorker, c.ID),
		held:      make(map[string]*holding),
		reclaimed: make(chan *engine.Lease, c.Concurrency),
		taken:     make(chan *engine.Lease, c.Concurrency),
		freed:     make(chan struct{}, 1),
		slots:     make(chan struct{}, c.Concurrency),
	}
	w.reg, _ = q.(engine.WorkerRegistry)
	if r := eng.Registry(); r != nil {
		for _, d := range r.List() {
			w.tasks = append(w.tasks, d.Name)
		}
	}
	return w, nil
}

// ID returns the worker's ID.
func (w *Worker) ID() string { return w.cfg.ID }

// Start starts the worker's goroutines: the execution slots (twice
// Concurrency: as many runs executing, and as many more whose finish is
// being written), the taker, the heartbeat and the reclaimer. They run
// until [Worker.Stop]; ctx only carries values (its cancellation does not stop the worker: call Stop).
// Start returns an error if the worker was started before.
func (w *Worker) Start(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state != stateNew {
		return errors.New("worker: already started")
	}
	w.state = stateRunning
	w.started = time.Now().UTC()
	// Idle times survive a Redis restart (AOF): a worker started right
	// after an outage would see every live worker's leases as expired. Wait
	// one lease after start, as after an outage, before reclaiming.
	w.downedAt.Store(time.Now().UnixNano())
	base := context.WithoutCancel(ctx)
	takeCtx, stopTake := context.WithCancel(base)
	allCtx, stopAll := context.WithCancel(base)
	w.stopTake, w.stopAll = stopTake, stopAll

	for range 2 * w.cfg.Concurrency {
		w.wg.Go(func() { w.slot(takeCtx, base) })
	}
	w.rwg.Go(func() { w.take(takeCtx, base) })
	w.bg.Go(func() {
		w.heartbeat(allCtx) // announce at once
		w.heartbeatLoop(allCtx)
	})
	w.rwg.Go(func() { w.reclaimLoop(takeCtx) })
	w.log.InfoContext(ctx, "worker started", "concurrency", w.cfg.Concurrency, "lease", w.cfg.Lease.String(), "max_attempts", w.cfg.MaxAttempts)
	return nil
}

// Stop stops the worker gracefully: it takes no new runs, lets the runs it
// executes finish until ctx ends, then stops the rest with
// [engine.ErrHandBack] (they stay RUNNING; their interrupted tasks will run
// again) and requeues them for another worker, as it does with reclaimed
// runs it had not started. It then removes itself from the registry and
// returns when every goroutine has ended. It returns ctx's error if runs had
// to be handed back. Stop on a worker never started, or already stopped,
// does nothing.
func (w *Worker) Stop(ctx context.Context) error {
	w.mu.Lock()
	if w.state != stateRunning {
		w.mu.Unlock()
		return nil
	}
	w.state = stateStopped
	w.stopTake()
	w.mu.Unlock()
	w.log.InfoContext(ctx, "worker stopping: no new runs", "running", len(w.Running()))

	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		w.mu.Lock()
		// A run whose execution has not registered its stop func yet sees
		// the flag as it does, and is handed back without running.
		w.handingBack = true
		n := 0
		for _, h := range w.held {
			if h.stop != nil {
				h.stop(engine.ErrHandBack)
				n++
			}
		}
		w.mu.Unlock()
		// A stop that outlasts its runs is what the hand-back is for: no
		// warning (another worker resumes them).
		w.log.InfoContext(ctx, "worker stopping: handing runs back", "runs", n)
		<-done
	}
	// Reclaimed and taken runs that never got a slot go back too.
	w.rwg.Wait()
	bg := context.WithoutCancel(ctx)
	for {
		select {
		case l := <-w.reclaimed:
			w.requeue(bg, l, 0)
			continue
		case l := <-w.taken:
			w.requeue(bg, l, 0)
			continue
		default:
		}
		break
	}
	w.stopAll()
	w.bg.Wait()
	if w.reg != nil {
		rctx, cancel := context.WithTimeout(bg, 5*time.Second)
		if rerr := w.reg.WorkerRemove(rctx, w.cfg.ID); rerr != nil {
			w.log.WarnContext(ctx, "remove worker from registry", engine.LogKeyError, rerr)
		}
		cancel()
	}
	w.log.InfoContext(ctx, "worker stopped")
	return err
}

// StopTaking makes the worker take no new runs (from the queue, or reclaimed
// from silent workers) while the runs it executes go on: the first step of
// [Worker.Stop], which a process stopping several workers calls on all of
// them before stopping them in parallel. It does nothing on a worker not
// running.
func (w *Worker) StopTaking() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state == stateRunning {
		w.stopTake()
	}
}

// Running returns the IDs of the runs the worker holds (executing, or
// reclaimed and about to execute), sorted.
func (w *Worker) Running() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]string, 0, len(w.held))
	for _, h := range w.held {
		out = append(out, h.lease.RunID)
	}
	slices.Sort(out)
	return out
}

// slot executes runs one after another until takeCtx ends: reclaimed runs
// first, else the next run the taker took from the queue.
func (w *Worker) slot(takeCtx, base context.Context) {
	for {
		var l *engine.Lease
		select {
		case l = <-w.reclaimed:
		default:
			select {
			case l = <-w.reclaimed:
			case l = <-w.taken:
			case <-takeCtx.Done():
				return
			}
		}
		token := false
		if takeCtx.Err() == nil {
			select {
			case w.slots <- struct{}{}:
				token = true
			case <-takeCtx.Done():
			}
		}
		if takeCtx.Err() != nil {
			// Stopping: never start it (reclaimed or taken alike).
			if token {
				<-w.slots
			}
			w.requeue(base, l, startedFence(l))
			return
		}
		if w.beforeExecute != nil {
			w.beforeExecute(l)
		}
		w.execute(base, l)
	}
}

// executing is how many held runs count against Concurrency: every held
// lease but those whose run is finishing (w.mu held).
func (w *Worker) executing() int {
	n := 0
	for _, h := range w.held {
		if !h.finishing {
			n++
		}
	}
	return n
}

// free is how many more runs the worker may take now (w.mu held): slots
// for Concurrency executing, and room for Concurrency finishing.
func (w *Worker) free() int {
	return min(w.cfg.Concurrency-w.executing(), 2*w.cfg.Concurrency-len(w.held))
}

// take takes queued runs for the slots until takeCtx ends: as many at once
// as there are free slots (reclaimed runs waiting for a slot count as held,
// so they go first), blocking while the queue is empty (so a run
// queued for an idle worker starts within milliseconds) or no slot is free.
func (w *Worker) take(takeCtx, base context.Context) {
	batch, _ := w.q.(engine.QueueBatchPopper)
	var bo backoff.Backoff
	for takeCtx.Err() == nil {
		w.mu.Lock()
		free := w.free()
		w.mu.Unlock()
		if free <= 0 {
			select {
			case <-w.freed:
			case <-takeCtx.Done():
			}
			continue
		}
		// Start: a store that can starts the runs as it hands them out,
		// saving each a round trip (the engine skips its RunStart).
		p := &engine.QueuePopParams{WorkerID: w.cfg.ID, Block: popBlock, Start: true}
		var leases []*engine.Lease
		var err error
		if batch != nil {
			leases, err = batch.QueuePopBatch(takeCtx, p, free)
		} else {
			var l *engine.Lease
			if l, err = w.q.QueuePop(takeCtx, p); l != nil {
				leases = []*engine.Lease{l}
			}
		}
		if err != nil {
			if takeCtx.Err() != nil {
				return
			}
			w.storeFailed(takeCtx, "take a run", err)
			bo.Sleep(takeCtx)
			continue
		}
		w.storeOK(takeCtx)
		bo.Reset()
		for _, l := range leases {
			w.hold(l)
			if takeCtx.Err() != nil {
				// Stopping: never start it.
				w.requeue(base, l, startedFence(l))
				continue
			}
			w.taken <- l // never blocks: runs waiting in taken are held, and at most free were taken
		}
	}
}

// hold records l as held (heart-beaten) by this worker.
func (w *Worker) hold(l *engine.Lease) {
	w.mu.Lock()
	w.held[l.ID] = &holding{lease: l}
	w.mu.Unlock()
}

func (w *Worker) release(l *engine.Lease) {
	w.mu.Lock()
	delete(w.held, l.ID)
	w.mu.Unlock()
	w.wake()
}

// wake tells the taker that a slot may be free.
func (w *Worker) wake() {
	select {
	case w.freed <- struct{}{}:
	default:
	}
}

// execute runs one held lease to its end, or hands it back. Its context is
// independent of the caller's cancellation: only Stop (hand back) and the
// store's cancel requests stop a run. The lease goes to the engine in
// [engine.ExecuteParams]: the store settles it as it starts a terminal run
// or finishes the run, so the worker sends no ack of its own.
//
// The caller took a token from w.slots for it; execute gives it back when
// the run's finish goes to the store (FinishingFunc: another run may
// execute while it is written) or when it returns, and takes one again
// before executing the run again after an outage.
func (w *Worker) execute(base context.Context, l *engine.Lease) {
	runCtx, stop := context.WithCancelCause(base)
	defer stop(nil)
	token := true
	defer func() {
		if token {
			<-w.slots
		}
	}()
	finishing := func() {
		if token {
			<-w.slots
			token = false
		}
		w.setFinishing(l, true)
	}
	w.mu.Lock()
	if h := w.held[l.ID]; h != nil {
		h.stop = stop
	}
	handingBack, lost := w.handingBack, w.isLost(l)
	w.mu.Unlock()
	switch {
	case lost:
		// The heartbeat found it taken over while it waited for a slot.
		w.release(l)
		return
	case handingBack:
		// Stop's hand-back ran before the stop func was registered.
		w.requeue(base, l, startedFence(l))
		return
	}

	var bo backoff.Backoff
	started := l.Started // once: an Execute called again starts the run itself
	for {
		if !token {
			// Executed again after an outage during its finish: it counts
			// as executing again (a hand-back meanwhile goes on without).
			select {
			case w.slots <- struct{}{}:
				token = true
				w.setFinishing(l, false)
			case <-runCtx.Done():
			}
		}
		run, err := w.eng.Execute(runCtx, &engine.ExecuteParams{RunID: l.RunID, WorkerID: w.cfg.ID, Lease: l, Started: started,
			Brief: true, SettledFunc: func() { w.settled(l) }, FinishingFunc: finishing})
		started = nil
		if !errors.Is(err, engine.ErrUnavailable) || runCtx.Err() != nil {
			w.ended(l) // not executed again: the switch settles the lease
		}
		fence := 0
		if run != nil {
			fence = run.Attempt
		}
		switch {
		case err == nil, errors.Is(err, engine.ErrConflict), errors.Is(err, engine.ErrNotFound):
			// Finished (here, or already before: a terminal run's entry),
			// or taken over: the store settled the lease (or it is the new
			// owner's).
			w.release(l)
			return
		case errors.Is(err, engine.ErrHandBack):
			w.requeue(base, l, fence)
			return
		case errors.Is(err, engine.ErrUnavailable) && runCtx.Err() == nil:
			// Starting (or finishing) failed while the store is down:
			// keep the lease (heart-beaten) and try again.
			w.storeFailed(base, "execute run", err)
			bo.Sleep(runCtx)
			continue
		case runCtx.Err() != nil && errors.Is(context.Cause(runCtx), engine.ErrHandBack):
			w.requeue(base, l, fence)
			return
		default:
			// Anything else (a broken run hash…): leave the lease to expire,
			// so another worker retries, counting towards MaxAttempts.
			w.log.ErrorContext(base, "execute run", engine.LogKeyRunID, l.RunID, engine.LogKeyError, err)
			w.release(l)
			return
		}
	}
}

// startedFence is the fence of a run the store started as it delivered l
// (engine.Lease.Started), 0 if it did not: what a hand-back of l before it
// was executed passes.
func startedFence(l *engine.Lease) int {
	if l.Started == nil {
		return 0
	}
	return l.Started.Attempt
}

// ack acknowledges l, retrying while the store is unavailable (until the
// worker stops for good: an unacknowledged finished run is dropped when it is
// reclaimed).
func (w *Worker) ack(ctx context.Context, l *engine.Lease) {
	defer w.release(l)
	if w.lost(l) {
		return // another worker's now
	}
	w.retry(ctx, "acknowledge run", func(ctx context.Context) error { return w.q.QueueAck(ctx, l) })
}

// requeue hands l back for another worker; fence is the run's Attempt as
// this worker's execution started it, 0 if it never did.
func (w *Worker) requeue(ctx context.Context, l *engine.Lease, fence int) {
	defer w.release(l)
	if w.lost(l) {
		return // another worker's now
	}
	p := &engine.QueueRequeueParams{Lease: l, RunAttempt: fence}
	w.retry(ctx, "hand run back", func(ctx context.Context) error { return w.q.QueueRequeue(ctx, p) })
}

// retry calls fn until it succeeds, fails with an error other than
// ErrUnavailable (logged), or a minute passes.
func (w *Worker) retry(ctx context.Context, what string, fn func(context.Context) error) {
	var bo backoff.Backoff
	deadline := time.Now().Add(time.Minute)
	for {
		err := fn(ctx)
		if err == nil {
			w.storeOK(ctx)
			return
		}
		if !errors.Is(err, engine.ErrUnavailable) || time.Now().After(deadline) {
			w.log.WarnContext(ctx, what, engine.LogKeyError, err)
			return
		}
		w.storeFailed(ctx, what, err)
		bo.Sleep(ctx)
	}
}

// heartbeatLoop renews the held leases and the registry entry every
// HeartbeatInterval until ctx ends.
func (w *Worker) heartbeatLoop(ctx context.Context) {
	t := time.NewTicker(w.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.heartbeat(ctx)
		}
	}
}

func (w *Worker) heartbeat(ctx context.Context) {
	w.mu.Lock()
	leases := make([]*engine.Lease, 0, len(w.held))
	running := make([]string, 0, len(w.held))
	for _, h := range w.held {
		leases = append(leases, h.lease)
		running = append(running, h.lease.RunID)
	}
	w.mu.Unlock()
	slices.Sort(running)
	hctx, cancel := context.WithTimeout(ctx, w.cfg.HeartbeatInterval)
	defer cancel()
	if hl, ok := w.q.(heartbeatLoser); ok {
		lost, err := hl.QueueHeartbeatLost(hctx, w.cfg.ID, leases)
		if err != nil {
			w.storeFailed(ctx, "renew leases", err)
			return
		}
		w.loseLeases(ctx, lost)
	} else if err := w.q.QueueHeartbeat(hctx, w.cfg.ID, leases); err != nil {
		w.storeFailed(ctx, "renew leases", err)
		return
	}
	if w.reg != nil {
		info := &engine.WorkerInfo{
			ID: w.cfg.ID, Host: w.cfg.Host, StartedAt: w.started, LastHeartbeat: time.Now().UTC(),
			Running: running, Concurrency: w.cfg.Concurrency, Tasks: w.tasks,
		}
		if err := w.reg.WorkerHeartbeat(hctx, info, w.cfg.Lease); err != nil {
			w.storeFailed(ctx, "worker heartbeat", err)
			return
		}
	}
	w.storeOK(ctx)
}

// loseLeases stops the runs of leases another worker took over, with
// errOwnerLost: they are released without an ack or a requeue. A run not
// executing yet is dropped as its slot takes it.
func (w *Worker) loseLeases(ctx context.Context, lost []*engine.Lease) {
	for _, l := range lost {
		w.mu.Lock()
		h := w.held[l.ID]
		if h == nil || h.lease != l && *h.lease != *l {
			w.mu.Unlock()
			continue // finished meanwhile
		}
		h.lost = true
		if h.finishedHere() {
			// The run finished here while the heartbeat ran (the store
			// acknowledged its entry as it finished it), or its execution
			// had already returned: nothing to stop, and no takeover to
			// warn about. lost still keeps the lease from being
			// acknowledged or requeued again.
			w.mu.Unlock()
			w.log.DebugContext(ctx, "lease gone after the run ended here", engine.LogKeyRunID, l.RunID)
			continue
		}
		stop := h.stop
		w.mu.Unlock()
		w.log.WarnContext(ctx, "run taken over by another worker: stopping it here", engine.LogKeyRunID, l.RunID)
		if stop != nil {
			stop(errOwnerLost)
		}
	}
}

// setFinishing marks l's run as finishing (its slot given back) or not,
// and wakes the taker when it frees a slot.
func (w *Worker) setFinishing(l *engine.Lease, on bool) {
	w.mu.Lock()
	if h := w.held[l.ID]; h != nil && h.lease == l {
		h.finishing = on
	}
	w.mu.Unlock()
	if on {
		w.wake()
	}
}

// settled notes that the store settled l as it finished the run here.
func (w *Worker) settled(l *engine.Lease) {
	w.mu.Lock()
	if h := w.held[l.ID]; h != nil && h.lease == l {
		h.settled = true
	}
	w.mu.Unlock()
}

// ended notes that the execution of l returned.
func (w *Worker) ended(l *engine.Lease) {
	w.mu.Lock()
	if h := w.held[l.ID]; h != nil && h.lease == l {
		h.ended = true
	}
	w.mu.Unlock()
}

// isLost reports whether l's lease was lost; w.mu must be held.
func (w *Worker) isLost(l *engine.Lease) bool {
	h := w.held[l.ID]
	return h != nil && h.lease == l && h.lost
}

// lost reports whether l's lease was lost.
func (w *Worker) lost(l *engine.Lease) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.isLost(l)
}

// reclaimLoop reclaims runs of silent workers every Lease/2 until ctx ends.
// The first reclaim comes one Lease after Start (see [Worker.Start]).
func (w *Worker) reclaimLoop(ctx context.Context) {
	t := time.NewTicker(w.cfg.Lease / 2)
	defer t.Stop()
	for {
		w.reclaim(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *Worker) reclaim(ctx context.Context) {
	// After an outage every lease looks idle: give live workers a lease's
	// time to renew theirs before taking anything over.
	if at := w.downedAt.Load(); at != 0 && time.Since(time.Unix(0, at)) < w.cfg.Lease {
		return
	}
	// As many as there are free slots, and at least one even when none is
	// free: reclaimed runs take the next freed slot before new runs (the
	// taker counts them as held), so a backlog never starves the runs of a
	// dead worker. Only this goroutine sends to reclaimed, so the count
	// below keeps the sends from blocking.
	w.mu.Lock()
	count := max(w.free(), 1)
	w.mu.Unlock()
	count = min(count, cap(w.reclaimed)-len(w.reclaimed))
	if count <= 0 {
		return
	}
	leases, err := w.q.QueueReclaim(ctx, &engine.QueueReclaimParams{WorkerID: w.cfg.ID, MinIdle: w.cfg.Lease, Count: count})
	if err != nil {
		if ctx.Err() == nil {
			w.storeFailed(ctx, "reclaim runs", err)
		}
		return
	}
	w.storeOK(ctx)
	for _, l := range leases {
		takeovers := l.Deliveries - 1
		if l.Deliveries > w.cfg.MaxAttempts {
			msg := fmt.Sprintf("run taken over %d times (max_attempts %d): its workers kept stopping", takeovers, w.cfg.MaxAttempts)
			if _, err := w.eng.Fail(context.WithoutCancel(ctx), l.RunID, msg); err != nil && !errors.Is(err, engine.ErrConflict) && !errors.Is(err, engine.ErrNotFound) {
				w.log.WarnContext(ctx, "fail run", engine.LogKeyRunID, l.RunID, engine.LogKeyError, err)
				continue // keep it pending: reclaimed again later
			}
			w.hold(l)
			w.ack(context.WithoutCancel(ctx), l)
			continue
		}
		w.log.InfoContext(ctx, "run taken over", engine.LogKeyRunID, l.RunID, "takeovers", takeovers)
		w.hold(l)
		w.reclaimed <- l // never blocks: count left room for it
	}
}

// storeFailed logs the first failure of an outage at WARN (and any other
// failure as it comes).
func (w *Worker) storeFailed(ctx context.Context, what string, err error) {
	if !errors.Is(err, engine.ErrUnavailable) {
		w.log.WarnContext(ctx, what, engine.LogKeyError, err)
		return
	}
	w.downedAt.Store(time.Now().UnixNano())
	if w.down.CompareAndSwap(false, true) {
		w.log.WarnContext(ctx, "store unavailable: backing off until it returns", "during", what, engine.LogKeyError, err)
	}
}

// storeOK ends an outage, logging it once at INFO.
func (w *Worker) storeOK(ctx context.Context) {
	if w.down.CompareAndSwap(true, false) {
		w.log.InfoContext(ctx, "store available again")
	}
}
