package builtin_test

import (
	"context"
	"fmt"
	"os"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/builtin"
)

func ExampleRegister() {
	reg := engine.NewRegistry()
	if err := builtin.Register(reg); err != nil {
		panic(err)
	}
	for _, def := range reg.List() {
		fmt.Printf("%s: %s\n", def.Name, def.Summary)
	}

	// Outside the engine a task can be run directly; the engine gives it a
	// TaskContext whose writers and logger feed the run's logs.
	shell, _ := reg.Lookup("shell")
	out, err := shell.Run(context.Background(), &engine.TaskContext{Stdout: os.Stdout},
		map[string]any{"cmd": "echo hello from $WHO", "env": map[string]any{"WHO": "pyoco"}})
	fmt.Println(out, err)
	// Output:
	// fail: Always fail, with a message; for tests and demos.
	// http: Send an HTTP request, carrying the task's trace context, and return the response.
	// log: Write a message to the run's logs and return it.
	// noop: Do nothing and succeed; a placeholder or join point in a graph.
	// shell: Run a command with /bin/sh -c, streaming its stdout and stderr into the run's logs.
	// sleep: Wait for a duration; stops early when the task is cancelled or times out.
	// hello from pyoco
	// map[exit_code:0 stdout:hello from pyoco
	// ] <nil>
}
