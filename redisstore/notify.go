package redisstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pyoco/pyoco/engine"
)

// cancelPollInterval is how often the Store's cancel hub also reads the
// status of every run it has waiters for (one pipelined round trip), in
// case a pub/sub message was lost (a reconnect drops the messages published
// meanwhile).
const cancelPollInterval = time.Second

// cancelLinger is how long the hub keeps its subscription after its last
// waiter left, so a worker running one run after another does not
// resubscribe for each.
const cancelLinger = 200 * time.Millisecond

// freshFor is how long the hub remembers a run this Store started, and a
// cancel message of a run without waiters (see [cancelHub.started]).
const freshFor = 10 * time.Second

// subscribeTimeout bounds the wait for a SUBSCRIBE confirmation.
const subscribeTimeout = 5 * time.Second

// subscription is one attempt of the hub to subscribe: ready is closed when
// it is confirmed (err nil) or failed.
type subscription struct {
	ready chan struct{}
	err   error
}

// RunCancelNotify returns a channel that is closed when cancellation of the
// run is requested ([Store.RunCancel] from any process sharing the Redis), or
// when ctx ends. It reads the run's status once, so a cancel requested
// before the call is not missed: if the run is already CANCELLING or
// CANCELLED the channel is closed at once, as it is when ctx has already
// ended. It returns an error wrapping [engine.ErrNotFound] if the run is
// unknown.
//
// All waiters of a Store share one pub/sub subscription to the namespace's
// cancel channel (go-redis re-subscribes after a connection loss) and one
// goroutine, which also re-reads the status of every waited-for run once a
// second in one pipelined round trip, so a message lost while the
// connection was down is caught within a second too. The subscription and
// the goroutine end shortly after the last waiter's channel closes; the
// Store still needs no Close.
func (s *Store) RunCancelNotify(ctx context.Context, runID string) (<-chan struct{}, error) {
	if ctx.Err() != nil {
		// Nothing to wait for; still report an unknown run.
		if _, err := s.cancelRequested(context.WithoutCancel(ctx), runID); err != nil {
			return nil, fmt.Errorf("notify cancel of run %s: %w", runID, err)
		}
		ch := make(chan struct{})
		close(ch)
		return ch, nil
	}
	// Register first and wait until the hub's subscription is live (at
	// once unless it is just starting), then read the status: a cancel
	// published in between reaches the waiter through the hub.
	w, sub, fresh := s.hub.add(s, runID)
	if fresh {
		// This Store started the run after the subscription was live: any
		// cancel since then reached the hub, which closed w if so.
		stop := context.AfterFunc(ctx, func() {
			s.hub.remove(w)
			w.close()
		})
		w.setStop(stop)
		return w.ch, nil
	}
	var err error
	select {
	case <-sub.ready:
		err = sub.err
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		s.hub.remove(w)
		w.close()
		return nil, fmt.Errorf("notify cancel of run %s: subscribe: %w", runID, err)
	}
	requested, err := s.cancelRequested(ctx, runID)
	if err != nil {
		s.hub.remove(w)
		w.close()
		return nil, fmt.Errorf("notify cancel of run %s: %w", runID, err)
	}
	if requested {
		s.hub.remove(w)
		w.close()
		return w.ch, nil
	}
	stop := context.AfterFunc(ctx, func() {
		s.hub.remove(w)
		w.close()
	})
	w.setStop(stop)
	return w.ch, nil
}

// cancelRequested reports whether the run is CANCELLING or CANCELLED; an
// unknown run is an error wrapping [engine.ErrNotFound].
func (s *Store) cancelRequested(ctx context.Context, runID string) (bool, error) {
	st, err := s.client.HGet(ctx, s.part(runID).run(runID), fieldStatus).Result()
	if err != nil {
		return false, interpretError(err)
	}
	return cancelStatus(st), nil
}

func cancelStatus(st string) bool {
	switch engine.RunStatus(st) {
	case engine.RunCancelling, engine.RunCancelled:
		return true
	}
	return false
}

// cancelWaiter is one RunCancelNotify channel.
type cancelWaiter struct {
	runID string
	ch    chan struct{}
	once  sync.Once
	mu    sync.Mutex
	stop  func() bool // stops the context.AfterFunc; nil until set
	done  bool
}

// close closes the channel once and stops the context watch.
func (w *cancelWaiter) close() {
	w.once.Do(func() {
		close(w.ch)
		w.mu.Lock()
		w.done = true
		stop := w.stop
		w.mu.Unlock()
		if stop != nil {
			stop()
		}
	})
}

func (w *cancelWaiter) setStop(stop func() bool) {
	w.mu.Lock()
	done := w.done
	if !done {
		w.stop = stop
	}
	w.mu.Unlock()
	if done {
		stop()
	}
}

// cancelHub fans the namespace's cancel channel out to a Store's waiters.
// Its goroutine runs while there are waiters (and cancelLinger longer).
type cancelHub struct {
	mu      sync.Mutex
	waiters map[string]map[*cancelWaiter]struct{} // by run ID
	n       int                                   // number of waiters
	running bool                                  // the goroutine is alive
	kick    chan struct{}                         // waiters went to 0
	sub     *subscription                         // the current attempt

	// While the subscription is live (since liveSince), fresh holds the
	// runs this Store started since then (by start time) and recent the
	// runs whose cancel message came (by arrival): a waiter registered for a fresh run needs no status read,
	// as its cancel either came (recent) or will come. Both are pruned
	// after freshFor and cleared when the hub stops.
	liveSince time.Time
	fresh     map[string]time.Time
	recent    map[string]time.Time
}

// started records that the Store started runID (RunStart sent at t0 and
// returned it RUNNING), if the subscription was live before t0.
func (h *cancelHub) started(runID string, t0 time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.running && !h.liveSince.IsZero() && h.liveSince.Before(t0) {
		h.fresh[runID] = t0
	}
}

// live marks the subscription confirmed.
func (h *cancelHub) live() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.liveSince = time.Now()
	h.fresh = make(map[string]time.Time)
	h.recent = make(map[string]time.Time)
}

// stopped forgets the live state; the caller holds h.mu.
func (h *cancelHub) stoppedLocked() {
	h.running = false
	h.liveSince = time.Time{}
	h.fresh, h.recent = nil, nil
}

// add registers a waiter for runID, starting the hub's goroutine if needed,
// and returns it with the hub's current subscription attempt and whether
// the run is fresh (see [cancelHub.started]); the waiter of a fresh run
// whose cancel message already came is returned closed.
func (h *cancelHub) add(s *Store, runID string) (*cancelWaiter, *subscription, bool) {
	w := &cancelWaiter{runID: runID, ch: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	fresh := false
	if _, ok := h.fresh[runID]; ok {
		delete(h.fresh, runID)
		fresh = true
		if _, ok := h.recent[runID]; ok {
			delete(h.recent, runID)
			w.close()
			return w, h.sub, true
		}
	}
	if h.waiters == nil {
		h.waiters = make(map[string]map[*cancelWaiter]struct{})
		h.kick = make(chan struct{}, 1)
	}
	m := h.waiters[runID]
	if m == nil {
		m = make(map[*cancelWaiter]struct{})
		h.waiters[runID] = m
	}
	m[w] = struct{}{}
	h.n++
	if !h.running {
		h.running = true
		h.sub = &subscription{ready: make(chan struct{})}
		go h.run(s)
	}
	return w, h.sub, fresh
}

// remove unregisters w (if still registered).
func (h *cancelHub) remove(w *cancelWaiter) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.waiters[w.runID]
	if _, ok := m[w]; !ok {
		return
	}
	delete(m, w)
	if len(m) == 0 {
		delete(h.waiters, w.runID)
	}
	h.n--
	if h.n == 0 {
		select {
		case h.kick <- struct{}{}:
		default:
		}
	}
}

// fire closes and unregisters every waiter of runID.
func (h *cancelHub) fire(runID string) {
	h.mu.Lock()
	m := h.waiters[runID]
	if h.recent != nil {
		h.recent[runID] = time.Now()
	}
	delete(h.waiters, runID)
	h.n -= len(m)
	if h.n == 0 && len(m) > 0 {
		select {
		case h.kick <- struct{}{}:
		default:
		}
	}
	h.mu.Unlock()
	for w := range m {
		w.close()
	}
}

// prune forgets fresh and recent entries older than freshFor.
func (h *cancelHub) prune() {
	h.mu.Lock()
	defer h.mu.Unlock()
	old := time.Now().Add(-freshFor)
	for _, m := range []map[string]time.Time{h.fresh, h.recent} {
		for id, t := range m {
			if t.Before(old) {
				delete(m, id)
			}
		}
	}
}

// runIDs returns the runs that have waiters.
func (h *cancelHub) runIDs() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.waiters))
	for id := range h.waiters {
		out = append(out, id)
	}
	return out
}

// run is the hub's goroutine: it subscribes (retrying every
// cancelPollInterval while that fails), then serves; it ends cancelLinger
// after the last waiter left.
func (h *cancelHub) run(s *Store) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for {
		h.mu.Lock()
		sub := h.sub
		h.mu.Unlock()
		ps := s.client.Subscribe(ctx, s.keys.cancelChannel())
		rctx, rcancel := context.WithTimeout(ctx, subscribeTimeout)
		_, err := ps.Receive(rctx)
		rcancel()
		if err == nil {
			h.live()
			close(sub.ready)
			h.serve(ctx, s, ps)
			_ = ps.Close()
			return
		}
		_ = ps.Close()
		sub.err = interpretError(err)
		close(sub.ready)
		h.mu.Lock()
		h.sub = &subscription{ready: make(chan struct{})}
		h.mu.Unlock()
		t := time.NewTimer(cancelPollInterval)
		select {
		case <-t.C:
		case <-h.kick:
			t.Stop()
		}
		h.mu.Lock()
		if h.n == 0 {
			h.stoppedLocked()
			h.mu.Unlock()
			return
		}
		h.mu.Unlock()
	}
}

// serve fans the subscription's messages out, checks the waited-for runs'
// statuses every cancelPollInterval, and returns cancelLinger after the last
// waiter left. go-redis re-subscribes after a connection loss.
func (h *cancelHub) serve(ctx context.Context, s *Store, ps *redis.PubSub) {
	msgs := ps.Channel(redis.WithChannelSize(1024))
	tick := time.NewTicker(cancelPollInterval)
	defer tick.Stop()
	var idle <-chan time.Time
	var idleTimer *time.Timer
	defer func() {
		if idleTimer != nil {
			idleTimer.Stop()
		}
	}()
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				msgs = nil // closed under us: keep checking statuses
				continue
			}
			h.fire(m.Payload)
		case <-tick.C:
			h.check(ctx, s)
		case <-h.kick:
			if idleTimer == nil {
				idleTimer = time.NewTimer(cancelLinger)
			} else {
				idleTimer.Reset(cancelLinger)
			}
			idle = idleTimer.C
		case <-idle:
			idle = nil
			h.mu.Lock()
			if h.n == 0 {
				h.stoppedLocked()
				h.mu.Unlock()
				return
			}
			h.mu.Unlock()
		}
	}
}

// check reads the status of every waited-for run in one pipeline and fires
// those whose cancellation was requested. Errors (Redis down) and vanished
// runs are left for the next check.
func (h *cancelHub) check(ctx context.Context, s *Store) {
	h.prune()
	ids := h.runIDs()
	if len(ids) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, cancelPollInterval)
	defer cancel()
	cmds := make([]*redis.StringCmd, len(ids))
	_, _ = s.client.Pipelined(cctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGet(cctx, s.part(id).run(id), fieldStatus)
		}
		return nil
	})
	for i, c := range cmds {
		if st, err := c.Result(); err == nil && cancelStatus(st) {
			h.fire(ids[i])
		}
	}
}
