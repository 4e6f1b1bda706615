package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pyoco/pyoco/engine"
)

// With several partitions each has its own queue stream, in its own slot.
// Redis Cluster refuses an XREADGROUP over streams of different slots (even
// on one node), so a worker reads them one by one: first without blocking,
// from a partition that rotates per call, until it has its free slots'
// worth; when every partition is empty it blocks on all of them at once,
// one read per partition in flight, and returns as soon as one delivers.
// Entries that another blocked read delivers after the call returned
// (several partitions got runs during one wait) are this consumer's: they
// are kept and handed out first by its next call. A call whose Block
// passes first waits for its reads to end and returns what they delivered;
// one whose ctx ended, or a consumer that got runs and never calls again,
// leaves such entries held, reclaimed after a lease like those of a
// stopped worker.

// popStates holds the QueuePopBatch state of each consumer of a Store.
type popStates struct {
	mu sync.Mutex
	m  map[string]*popState
	// reclaimNext rotates the partition a QueueReclaim over several
	// starts with, so no partition's idle entries wait behind another's.
	reclaimNext atomic.Uint32
}

// popState is one consumer's: leases delivered but not yet handed out,
// which partitions have a blocked read in flight, and where the next
// non-blocking pass starts.
type popState struct {
	mu       sync.Mutex
	buf      []*engine.Lease
	inflight []bool
	wake     chan struct{} // a blocked read finished (capacity 1)
	next     int
}

func (ps *popStates) get(consumer string, n int) *popState {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.m == nil {
		ps.m = map[string]*popState{}
	}
	st := ps.m[consumer]
	if st == nil {
		st = &popState{inflight: make([]bool, n), wake: make(chan struct{}, 1)}
		ps.m[consumer] = st
	}
	return st
}

// take hands out up to n buffered leases.
func (st *popState) take(n int) []*engine.Lease {
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.buf) == 0 {
		return nil
	}
	n = min(n, len(st.buf))
	out := st.buf[:n:n]
	st.buf = st.buf[n:]
	return out
}

// waitIdle waits until no blocked read of the consumer is in flight
// (each ends within its block, at most maxBlockChunk).
func (st *popState) waitIdle() {
	for {
		st.mu.Lock()
		busy := slices.Contains(st.inflight, true)
		st.mu.Unlock()
		if !busy {
			return
		}
		<-st.wake
	}
}

// popPartitions is QueuePopBatch over several partitions.
func (s *Store) popPartitions(ctx context.Context, p *engine.QueuePopParams, n int) ([]*engine.Lease, error) {
	st := s.pops.get(p.WorkerID, len(s.parts))
	var deadline time.Time
	if p.Block > 0 {
		deadline = time.Now().Add(p.Block)
	}
	for {
		if out := st.take(n); len(out) > 0 {
			return out, nil
		}
		if err := ctx.Err(); err != nil {
			st.waitIdle()
			return nil, err
		}
		chunk := maxBlockChunk
		if !deadline.IsZero() {
			left := time.Until(deadline)
			if left <= 0 {
				// The reads this call started end by now: what they
				// delivered is returned, not stranded.
				st.waitIdle()
				return st.take(n), nil
			}
			chunk = max(min(chunk, left), time.Millisecond)
		}
		out, err := s.popNow(ctx, st, p, n)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("pop queue: %w", err)
		}
		if len(out) > 0 {
			return out, nil
		}
		s.popBlocked(ctx, st, p.WorkerID, n, chunk)
		t := time.NewTimer(chunk)
		select {
		case <-st.wake:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
}

// popNow reads the partitions' queues without blocking, from the rotating
// start, until it has n leases or every partition was read once; with
// p.Start each read also starts its runs (queue_take.lua).
func (s *Store) popNow(ctx context.Context, st *popState, p *engine.QueuePopParams, n int) ([]*engine.Lease, error) {
	st.mu.Lock()
	start := st.next
	st.next = (st.next + 1) % len(s.parts)
	st.mu.Unlock()
	var out []*engine.Lease
	for i := range s.parts {
		k := (start + i) % len(s.parts)
		var ls []*engine.Lease
		var err error
		if p.Start {
			if ls, err = s.takeStarted(ctx, k, p.WorkerID, n-len(out)); errors.Is(err, errNoGroup) {
				err = nil // made by the next read
			}
		} else {
			ls, err = s.readPartition(ctx, k, p.WorkerID, n-len(out), -1)
		}
		if err != nil {
			return out, err
		}
		out = append(out, ls...)
		if len(out) >= n {
			break
		}
	}
	return out, nil
}

// popBlocked starts a blocking read of up to n entries on every partition
// that has none in flight for the consumer; each delivers into st.buf and
// signals st.wake. The reads outlive the call by at most block (they are
// not cancelled with ctx: an entry Redis delivered must reach the buffer).
func (s *Store) popBlocked(ctx context.Context, st *popState, consumer string, n int, block time.Duration) {
	bg := context.WithoutCancel(ctx)
	st.mu.Lock()
	defer st.mu.Unlock()
	for k := range s.parts {
		if st.inflight[k] {
			continue
		}
		st.inflight[k] = true
		go func() {
			ls, _ := s.readPartition(bg, k, consumer, n, block) // errors show in the next non-blocking pass
			st.mu.Lock()
			st.inflight[k] = false
			st.buf = append(st.buf, ls...)
			st.mu.Unlock()
			select {
			case st.wake <- struct{}{}:
			default:
			}
		}()
	}
}

// readPartition is one XREADGROUP of up to n entries of partition k's
// queue for consumer, blocking up to block (-1: not at all).
func (s *Store) readPartition(ctx context.Context, k int, consumer string, n int, block time.Duration) ([]*engine.Lease, error) {
	if err := s.ensureGroup(ctx, k); err != nil {
		return nil, err
	}
	res, err := s.client.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: queueGroup, Consumer: consumer,
		Streams: []string{s.parts[k].queue(), ">"},
		Count:   int64(n), Block: block,
	}).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, nil
	case isNoGroup(err):
		s.partGroup[k].Store(false)
		return nil, nil
	case err != nil:
		return nil, interpretError(err)
	}
	var out []*engine.Lease
	for _, xs := range res {
		for _, m := range xs.Messages {
			runID, _ := m.Values["run_id"].(string)
			out = append(out, &engine.Lease{RunID: runID, ID: s.partID(k, m.ID), Deliveries: 1})
		}
	}
	return out, nil
}

// reclaimPartitions is QueueReclaim over several partitions: each in
// turn, from a rotating start, until count entries are claimed.
func (s *Store) reclaimPartitions(ctx context.Context, p *engine.QueueReclaimParams, count int) ([]*engine.Lease, error) {
	start := int(s.pops.reclaimNext.Add(1))
	var out []*engine.Lease
	for i := range s.parts {
		k := (start + i) % len(s.parts)
		ls, err := s.reclaimPartition(ctx, k, p, count-len(out))
		if err != nil {
			return out, err
		}
		out = append(out, ls...)
		if len(out) >= count {
			break
		}
	}
	return out, nil
}

// leasesByPartition groups leases by their run's partition, in order.
func (s *Store) leasesByPartition(leases []*engine.Lease) map[int][]*engine.Lease {
	out := map[int][]*engine.Lease{}
	for _, l := range leases {
		k := partitionOf(l.RunID, len(s.parts))
		out[k] = append(out[k], l)
	}
	return out
}
