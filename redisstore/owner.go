package redisstore

import (
	"context"
	"strconv"
	"sync"

	"github.com/pyoco/pyoco/engine"
)

// maxOwned bounds the deliveries a Store remembers; past it the oldest
// half is forgotten (their later writes go unfenced, as before fencing).
// A worker settles every delivery it starts (finish, ack or hand-back),
// so only leases dropped without any of those accumulate.
const maxOwned = 100_000

// ownerKey identifies one delivery of a run: a reclaimed queue entry keeps
// its ID, but its delivery count grows, so two workers of one process that
// held the same entry one after the other have different keys.
type ownerKey struct {
	run, entry string
	deliveries int
}

func keyOf(l *engine.Lease) ownerKey {
	return ownerKey{run: l.RunID, entry: l.ID, deliveries: l.Deliveries}
}

// owners remembers, per delivery this Store started ([Store.RunStart] with
// the lease in its context), the attempt number start.lua returned: the
// fence the delivery's later writes carry (see task_update.lua). A write
// whose fence differs from the run's stored attempt is refused with
// "owner lost" ([engine.ErrConflict]): another worker took the run over.
type owners struct {
	mu  sync.Mutex
	m   map[ownerKey]ownedRun
	seq uint64
}

type ownedRun struct {
	attempt string
	seq     uint64 // insertion order, for trimming
}

// set records attempt as l's fence.
func (o *owners) set(l *engine.Lease, attempt int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m = make(map[ownerKey]ownedRun)
	}
	if len(o.m) >= maxOwned {
		o.trim()
	}
	o.seq++
	o.m[keyOf(l)] = ownedRun{attempt: strconv.Itoa(attempt), seq: o.seq}
}

// trim forgets the oldest half of the entries (o.mu held).
func (o *owners) trim() {
	cut := o.seq - uint64(len(o.m)/2)
	for k, v := range o.m {
		if v.seq <= cut {
			delete(o.m, k)
		}
	}
}

// get returns l's fence, or "" (no check) if l is nil or unknown.
func (o *owners) get(l *engine.Lease) string {
	if l == nil {
		return ""
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.m[keyOf(l)].attempt
}

// forget drops l's fence (its delivery is settled).
func (o *owners) forget(l *engine.Lease) {
	if l == nil {
		return
	}
	o.mu.Lock()
	delete(o.m, keyOf(l))
	o.mu.Unlock()
}

// runLease returns the lease ctx carries if it delivered runID, else nil.
func runLease(ctx context.Context, runID string) *engine.Lease {
	if l := engine.LeaseFromContext(ctx); l != nil && l.RunID == runID {
		return l
	}
	return nil
}

// fence returns the fence of the delivery of runID that ctx carries, or "".
func (s *Store) fence(ctx context.Context, runID string) string {
	return s.owned.get(runLease(ctx, runID))
}
