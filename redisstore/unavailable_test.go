package redisstore_test

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/storetest"
	"github.com/pyoco/pyoco/internal/redistest"
	"github.com/pyoco/pyoco/redisstore"
)

// TestUnavailable stops a dedicated Redis under a Store: every method fails
// with an error wrapping engine.ErrUnavailable; once Redis is back the same
// Store works again.
func TestUnavailable(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	srv := redistest.StartServer(t)
	opt := srv.Options()
	opt.MaxRetries = -1   // fail fast: no command retries…
	opt.DialerRetries = 1 // …and no dial retries
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	s, err := redisstore.New(c, nil)
	require.NoError(t, err)
	r := storetest.NewTestRun("hello", "a")
	require.NoError(t, s.RunCreate(ctx, r))
	require.NoError(t, s.Ping(ctx))

	srv.Stop(t)
	errs := map[string]error{"Ping": s.Ping(ctx)}
	errs["RunCreate"] = s.RunCreate(ctx, storetest.NewTestRun("hello", "a"))
	_, errs["RunGet"] = s.RunGet(ctx, r.ID)
	_, errs["RunStart"] = s.RunStart(ctx, &engine.RunStartParams{RunID: r.ID, WorkerID: "w"})
	_, errs["RunFinish"] = s.RunFinish(ctx, &engine.RunFinishParams{RunID: r.ID, Status: engine.RunFailed})
	_, errs["RunCancel"] = s.RunCancel(ctx, &engine.RunCancelParams{RunID: r.ID})
	_, errs["RunList"] = s.RunList(ctx, &engine.RunListParams{})
	errs["TaskUpdate"] = s.TaskUpdate(ctx, &engine.TaskUpdateParams{RunID: r.ID, Task: "a", Status: engine.TaskRunning})
	errs["LogAppend"] = s.LogAppend(ctx, r.ID, []engine.LogEntry{{Task: "a"}})
	_, errs["LogList"] = s.LogList(ctx, &engine.LogListParams{RunID: r.ID})
	_, errs["EventList"] = s.EventList(ctx, &engine.EventListParams{})
	_, errs["RunCancelNotify"] = s.RunCancelNotify(ctx, r.ID)
	for name, err := range errs {
		require.ErrorIs(t, err, engine.ErrUnavailable, name)
		require.NotErrorIs(t, err, engine.ErrNotFound, name)
	}
	t.Logf("RunGet while down: %v", errs["RunGet"])

	srv.Restart(t)
	// The data is gone (no persistence in tests); the Store works again.
	require.Eventually(t, func() bool { return s.Ping(ctx) == nil }, 5*time.Second, 20*time.Millisecond)
	_, err = s.RunGet(ctx, r.ID)
	require.ErrorIs(t, err, engine.ErrNotFound)
	r2 := storetest.NewTestRun("hello", "a")
	require.NoError(t, s.RunCreate(ctx, r2))
	got, err := s.RunGet(ctx, r2.ID)
	require.NoError(t, err)
	require.Equal(t, engine.RunPending, got.Status)
}
