package redisstore_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/storetest"
	"github.com/pyoco/pyoco/internal/redistest"
	"github.com/pyoco/pyoco/redisstore"
	"github.com/pyoco/pyoco/webhooks/delivery"
)

func TestPartitionsConfig(t *testing.T) {
	t.Parallel()
	c := redistest.Client(t)
	for _, n := range []int{-1, 1025} {
		_, err := redisstore.New(c, &redisstore.Config{Partitions: n})
		require.ErrorContains(t, err, "Config.Partitions "+strconv.Itoa(n)+" must be between 1 and 1024")
	}
	s, err := redisstore.New(c, nil)
	require.NoError(t, err)
	require.Equal(t, 1, s.Partitions())
	require.Equal(t, "{pyoco}", s.PartitionKeyTag(0))
	s, err = redisstore.New(c, &redisstore.Config{Namespace: "ns", Partitions: 3})
	require.NoError(t, err)
	require.Equal(t, "{ns:p2}", s.PartitionKeyTag(2))
}

// A namespace keeps the partition count it was first used with; a store
// opened with another one fails with both numbers, and a namespace of the
// single-tag layout (written before partitions existed: no meta hash)
// counts as one partition.
func TestPartitionsMismatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := redistest.Cluster(t)
	ns := redistest.Namespace(t, c)
	open := func(n int) *redisstore.Store {
		s, err := redisstore.New(c, &redisstore.Config{Namespace: ns, Partitions: n})
		require.NoError(t, err)
		return s
	}
	s6 := open(6)
	r := storetest.NewTestRun("hello", "a")
	require.NoError(t, s6.RunCreate(ctx, r))
	err := open(3).RunCreate(ctx, storetest.NewTestRun("hello", "a"))
	require.ErrorContains(t, err, "is laid out in 6 partitions, but this store was opened with Config.Partitions 3")
	_, err = open(1).RunGet(ctx, r.ID)
	require.ErrorContains(t, err, "is laid out in 6 partitions, but this store was opened with Config.Partitions 1")
	_, err = open(1).QueuePopBatch(ctx, &engine.QueuePopParams{WorkerID: "w"}, 1)
	require.ErrorContains(t, err, "Config.Partitions 1")
	got, err := open(6).RunGet(ctx, r.ID)
	require.NoError(t, err)
	require.Equal(t, r.ID, got.ID)

	// Legacy data: the single-tag layout, no meta hash.
	legacy := redistest.Namespace(t, c)
	s1, err := redisstore.New(c, &redisstore.Config{Namespace: legacy})
	require.NoError(t, err)
	require.NoError(t, s1.RunCreate(ctx, storetest.NewTestRun("hello", "a")))
	require.NoError(t, c.Del(ctx, "{"+legacy+"}:meta").Err())
	s4, err := redisstore.New(c, &redisstore.Config{Namespace: legacy, Partitions: 4})
	require.NoError(t, err)
	require.ErrorContains(t, s4.Ping(ctx), "is laid out in 1 partitions, but this store was opened with Config.Partitions 4")
}

// With six partitions on a 3-master Cluster, a namespace's keys live on
// every master, and every partition's tag holds some of them.
func TestPartitionsSpreadOverMasters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := redistest.Cluster(t)
	s, ns := newStore(t, c, &redisstore.Config{Partitions: 6})
	for range 60 {
		require.NoError(t, s.RunCreate(ctx, storetest.NewTestRun("hello", "a")))
	}
	cc := c.(*redis.ClusterClient)
	var (
		mu      sync.Mutex
		perNode = map[string]int{}
		perTag  = map[string]int{}
	)
	require.NoError(t, cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		size, err := node.DBSize(ctx).Result()
		if err != nil {
			return err
		}
		iter := node.Scan(ctx, 0, "{"+ns+":p*", 500).Iterator()
		n := 0
		for iter.Next(ctx) {
			n++
			tag, _, _ := strings.Cut(iter.Val(), "}")
			mu.Lock()
			perTag[tag]++
			mu.Unlock()
		}
		mu.Lock()
		perNode[node.Options().Addr] = n
		mu.Unlock()
		require.Positive(t, size)
		return iter.Err()
	}))
	require.Len(t, perNode, 3)
	for addr, n := range perNode {
		require.Positive(t, n, "keys of %s on master %s", ns, addr)
	}
	require.Len(t, perTag, 6, "every partition holds keys: %v", perTag)
	// CLUSTER COUNTKEYSINSLOT agrees: each partition's slot holds keys.
	for k := range 6 {
		tag := "{" + ns + ":p" + strconv.Itoa(k) + "}"
		slot, err := cc.ClusterKeySlot(ctx, tag+":queue").Result()
		require.NoError(t, err)
		node, err := cc.MasterForKey(ctx, tag+":queue")
		require.NoError(t, err)
		n, err := node.ClusterCountKeysInSlot(ctx, int(slot)).Result()
		require.NoError(t, err)
		require.Positive(t, n, "slot %d of %s", slot, tag)
	}
}

// Paging GET /runs over six partitions while runs are created: no run is
// listed twice, every run that existed before the walk is listed, newest
// first.
func TestPartitionsPagingWhileCreating(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t, redistest.Cluster(t), &redisstore.Config{Partitions: 6})
	before := map[string]bool{}
	for i := range 60 {
		r := storetest.NewTestRun("hello", "a")
		r.CreatedAt = time.Now().Add(-time.Hour + time.Duration(i)*time.Millisecond).UTC().Truncate(time.Millisecond)
		require.NoError(t, s.RunCreate(ctx, r))
		before[r.ID] = true
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				// Some runs are newer than the walk's position, some (their
				// CreatedAt in the past) land among the pages still to come.
				r := storetest.NewTestRun("hello", "a")
				if len(r.ID)%2 == 0 || r.ID[len(r.ID)-1]%2 == 0 {
					r.CreatedAt = time.Now().Add(-30 * time.Minute).UTC().Truncate(time.Millisecond)
				}
				if err := s.RunCreate(ctx, r); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	seen := map[string]bool{}
	var last *engine.Run
	cursor := ""
	for {
		page, err := s.RunList(ctx, &engine.RunListParams{Limit: 7, Cursor: cursor})
		require.NoError(t, err)
		for _, r := range page.Runs {
			require.False(t, seen[r.ID], "run %s listed twice", r.ID)
			seen[r.ID] = true
			if last != nil {
				require.True(t, r.CreatedAt.Before(last.CreatedAt) || (r.CreatedAt.Equal(last.CreatedAt) && r.ID < last.ID),
					"newest first: %s after %s", r.ID, last.ID)
			}
			last = r
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	close(stop)
	wg.Wait()
	for id := range before {
		require.True(t, seen[id], "run %s existed before the walk and was not listed", id)
	}
}

// A server that crashes between claiming a tick and creating its run (six
// partitions: two steps) leaves an intent; the next ScheduleGet creates
// the run, once, queued.
func TestPartitionsScheduleIntentRecovered(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t, redistest.Cluster(t), &redisstore.Config{Partitions: 6})
	tick := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	r := storetest.NewTestRun("nightly", "a")
	require.NoError(t, redisstore.ScheduleClaimCrashed(ctx, s, &engine.ScheduleClaimParams{Flow: "nightly", Name: "0", Tick: tick, Run: r}))
	_, err := s.RunGet(ctx, r.ID)
	require.ErrorIs(t, err, engine.ErrNotFound, "the crash came before the run")
	for range 2 {
		st, err := s.ScheduleGet(ctx, "nightly", "0")
		require.NoError(t, err)
		require.Equal(t, r.ID, st.LastRunID)
	}
	got, err := s.RunGet(ctx, r.ID)
	require.NoError(t, err)
	require.Equal(t, engine.RunPending, got.Status)
	depth, err := s.QueueDepth(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int64{"nightly": 1}, depth, "created once, queued")
	l, err := s.QueuePop(ctx, &engine.QueuePopParams{WorkerID: "w", Block: time.Second})
	require.NoError(t, err)
	require.NotNil(t, l)
	require.Equal(t, r.ID, l.RunID)
	// The tick is taken: a claim from the state before it is refused.
	err = s.ScheduleClaim(ctx, &engine.ScheduleClaimParams{Flow: "nightly", Name: "0", Tick: tick, Run: storetest.NewTestRun("nightly", "a")})
	require.ErrorIs(t, err, engine.ErrConflict)
}

// With six partitions a webhook dispatcher's group covers every
// partition's events stream: a blocked read wakes for an event of any
// partition, every event is read once, and acknowledging them (IDs name
// their partition) leaves nothing pending.
func TestPartitionsWebhookEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := redistest.Cluster(t)
	s, ns := newStore(t, c, &redisstore.Config{Partitions: 6})
	require.NoError(t, s.WebhookEventInit(ctx, "ep"))
	read := func(block time.Duration) []engine.Event {
		evs, err := s.WebhookEventRead(ctx, &delivery.EventReadParams{Consumer: "d1", Group: "ep", Count: 100, Block: block})
		require.NoError(t, err)
		return evs
	}
	// A blocked read wakes up for a run created meanwhile.
	first := storetest.NewTestRun("hello", "a")
	go func() {
		time.Sleep(100 * time.Millisecond)
		_ = s.RunCreate(ctx, first)
	}()
	evs := read(2 * time.Second)
	require.Len(t, evs, 1)
	require.Equal(t, first.ID, evs[0].RunID)
	seen := map[string]bool{evs[0].ID: true}
	runs := map[string]bool{first.ID: true}
	// 30 runs, and more until every partition has one (IDs are random).
	covered := map[int]bool{redisstore.PartitionOf(first.ID, 6): true}
	for n := 0; n < 30 || len(covered) < 6; n++ {
		r := storetest.NewTestRun("hello", "a")
		require.NoError(t, s.RunCreate(ctx, r))
		runs[r.ID] = true
		covered[redisstore.PartitionOf(r.ID, 6)] = true
	}
	require.NoError(t, s.WebhookEventAck(ctx, "ep", []string{evs[0].ID}))
	got := map[string]bool{}
	for len(got) < len(runs)-1 {
		evs := read(200 * time.Millisecond)
		require.NotEmpty(t, evs)
		var ids []string
		for _, ev := range evs {
			require.False(t, seen[ev.ID], "event %s read twice", ev.ID)
			seen[ev.ID] = true
			require.True(t, runs[ev.RunID])
			got[ev.RunID] = true
			ids = append(ids, ev.ID)
		}
		require.NoError(t, s.WebhookEventAck(ctx, "ep", ids))
	}
	require.Empty(t, read(0))
	parts := map[string]bool{}
	for id := range seen {
		k, _, _ := strings.Cut(id, "/")
		parts[k] = true
	}
	require.Len(t, parts, 6, "events of every partition")
	for k := range 6 {
		p, err := c.XPending(ctx, "{"+ns+":p"+strconv.Itoa(k)+"}:events", "webhooks:ep").Result()
		require.NoError(t, err)
		require.Zero(t, p.Count)
	}
}
