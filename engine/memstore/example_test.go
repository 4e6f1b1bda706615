package memstore_test

import (
	"context"
	"fmt"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/memstore"
)

// A run goes through the store from submit to finish; RunList pages newest
// first and leaves tasks out.
func Example() {
	ctx := context.Background()
	s := memstore.New()

	run := &engine.Run{
		ID:       engine.NewRunID(),
		FlowName: "hello",
		Status:   engine.RunPending,
		Tasks:    map[string]*engine.TaskState{"greet": {Name: "greet", Use: "echo", Status: engine.TaskPending}},
	}
	if err := s.RunCreate(ctx, run); err != nil {
		panic(err)
	}
	started, _ := s.RunStart(ctx, &engine.RunStartParams{RunID: run.ID, WorkerID: "w1"})
	fmt.Println(started.Status, started.Attempt)

	_ = s.TaskUpdate(ctx, &engine.TaskUpdateParams{RunID: run.ID, Task: "greet", Status: engine.TaskSucceeded})
	finished, _ := s.RunFinish(ctx, &engine.RunFinishParams{RunID: run.ID, Status: engine.RunCompleted})
	fmt.Println(finished.Status, finished.Tasks["greet"].Status)

	page, _ := s.RunList(ctx, &engine.RunListParams{Statuses: []engine.RunStatus{engine.RunCompleted}})
	fmt.Println(len(page.Runs), page.Runs[0].Tasks == nil, page.NextCursor == "")

	events, _ := s.EventList(ctx, &engine.EventListParams{})
	for _, e := range events {
		fmt.Println(e.ID, e.Status)
	}
	// Output:
	// RUNNING 1
	// COMPLETED SUCCEEDED
	// 1 true true
	// 1 PENDING
	// 2 RUNNING
	// 3 COMPLETED
}
