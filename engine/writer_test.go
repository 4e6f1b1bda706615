package engine_test

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/builtin"
	"github.com/pyoco/pyoco/engine/memstore"
)

// writeLog is a memory store that records the task writes it receives.
type writeLog struct {
	*memstore.Store
	mu     sync.Mutex
	writes []string // "many:<n>" per TaskUpdateMany, "finish:<n>" per RunFinish
	fences []int
}

func (s *writeLog) TaskUpdate(context.Context, *engine.TaskUpdateParams) error {
	panic("the engine writes task changes with TaskUpdateMany")
}

func (s *writeLog) TaskUpdateMany(ctx context.Context, p *engine.TaskUpdateManyParams) error {
	s.mu.Lock()
	s.writes = append(s.writes, "many:"+itoa(len(p.Tasks)))
	s.fences = append(s.fences, p.RunAttempt)
	s.mu.Unlock()
	return s.Store.TaskUpdateMany(ctx, p)
}

func (s *writeLog) RunFinish(ctx context.Context, p *engine.RunFinishParams) (*engine.Run, error) {
	s.mu.Lock()
	s.writes = append(s.writes, "finish:"+itoa(len(p.Tasks)))
	s.fences = append(s.fences, p.RunAttempt)
	s.mu.Unlock()
	return s.Store.RunFinish(ctx, p)
}

func (s *writeLog) log() ([]string, []int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.writes...), append([]int(nil), s.fences...)
}

func itoa(n int) string { return string(rune('0' + n)) }

func setupWriteLog(t *testing.T) (*writeLog, *engine.Engine, *engine.Registry) {
	t.Helper()
	st := &writeLog{Store: memstore.New()}
	reg := engine.NewRegistry()
	require.NoError(t, builtin.Register(reg))
	eng, err := engine.New(st, reg, nil)
	require.NoError(t, err)
	return st, eng, reg
}

func submitFlow(t *testing.T, eng *engine.Engine, reg *engine.Registry, src string) *engine.Run {
	t.Helper()
	f, err := engine.LoadFlow("w.yaml", []byte(src), reg)
	require.NoError(t, err)
	run, err := eng.Submit(context.Background(), &engine.SubmitParams{Flow: f})
	require.NoError(t, err)
	return run
}

// TestWriterBatches pins the execution writer's batching: a task's start is
// written before it runs, with every change held before it; a task's end
// rides with the next start or with the finish; every write carries the
// execution's fence.
func TestWriterBatches(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		src    string
		writes []string
	}{
		{
			name:   "single task: start, then the end in the finish",
			src:    "version: 1\nflow: {name: one}\ntasks:\n  a: {use: noop}\n",
			writes: []string{"many:1", "finish:1"},
		},
		{
			name:   "chain: each start carries the previous end",
			src:    "version: 1\nflow: {name: chain, graph: \"a >> b >> c\"}\ntasks:\n  a: {use: noop}\n  b: {use: noop}\n  c: {use: noop}\n",
			writes: []string{"many:1", "many:2", "many:2", "finish:1"},
		},
		{
			name:   "a skipped task rides with the finish",
			src:    "version: 1\nflow: {name: skip, graph: \"a >> b\"}\ntasks:\n  a: {use: fail, inputs: {message: x}, fail_policy: isolate}\n  b: {use: noop}\n",
			writes: []string{"many:1", "finish:2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Fake time: the held end's delay cannot pass before the next
			// write however loaded the machine is.
			synctest.Test(t, func(t *testing.T) { testWriterBatch(t, tt.src, tt.writes) })
		})
	}
}

func testWriterBatch(t *testing.T, src string, want []string) {
	st, eng, reg := setupWriteLog(t)
	run := submitFlow(t, eng, reg, src)
	final, err := eng.Execute(context.Background(), &engine.ExecuteParams{RunID: run.ID})
	require.NoError(t, err)
	require.True(t, final.Status.Terminal())
	for _, ts := range final.Tasks {
		require.True(t, ts.Status.Terminal(), "task %s stored %s", ts.Name, ts.Status)
	}
	writes, fences := st.log()
	require.Equal(t, want, writes)
	for _, f := range fences {
		require.Equal(t, final.Attempt, f, "every write carries the fence")
	}
}

// TestWriterDelayedEnd: an end with no write to ride with (a sibling still
// runs) is stored on its own after a millisecond.
func TestWriterDelayedEnd(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		st, eng, reg := setupWriteLog(t)
		run := submitFlow(t, eng, reg, "version: 1\nflow: {name: par}\ntasks:\n  quick: {use: noop}\n  slow: {use: sleep, inputs: {duration: 1s}}\n")
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, err := eng.Execute(context.Background(), &engine.ExecuteParams{RunID: run.ID})
			require.NoError(t, err)
		}()
		time.Sleep(500 * time.Millisecond)
		synctest.Wait()
		got, err := st.RunGet(context.Background(), run.ID)
		require.NoError(t, err)
		require.Equal(t, engine.TaskSucceeded, got.Tasks["quick"].Status, "the end was written after the delay")
		require.Equal(t, engine.TaskRunning, got.Tasks["slow"].Status)
		<-done
		writes, _ := st.log()
		require.Equal(t, "finish:1", writes[len(writes)-1], "only the slow task's end rides with the finish")
	})
}

// gatedLog is a writeLog whose first TaskUpdateMany waits until gate is
// closed.
type gatedLog struct {
	*writeLog
	gate  chan struct{}
	first sync.Once
}

func (s *gatedLog) TaskUpdateMany(ctx context.Context, p *engine.TaskUpdateManyParams) error {
	s.first.Do(func() { <-s.gate })
	return s.writeLog.TaskUpdateMany(ctx, p)
}

// TestWriterStartsTogether: starts that arrive while a write is in flight
// go together in the next one, so five tasks admitted at once cost two
// start writes (the first start, then the four that waited), not five.
func TestWriterStartsTogether(t *testing.T) {
	t.Parallel()
	st := &gatedLog{writeLog: &writeLog{Store: memstore.New()}, gate: make(chan struct{})}
	reg := engine.NewRegistry()
	require.NoError(t, builtin.Register(reg))
	eng, err := engine.New(st, reg, nil)
	require.NoError(t, err)
	run := submitFlow(t, eng, reg, "version: 1\nflow: {name: wide}\ntasks:\n  a: {use: noop}\n  b: {use: noop}\n  c: {use: noop}\n  d: {use: noop}\n  e: {use: noop}\n")
	done := make(chan *engine.Run, 1)
	go func() {
		final, err := eng.Execute(context.Background(), &engine.ExecuteParams{RunID: run.ID})
		assert.NoError(t, err)
		done <- final
	}()
	// Wait until every start is inside writer.start: one in the gated
	// write, four waiting for it.
	require.Eventually(t, func() bool {
		buf := make([]byte, 1<<20)
		return strings.Count(string(buf[:runtime.Stack(buf, true)]), "engine.(*writer).start(") == 5
	}, 10*time.Second, time.Millisecond)
	close(st.gate)
	final := <-done
	require.Equal(t, engine.RunCompleted, final.Status)
	writes, _ := st.log()
	require.Equal(t, "many:1", writes[0])
	// The four starts that waited, and the first task's end when it was
	// held by then (that task runs as soon as the gated write returns).
	require.Contains(t, []string{"many:4", "many:5"}, writes[1])
	require.Equal(t, "finish:", writes[len(writes)-1][:7])
	for _, ts := range final.Tasks {
		require.Equal(t, engine.TaskSucceeded, ts.Status, ts.Name)
	}
}
