package redisstore

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pyoco/pyoco/engine"
)

// queueGroup is the consumer group of the queue stream; each worker is a
// consumer named by its worker ID.
const queueGroup = "workers"

// maxBlockChunk bounds one XREADGROUP BLOCK, so a QueuePop notices its
// context ending (go-redis does not interrupt a blocked read) within it.
const maxBlockChunk = time.Second

// The queue's Lua scripts (see each file's header).
var (
	queueAckScript           = loadScript("queue_ack")
	queueReclaimScript       = loadScript("queue_reclaim")
	queueHeartbeatScript     = loadScript("queue_heartbeat")
	queueHeartbeatLostScript = loadScript("queue_heartbeat_lost")
	queueRequeueScript       = loadScript("queue_requeue")
	queueWorkerBeatScript    = loadScript("queue_worker_beat")
	queueWorkerListScript    = loadScript("queue_worker_list")
	queueWorkerRemoveScript  = loadScript("queue_worker_remove")
)

// ensureGroup creates the queue's consumer group (and the stream) unless it
// is known to exist. The group starts at ID 0, so runs queued before any
// worker ever ran are delivered too; BUSYGROUP (it exists) is fine.
func (s *Store) ensureGroup(ctx context.Context, k int) error {
	if s.partGroup[k].Load() {
		return nil
	}
	err := s.client.XGroupCreateMkStream(ctx, s.parts[k].queue(), queueGroup, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("create queue group: %w", interpretError(err))
	}
	s.partGroup[k].Store(true)
	return nil
}

// isNoGroup reports whether err says the group (or stream) is missing, as
// after a Redis restart without persistence.
func isNoGroup(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOGROUP")
}

// QueuePop reads the next queued run for p.WorkerID with XREADGROUP BLOCK
// (so an idle worker gets a new run within milliseconds, with no polling),
// in chunks of at most a second so that ctx ending is noticed. It returns
// (nil, nil) when p.Block passes, ctx's error when ctx ends. The lease's ID
// is the stream entry ID; Deliveries is 1. See [Store.QueuePopBatch].
func (s *Store) QueuePop(ctx context.Context, p *engine.QueuePopParams) (*engine.Lease, error) {
	ls, err := s.QueuePopBatch(ctx, p, 1)
	if len(ls) == 0 {
		return nil, err
	}
	return ls[0], err
}

// QueuePopBatch is [Store.QueuePop] taking up to n runs with one
// XREADGROUP COUNT n. It returns at least one lease, or none when p.Block
// passes (nil error) or ctx ends (ctx's error).
//
// Entries are not checked here: the scripts that end a PENDING run (a
// cancel, a finish) delete its entry, so it is never delivered; a run that
// ends in the instant between the read and its start is refused by
// [Store.RunStart] (ErrConflict), which acknowledges the entry when the
// lease comes in its params. A worker that does not pass it acknowledges
// the lease with [Store.QueueAck].
func (s *Store) QueuePopBatch(ctx context.Context, p *engine.QueuePopParams, n int) ([]*engine.Lease, error) {
	if n < 1 {
		n = 1
	}
	if err := s.ready(ctx); err != nil {
		return nil, fmt.Errorf("pop queue: %w", err)
	}
	if len(s.parts) > 1 {
		return s.popPartitions(ctx, p, n)
	}
	if p.Start {
		out, err := s.takeStarted(ctx, 0, p.WorkerID, n)
		switch {
		case err != nil && !errors.Is(err, errNoGroup):
			return nil, fmt.Errorf("pop queue: %w", err)
		case len(out) > 0:
			return out, nil
		}
	}
	var deadline time.Time
	if p.Block > 0 {
		deadline = time.Now().Add(p.Block)
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		chunk := maxBlockChunk
		if !deadline.IsZero() {
			left := time.Until(deadline)
			if left <= 0 {
				return nil, nil
			}
			chunk = max(min(chunk, left), time.Millisecond)
		}
		if err := s.ensureGroup(ctx, 0); err != nil {
			return nil, fmt.Errorf("pop queue: %w", err)
		}
		res, err := s.client.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: queueGroup, Consumer: p.WorkerID,
			Streams: []string{s.parts[0].queue(), ">"},
			Count:   int64(n), Block: chunk,
		}).Result()
		switch {
		case errors.Is(err, redis.Nil):
			continue
		case isNoGroup(err):
			s.partGroup[0].Store(false)
			continue
		case err != nil:
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("pop queue: %w", interpretError(err))
		}
		var out []*engine.Lease
		for _, st := range res {
			for _, m := range st.Messages {
				runID, _ := m.Values["run_id"].(string)
				out = append(out, &engine.Lease{RunID: runID, ID: m.ID, Deliveries: 1})
			}
		}
		if len(out) > 0 {
			return out, nil
		}
	}
}

// errNoGroup is what takeStarted returns for a queue whose consumer group
// is gone (the stream was deleted): the caller's blocking path makes it.
var errNoGroup = errors.New("no consumer group")

// takeStarted takes up to n runs queued on partition k for consumer and
// starts them, in one queue_take.lua (QueuePopParams.Start): leases with
// Started set, none when the queue had nothing new.
func (s *Store) takeStarted(ctx context.Context, k int, consumer string, n int) ([]*engine.Lease, error) {
	if err := s.ensureGroup(ctx, k); err != nil {
		return nil, err
	}
	pk := s.parts[k]
	t0 := time.Now()
	v, err := queueTakeScript.Run(ctx, s.client, []string{pk.queue(), pk.events(), pk.status(engine.RunPending),
		pk.status(engine.RunRunning), pk.queued()},
		queueGroup, consumer, n, pk.runPrefix(), pk.tasks(""), ms(t0), s.cfg.EventMaxLen).Slice()
	switch {
	case isNoGroup(err):
		s.partGroup[k].Store(false)
		return nil, errNoGroup
	case err != nil:
		return nil, interpretError(err)
	case len(v)%4 != 0:
		return nil, fmt.Errorf("unexpected take reply of %d values", len(v))
	}
	out := make([]*engine.Lease, 0, len(v)/4)
	for i := 0; i < len(v); i += 4 {
		id, _ := v[i].(string)
		runID, _ := v[i+1].(string)
		l := &engine.Lease{RunID: runID, ID: s.partID(k, id), Deliveries: 1}
		// A run hash that does not parse is handed out unstarted: the
		// engine's own RunStart then reports it (and the lease lapses).
		if r, err := parseRunWithTasks([]any{v[i+2], v[i+3]}); err == nil && r.ID == runID {
			l.Started = r
			if r.Status == engine.RunRunning {
				s.hub.started(r.ID, t0)
			}
		}
		out = append(out, l)
	}
	return out, nil
}

// QueueAck acknowledges the lease's entry and deletes it from the stream
// (XACK + XDEL, atomically). Acknowledging twice does nothing. A worker
// needs it only for leases it did not execute: RunStart and RunFinish
// settle the lease passed in their params in the same script.
func (s *Store) QueueAck(ctx context.Context, l *engine.Lease) error {
	pk := s.part(l.RunID)
	err := queueAckScript.Run(ctx, s.client, []string{pk.queue(), pk.run(l.RunID)}, queueGroup, leaseID(l), "").Err()
	if err != nil {
		return fmt.Errorf("ack run %s: %w", l.RunID, interpretError(err))
	}
	return nil
}

// QueueReclaim takes over, for p.WorkerID, up to p.Count entries that their
// holders left idle for p.MinIdle (XAUTOCLAIM), oldest first. Deliveries is
// the entry's delivery count (XPENDING), which XAUTOCLAIM increments.
// Entries of runs that are terminal or gone are acknowledged and deleted
// instead.
func (s *Store) QueueReclaim(ctx context.Context, p *engine.QueueReclaimParams) ([]*engine.Lease, error) {
	count := p.Count
	if count <= 0 {
		count = 100
	}
	if err := s.ready(ctx); err != nil {
		return nil, fmt.Errorf("reclaim: %w", err)
	}
	if len(s.parts) > 1 {
		return s.reclaimPartitions(ctx, p, count)
	}
	return s.reclaimPartition(ctx, 0, p, count)
}

// reclaimPartition is QueueReclaim of partition k's queue.
func (s *Store) reclaimPartition(ctx context.Context, k int, p *engine.QueueReclaimParams, count int) ([]*engine.Lease, error) {
	if err := s.ensureGroup(ctx, k); err != nil {
		return nil, fmt.Errorf("reclaim: %w", err)
	}
	pk := s.parts[k]
	v, err := queueReclaimScript.Run(ctx, s.client, []string{pk.queue()},
		queueGroup, p.WorkerID, p.MinIdle.Milliseconds(), count, pk.runPrefix()).Slice()
	if isNoGroup(err) {
		s.partGroup[k].Store(false)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reclaim: %w", interpretError(err))
	}
	out := make([]*engine.Lease, 0, len(v))
	for _, e := range v {
		t, ok := e.([]any)
		if !ok || len(t) != 3 {
			return nil, fmt.Errorf("reclaim: unexpected reply %v", e)
		}
		id, _ := t[0].(string)
		runID, _ := t[1].(string)
		n, _ := t[2].(int64)
		out = append(out, &engine.Lease{RunID: runID, ID: s.partID(k, id), Deliveries: int(n)})
	}
	return out, nil
}

// QueueHeartbeat renews the leases that workerID still holds by resetting
// their idle time (XCLAIM … 0 JUSTID, which is not a delivery). Leases
// another worker took over are left alone.
func (s *Store) QueueHeartbeat(ctx context.Context, workerID string, leases []*engine.Lease) error {
	for k, ls := range s.leasesByPartition(leases) {
		args := make([]any, 0, 2+len(ls))
		args = append(args, queueGroup, workerID)
		for _, l := range ls {
			args = append(args, leaseID(l))
		}
		err := queueHeartbeatScript.Run(ctx, s.client, []string{s.parts[k].queue()}, args...).Err()
		if err != nil && !isNoGroup(err) {
			return fmt.Errorf("renew leases of %s: %w", workerID, interpretError(err))
		}
	}
	return nil
}

// QueueRequeue hands a run back: its entry is acknowledged and deleted and,
// unless the run is terminal, a new entry is added at the end of the
// stream, for any worker (delivery count 1 again). When p.RunAttempt is set
// and the run's attempt differs (another worker took the run over since)
// it is refused with an error wrapping [engine.ErrConflict] ("owner lost")
// and changes nothing.
func (s *Store) QueueRequeue(ctx context.Context, p *engine.QueueRequeueParams) error {
	l := p.Lease
	pk := s.part(l.RunID)
	err := queueRequeueScript.Run(ctx, s.client, []string{pk.queue(), pk.run(l.RunID)}, queueGroup, leaseID(l), fenceArg(p.RunAttempt)).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		err = interpretError(err)
		return fmt.Errorf("requeue run %s: %w", l.RunID, err)
	}
	return nil
}

// QueueHeartbeatLost is [Store.QueueHeartbeat] that also reports the
// leases workerID no longer holds, in their order: the entry is not pending
// for workerID any more (another worker reclaimed it, or it was
// acknowledged), or another worker started the run since this Store's
// RunStart of the lease (the run's attempt moved on). It renews the others.
// A worker should stop executing the lost ones at once: their writes are
// refused ("owner lost", see [Store.RunStart]). If the queue's consumer
// group is gone (Redis lost its data) every lease is lost.
func (s *Store) QueueHeartbeatLost(ctx context.Context, workerID string, leases []*engine.Lease) ([]*engine.Lease, error) {
	if len(leases) == 0 {
		return nil, nil
	}
	lostSet := map[*engine.Lease]bool{}
	for k, ls := range s.leasesByPartition(leases) {
		pk := s.parts[k]
		ks := make([]string, 0, 1+len(ls))
		args := make([]any, 0, 2+2*len(ls))
		ks = append(ks, pk.queue())
		args = append(args, queueGroup, workerID)
		for _, l := range ls {
			ks = append(ks, pk.run(l.RunID))
			args = append(args, leaseID(l), "")
		}
		pos, err := queueHeartbeatLostScript.Run(ctx, s.client, ks, args...).Int64Slice()
		if isNoGroup(err) {
			s.partGroup[k].Store(false)
			for _, l := range ls {
				lostSet[l] = true
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("renew leases of %s: %w", workerID, interpretError(err))
		}
		for _, i := range pos {
			if i >= 1 && int(i) <= len(ls) {
				lostSet[ls[i-1]] = true
			}
		}
	}
	var lost []*engine.Lease
	for _, l := range leases {
		if lostSet[l] {
			lost = append(lost, l)
		}
	}
	return lost, nil
}

// QueueDepth returns the number of PENDING runs by flow, from the counter
// hash the status scripts maintain (O(flows)).
func (s *Store) QueueDepth(ctx context.Context) (map[string]int64, error) {
	hs := make([]map[string]string, len(s.parts))
	err := s.forParts(func(k int, pk keys) error {
		h, err := s.client.HGetAll(ctx, pk.queued()).Result()
		if err != nil {
			return fmt.Errorf("queue depth: %w", interpretError(err))
		}
		hs[k] = h
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(hs[0]))
	for _, h := range hs {
		for flow, v := range h {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("queue depth of %s: %w", flow, err)
			}
			if n > 0 {
				out[flow] += n
			}
		}
	}
	return out, nil
}

// oldestScanMax bounds the PENDING runs QueueOldest examines, and
// oldestScanBatch how many it reads per round trip.
const (
	oldestScanMax   = 1000
	oldestScanBatch = 100
)

// QueueOldest returns the CreatedAt of the oldest PENDING run of each flow
// that has one. It walks the PENDING index oldest first (its members sort
// by CreatedAt and carry it) reading each run's flow, until it met every
// flow the queued-per-flow hash counts: one round trip per 100 runs, and
// usually one in all. Past 1000 runs a flow not met yet gets the CreatedAt
// of the last run examined (its age is then an upper bound).
func (s *Store) QueueOldest(ctx context.Context) (map[string]time.Time, error) {
	olds := make([]map[string]time.Time, len(s.parts))
	err := s.forParts(func(k int, pk keys) error {
		var err error
		olds[k], err = s.oldestPartition(ctx, pk)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := olds[0]
	for _, o := range olds[1:] {
		for flow, t := range o {
			if old, ok := out[flow]; !ok || t.Before(old) {
				out[flow] = t
			}
		}
	}
	return out, nil
}

// oldestPartition is QueueOldest of one partition.
func (s *Store) oldestPartition(ctx context.Context, pk keys) (map[string]time.Time, error) {
	h, err := s.client.HGetAll(ctx, pk.queued()).Result()
	if err != nil {
		return nil, fmt.Errorf("queue depth: %w", interpretError(err))
	}
	depth := make(map[string]bool, len(h))
	for flow, v := range h {
		if n, _ := strconv.ParseInt(v, 10, 64); n > 0 {
			depth[flow] = true
		}
	}
	out := make(map[string]time.Time, len(depth))
	var last time.Time
	for off := 0; len(out) < len(depth) && off < oldestScanMax; off += oldestScanBatch {
		members, err := s.client.ZRangeArgs(ctx, redis.ZRangeArgs{Key: pk.status(engine.RunPending),
			Start: "-", Stop: "+", ByLex: true, Offset: int64(off), Count: oldestScanBatch}).Result()
		if err != nil {
			return nil, fmt.Errorf("queue oldest: %w", interpretError(err))
		}
		if len(members) == 0 {
			break
		}
		pipe := s.client.Pipeline()
		created := make([]time.Time, 0, len(members))
		flows := make([]*redis.StringCmd, 0, len(members))
		for _, m := range members {
			c, id, ok := parseIndexMember(m)
			if !ok {
				continue
			}
			created = append(created, c)
			flows = append(flows, pipe.HGet(ctx, pk.run(id), fieldFlow))
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("queue oldest: %w", interpretError(err))
		}
		for i, cmd := range flows {
			last = created[i]
			flow, err := cmd.Result()
			if err != nil {
				continue // expired, not yet swept
			}
			if _, seen := out[flow]; !seen {
				out[flow] = created[i]
			}
		}
		if len(members) < oldestScanBatch {
			break
		}
	}
	for flow := range depth {
		if _, ok := out[flow]; !ok && !last.IsZero() {
			out[flow] = last
		}
	}
	return out, nil
}

// QueueLag returns the queue entries not yet delivered to any worker: the
// consumer group's lag (XINFO GROUPS), or, when Redis cannot tell it (entries
// were deleted after the group's last delivery), a count of the entries
// after that delivery, at most 10000. Before any worker made the group,
// every entry is undelivered.
func (s *Store) QueueLag(ctx context.Context) (int64, error) {
	lags := make([]int64, len(s.parts))
	err := s.forParts(func(k int, pk keys) error {
		var err error
		lags[k], err = s.lagPartition(ctx, pk)
		return err
	})
	var n int64
	for _, l := range lags {
		n += l
	}
	return n, err
}

// lagPartition is QueueLag of one partition.
func (s *Store) lagPartition(ctx context.Context, pk keys) (int64, error) {
	groups, err := s.client.XInfoGroups(ctx, pk.queue()).Result()
	if err != nil {
		if strings.Contains(err.Error(), "no such key") {
			return 0, nil // no stream yet: nothing was ever queued
		}
		return 0, fmt.Errorf("queue lag: %w", interpretError(err))
	}
	for _, g := range groups {
		if g.Name != queueGroup {
			continue
		}
		if g.Lag >= 0 {
			return g.Lag, nil
		}
		n, err := s.client.XRangeN(ctx, pk.queue(), "("+g.LastDeliveredID, "+", 10000).Result()
		if err != nil {
			return 0, fmt.Errorf("queue lag: %w", interpretError(err))
		}
		return int64(len(n)), nil
	}
	n, err := s.client.XLen(ctx, pk.queue()).Result()
	if err != nil {
		return 0, fmt.Errorf("queue lag: %w", interpretError(err))
	}
	return n, nil
}

// WorkerHeartbeat records w as live for ttl (measured on Redis's clock).
func (s *Store) WorkerHeartbeat(ctx context.Context, w *engine.WorkerInfo, ttl time.Duration) error {
	if w == nil || w.ID == "" {
		return errors.New("worker heartbeat: missing worker ID")
	}
	b, err := json.Marshal(w)
	if err != nil {
		return fmt.Errorf("worker heartbeat %s: %w", w.ID, err)
	}
	err = queueWorkerBeatScript.Run(ctx, s.client, []string{s.keys.workers(), s.keys.worker(w.ID)},
		w.ID, b, max(ttl.Milliseconds(), 1)).Err()
	if err != nil {
		return fmt.Errorf("worker heartbeat %s: %w", w.ID, interpretError(err))
	}
	return nil
}

// WorkerRemove forgets worker id, and deletes its queue consumer if it holds
// no entry.
func (s *Store) WorkerRemove(ctx context.Context, id string) error {
	err := queueWorkerRemoveScript.Run(ctx, s.client,
		[]string{s.keys.workers(), s.keys.worker(id), s.keys.queue()}, id, queueGroup).Err()
	if err != nil {
		return fmt.Errorf("remove worker %s: %w", id, interpretError(err))
	}
	if len(s.parts) == 1 {
		return nil
	}
	// The registry is under the base tag, the consumers are in each
	// partition's group: the same script, with keys of the partition that
	// do not exist there (the ZREM and DEL change nothing), deletes them.
	return s.forParts(func(_ int, pk keys) error {
		err := queueWorkerRemoveScript.Run(ctx, s.client, []string{pk.workers(), pk.worker(id), pk.queue()}, id, queueGroup).Err()
		if err != nil {
			return fmt.Errorf("remove worker %s: %w", id, interpretError(err))
		}
		return nil
	})
}

// WorkerList returns the live workers by ID, dropping expired ones.
func (s *Store) WorkerList(ctx context.Context) ([]engine.WorkerInfo, error) {
	ids, err := queueWorkerListScript.Run(ctx, s.client, []string{s.keys.workers()}).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("list workers: %w", interpretError(err))
	}
	out := make([]engine.WorkerInfo, 0, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = s.keys.worker(id)
	}
	// One slot (the namespace's hash tag), so one MGET on Cluster too.
	vals, err := s.client.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, fmt.Errorf("list workers: %w", interpretError(err))
	}
	for _, v := range vals {
		j, ok := v.(string)
		if !ok {
			continue // expired between the two calls
		}
		var w engine.WorkerInfo
		if err := json.Unmarshal([]byte(j), &w); err != nil {
			return nil, fmt.Errorf("list workers: %w", err)
		}
		out = append(out, w)
	}
	slices.SortFunc(out, func(a, b engine.WorkerInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

var (
	_ engine.Queue            = (*Store)(nil)
	_ engine.QueueBatchPopper = (*Store)(nil)
	_ engine.QueueStats       = (*Store)(nil)
	_ engine.QueueBacklog     = (*Store)(nil)
	_ engine.WorkerRegistry   = (*Store)(nil)
	_ engine.Pinger           = (*Store)(nil)
)
