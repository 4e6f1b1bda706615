package redisstore_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/storetest"
	"github.com/pyoco/pyoco/internal/redistest"
	"github.com/pyoco/pyoco/redisstore"
)

func TestNewConfig(t *testing.T) {
	t.Parallel()
	c := redistest.Client(t)
	_, err := redisstore.New(nil, nil)
	require.Error(t, err)
	s, err := redisstore.New(c, nil)
	require.NoError(t, err)
	require.NotNil(t, s)

	for _, tt := range []struct {
		field string
		cfg   redisstore.Config
	}{
		{"Namespace", redisstore.Config{Namespace: "a{b}"}},
		{"Retention", redisstore.Config{Retention: -time.Second}},
		{"Retention", redisstore.Config{Retention: time.Microsecond}},
		{"LogMaxEntries", redisstore.Config{LogMaxEntries: -1}},
		{"EventMaxLen", redisstore.Config{EventMaxLen: -5}},
	} {
		_, err := redisstore.New(c, &tt.cfg)
		require.ErrorContains(t, err, "Config."+tt.field)
	}
}

// TestRetention finishes runs with a 1s retention and checks that they,
// their tasks, logs and every index entry about them disappear, while live
// runs keep theirs.
func TestRetention(t *testing.T) {
	t.Parallel()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			c := be.client(t)
			s, ns := newStore(t, c, &redisstore.Config{Retention: time.Second})

			create := func(flow string, tags ...string) *engine.Run {
				r := storetest.NewTestRun(flow, "a")
				r.Tags = tags
				require.NoError(t, s.RunCreate(ctx, r))
				require.NoError(t, s.LogAppend(ctx, r.ID, []engine.LogEntry{{Task: "a", Text: "hi", Timestamp: time.Now()}}))
				return r
			}
			now := time.Now()
			var gone []*engine.Run
			for _, st := range []engine.RunStatus{engine.RunCompleted, engine.RunFailed, engine.RunCancelled} {
				r := create("gone-flow", "gone-tag", "shared-tag")
				_, err := s.RunStart(ctx, &engine.RunStartParams{RunID: r.ID, WorkerID: "w", At: now})
				require.NoError(t, err)
				_, err = s.RunFinish(ctx, &engine.RunFinishParams{RunID: r.ID, Status: st, At: now})
				require.NoError(t, err)
				gone = append(gone, r)
			}
			r := create("gone-flow", "gone-tag") // cancelled while PENDING
			_, err := s.RunCancel(ctx, &engine.RunCancelParams{RunID: r.ID, At: now})
			require.NoError(t, err)
			gone = append(gone, r)
			// A late log line after the end expires with the run.
			require.NoError(t, s.LogAppend(ctx, r.ID, []engine.LogEntry{{Task: "a", Text: "late"}}))

			pending := create("live-flow", "shared-tag")
			running := create("live-flow")
			_, err = s.RunStart(ctx, &engine.RunStartParams{RunID: running.ID, WorkerID: "w", At: now})
			require.NoError(t, err)
			live := []string{pending.ID, running.ID}

			// The finished runs are readable until their retention passes.
			_, err = s.RunGet(ctx, gone[0].ID)
			require.NoError(t, err)

			deadline := time.Now().Add(15 * time.Second)
			for {
				// RunList sweeps lazily (at most once a second).
				page, err := s.RunList(ctx, &engine.RunListParams{})
				require.NoError(t, err)
				garbage := indexGarbage(t, c, ns, live)
				if len(garbage) == 0 && len(page.Runs) == len(live) {
					break
				}
				require.True(t, time.Now().Before(deadline), "still there after the deadline: %v", garbage)
				time.Sleep(100 * time.Millisecond)
			}
			for _, r := range gone {
				_, err := s.RunGet(ctx, r.ID)
				require.ErrorIs(t, err, engine.ErrNotFound)
			}
			for _, id := range live {
				_, err := s.RunGet(ctx, id)
				require.NoError(t, err)
			}
			page, err := s.RunList(ctx, &engine.RunListParams{Tag: "shared-tag"})
			require.NoError(t, err)
			require.Len(t, page.Runs, 1)
			require.Equal(t, pending.ID, page.Runs[0].ID)
		})
	}
}

// indexGarbage returns a description of every key of namespace ns that is
// not about a live run: keys naming another run, sorted-set members of
// another run, non-empty leftovers. Stream (events) entries are history and
// are not checked.
func indexGarbage(t *testing.T, c redis.UniversalClient, ns string, live []string) []string {
	t.Helper()
	ctx := t.Context()
	keys, err := redistest.Keys(ctx, c, "{"+ns+"}*")
	require.NoError(t, err)
	isLive := func(id string) bool {
		for _, l := range live {
			if l == id {
				return true
			}
		}
		return false
	}
	var garbage []string
	for _, k := range keys {
		typ, err := c.Type(ctx, k).Result()
		require.NoError(t, err)
		rest := strings.TrimPrefix(k, "{"+ns+"}:")
		switch {
		case strings.HasPrefix(rest, "run:"), strings.HasPrefix(rest, "tasks:"), strings.HasPrefix(rest, "logs:"):
			_, id, _ := strings.Cut(rest, ":")
			if !isLive(id) {
				garbage = append(garbage, k)
			}
		case typ == "zset":
			members, err := c.ZRange(ctx, k, 0, -1).Result()
			require.NoError(t, err)
			for _, m := range members {
				if len(m) < 18 || !isLive(m[17:]) {
					garbage = append(garbage, fmt.Sprintf("%s: %.60s", k, m))
				}
			}
		}
	}
	return garbage
}

// TestKeyLayout checks that every key of a namespace carries its hash tag
// (one Cluster slot) and that two namespaces do not see each other.
func TestKeyLayout(t *testing.T) {
	t.Parallel()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			c := be.client(t)
			a, nsA := newStore(t, c, nil)
			b, _ := newStore(t, c, nil)

			r := storetest.NewTestRun("hello", "x", "y")
			r.Tags = []string{"t1", "t2"}
			require.NoError(t, a.RunCreate(ctx, r))
			_, err := a.RunStart(ctx, &engine.RunStartParams{RunID: r.ID, WorkerID: "w"})
			require.NoError(t, err)
			require.NoError(t, a.LogAppend(ctx, r.ID, []engine.LogEntry{{Task: "x", Text: "hi"}}))
			_, err = a.RunFinish(ctx, &engine.RunFinishParams{RunID: r.ID, Status: engine.RunCompleted})
			require.NoError(t, err)

			keys, err := redistest.Keys(ctx, c, "*"+nsA+"*")
			require.NoError(t, err)
			require.NotEmpty(t, keys)
			slots := map[int64]bool{}
			for _, k := range keys {
				require.True(t, strings.HasPrefix(k, "{"+nsA+"}:"), "key %s outside the hash tag", k)
				if be.name == "Cluster" {
					slot, err := c.ClusterKeySlot(ctx, k).Result()
					require.NoError(t, err)
					slots[slot] = true
				}
			}
			if be.name == "Cluster" {
				require.Len(t, slots, 1, "keys of one namespace in one slot")
			}

			// b sees nothing of a.
			_, err = b.RunGet(ctx, r.ID)
			require.ErrorIs(t, err, engine.ErrNotFound)
			page, err := b.RunList(ctx, &engine.RunListParams{})
			require.NoError(t, err)
			require.Empty(t, page.Runs)
			events, err := b.EventList(ctx, &engine.EventListParams{})
			require.NoError(t, err)
			require.Empty(t, events)
			_, err = b.RunCancel(ctx, &engine.RunCancelParams{RunID: r.ID})
			require.ErrorIs(t, err, engine.ErrNotFound)
			require.ErrorIs(t, b.LogAppend(ctx, r.ID, []engine.LogEntry{{Task: "x"}}), engine.ErrNotFound)
			_, err = b.LogList(ctx, &engine.LogListParams{RunID: r.ID})
			require.ErrorIs(t, err, engine.ErrNotFound)
			_, err = b.RunCancelNotify(ctx, r.ID)
			require.ErrorIs(t, err, engine.ErrNotFound)
			// …and a keeps its own.
			events, err = a.EventList(ctx, &engine.EventListParams{})
			require.NoError(t, err)
			require.Len(t, events, 3)
		})
	}
}

// TestListAcrossCalls makes RunList need several script calls (a sparse
// filter over a large driver index) and checks the pages.
func TestListAcrossCalls(t *testing.T) {
	t.Parallel()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			c := be.client(t)
			s, _ := newStore(t, c, nil)
			redisstore.SetListBudget(s, 4)
			base := time.Now().Truncate(time.Millisecond)
			var want []string // PENDING runs of flow b, newest first
			for i := range 40 {
				for _, flow := range []string{"a", "b"} {
					r := storetest.NewTestRun(flow, "x")
					r.CreatedAt = base.Add(time.Duration(i) * time.Millisecond)
					require.NoError(t, s.RunCreate(ctx, r))
					if flow == "b" && i%9 != 0 {
						_, err := s.RunStart(ctx, &engine.RunStartParams{RunID: r.ID, WorkerID: "w"})
						require.NoError(t, err)
					} else if flow == "b" {
						want = append([]string{r.ID}, want...)
					}
				}
			}
			// PENDING holds 45 runs, flow b 40: flow b drives, 1 in 9 match.
			p := engine.RunListParams{Statuses: []engine.RunStatus{engine.RunPending}, Flow: "b", Limit: 2}
			var got []string
			for {
				page, err := s.RunList(ctx, &p)
				require.NoError(t, err)
				require.LessOrEqual(t, len(page.Runs), 2)
				for _, r := range page.Runs {
					got = append(got, r.ID)
				}
				if page.NextCursor == "" {
					break
				}
				require.NotEmpty(t, page.Runs)
				p.Cursor = page.NextCursor
			}
			require.Equal(t, want, got)
		})
	}
}

// TestCancelNotifyAcrossClients cancels through one client and is notified
// through another, as a server and a worker would be.
func TestCancelNotifyAcrossClients(t *testing.T) {
	t.Parallel()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			c1, c2 := be.client(t), be.client(t)
			server, ns := newStore(t, c1, nil)
			worker, err := redisstore.New(c2, &redisstore.Config{Namespace: ns})
			require.NoError(t, err)

			r := storetest.NewTestRun("hello", "a")
			require.NoError(t, server.RunCreate(ctx, r))
			_, err = worker.RunStart(ctx, &engine.RunStartParams{RunID: r.ID, WorkerID: "w"})
			require.NoError(t, err)
			ch, err := worker.RunCancelNotify(ctx, r.ID)
			require.NoError(t, err)
			start := time.Now()
			_, err = server.RunCancel(ctx, &engine.RunCancelParams{RunID: r.ID})
			require.NoError(t, err)
			select {
			case <-ch:
				require.Less(t, time.Since(start), time.Second)
			case <-time.After(5 * time.Second):
				t.Fatal("not notified")
			}

			// A done ctx: closed at once, unknown runs still reported.
			done, cancel := context.WithCancel(ctx)
			cancel()
			ch, err = worker.RunCancelNotify(done, r.ID)
			require.NoError(t, err)
			_, open := <-ch
			require.False(t, open)
			_, err = worker.RunCancelNotify(done, "nope")
			require.ErrorIs(t, err, engine.ErrNotFound)
		})
	}
}

func TestQueue(t *testing.T) {
	t.Parallel()
	for _, be := range suiteBackends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			c := be.client(t)
			storetest.RunQueue(t, func(t *testing.T) engine.Store {
				s, _ := newStore(t, c, &redisstore.Config{Partitions: be.partitions})
				return s
			})
		})
	}
}

func TestSchedule(t *testing.T) {
	t.Parallel()
	for _, be := range suiteBackends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			c := be.client(t)
			storetest.RunSchedule(t, func(t *testing.T) engine.Store {
				s, _ := newStore(t, c, &redisstore.Config{Partitions: be.partitions})
				return s
			})
		})
	}
}
