package api

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// coalesceTimeout bounds a shared read: it runs detached from the request
// that leads it, since other requests wait for its answer.
const coalesceTimeout = 30 * time.Second

// coalescer makes concurrent identical reads (GET /runs with the same
// filters, GET /runs/{run_id} of the same run) share one store read and one
// JSON encoding, so that many clients polling the same view cost about what
// one does.
//
// Unlike a plain single flight, a request never joins a read that has
// already started: it joins the next one, which starts when the read in
// progress ends. So every answer comes from a store read that began after
// the request arrived, and a client reads its own writes (a run it just
// submitted is in the list it asks for next). A request waits at most for
// the end of the read in progress plus its own.
type coalescer struct {
	mu   sync.Mutex
	keys map[string]*coalesceKey
}

// coalesceKey is the state of one distinct read.
type coalesceKey struct {
	running *flight // started: no one joins it any more
	pending *flight // waiting for running to end: arrivals join it
}

// flight is one shared read and its answer.
type flight struct {
	done chan struct{} // closed when body and err are set
	body []byte
	err  error
	// joined counts the calls that joined it (its leader excluded).
	joined int
}

func newCoalescer() *coalescer { return &coalescer{keys: make(map[string]*coalesceKey)} }

// do returns read's answer for key, from a read that starts after this call
// began, shared with the concurrent calls of the same key. read gets a
// context without the caller's cancellation (other callers may wait for its
// answer), bounded by coalesceTimeout. A caller whose ctx ends stops
// waiting with ctx's error.
func (c *coalescer) do(ctx context.Context, key string, read func(context.Context) ([]byte, error)) ([]byte, error) {
	c.mu.Lock()
	k := c.keys[key]
	if k == nil {
		k = &coalesceKey{}
		c.keys[key] = k
	}
	if f := k.pending; f != nil {
		f.joined++
		c.mu.Unlock()
		select {
		case <-f.done:
			return f.body, f.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f := &flight{done: make(chan struct{})}
	prev := k.running
	k.pending = f
	c.mu.Unlock()

	// This call leads f: it waits for the read in progress, if any, then
	// starts f (closing it to joiners) and runs it.
	if prev != nil {
		<-prev.done
	}
	c.mu.Lock()
	k.pending, k.running = nil, f
	c.mu.Unlock()
	defer func() {
		if p := recover(); p != nil {
			f.body, f.err = nil, fmt.Errorf("api: shared read panicked: %v", p)
			c.finish(key, k, f)
			panic(p)
		}
		c.finish(key, k, f)
	}()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), coalesceTimeout)
	defer cancel()
	f.body, f.err = read(rctx)
	return f.body, f.err
}

// finish ends f, the running read of k, and forgets k when idle.
func (c *coalescer) finish(key string, k *coalesceKey, f *flight) {
	c.mu.Lock()
	k.running = nil
	if k.pending == nil {
		delete(c.keys, key)
	}
	c.mu.Unlock()
	close(f.done)
}
