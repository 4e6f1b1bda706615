package redisstore_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/storetest"
)

// BenchmarkRunLifecycle measures one run's life as a worker drives it:
// create, start, 3 task updates, finish (6 round trips).
func BenchmarkRunLifecycle(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			ctx := b.Context()
			s, _ := newStore(b, be.client(b), nil)
			now := time.Now()
			b.ReportAllocs()
			b.ResetTimer() // not the server start
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					r := storetest.NewTestRun("bench", "a", "b", "c")
					if err := s.RunCreate(ctx, r); err != nil {
						b.Error(err)
						return
					}
					if _, err := s.RunStart(ctx, &engine.RunStartParams{RunID: r.ID, WorkerID: "w", At: now}); err != nil {
						b.Error(err)
						return
					}
					for _, task := range []string{"a", "b", "c"} {
						err := s.TaskUpdate(ctx, &engine.TaskUpdateParams{
							RunID: r.ID, Task: task, Status: engine.TaskSucceeded, StartedAt: now, EndedAt: now,
							Attempt: &engine.Attempt{Number: 1, Status: engine.TaskSucceeded, StartedAt: now, EndedAt: now},
							Output:  []byte(`{"ok":true}`),
						})
						if err != nil {
							b.Error(err)
							return
						}
					}
					if _, err := s.RunFinish(ctx, &engine.RunFinishParams{RunID: r.ID, Status: engine.RunCompleted, At: now}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkRunList measures one page of 50 from 2000 runs: unfiltered, by
// one status, and by status and flow (a filter checked per run).
func BenchmarkRunList(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			ctx := b.Context()
			s, _ := newStore(b, be.client(b), nil)
			for i := range 2000 {
				r := storetest.NewTestRun(fmt.Sprintf("flow-%d", i%4), "a")
				r.Tags = []string{fmt.Sprintf("tag-%d", i%10)}
				require.NoError(b, s.RunCreate(ctx, r))
				if i%2 == 0 {
					_, err := s.RunStart(ctx, &engine.RunStartParams{RunID: r.ID, WorkerID: "w"})
					require.NoError(b, err)
				}
			}
			for _, bc := range []struct {
				name string
				p    engine.RunListParams
			}{
				{"All", engine.RunListParams{}},
				{"Status", engine.RunListParams{Statuses: []engine.RunStatus{engine.RunRunning}}},
				{"StatusAndFlow", engine.RunListParams{Statuses: []engine.RunStatus{engine.RunPending, engine.RunRunning}, Flow: "flow-1"}},
				{"TagAndFlow", engine.RunListParams{Tag: "tag-3", Flow: "flow-1"}},
			} {
				b.Run(bc.name, func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						page, err := s.RunList(ctx, &bc.p)
						if err != nil {
							b.Fatal(err)
						}
						if len(page.Runs) == 0 {
							b.Fatal("empty page")
						}
					}
				})
			}
		})
	}
}
