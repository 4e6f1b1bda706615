package plugins_test

import (
	"context"
	"fmt"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/builtin"
	"github.com/pyoco/pyoco/plugins"
)

// Load builds the registry of a pyoco process: the built-in tasks first
// (they win every clash), then the plug-ins, with a report on each.
func ExampleLoad() {
	reg := engine.NewRegistry()
	if err := builtin.Register(reg); err != nil {
		panic(err)
	}
	greet := func(ctx context.Context, tc *engine.TaskContext, in map[string]any) (any, error) {
		return fmt.Sprintf("hello, %v", in["name"]), nil
	}
	rep, err := plugins.Load(context.Background(), reg, &plugins.Config{
		// Usually left nil: the plug-ins announced with engine.RegisterPlugin.
		GoPlugins: []engine.Plugin{
			{Name: "hello", Version: "1.0.0", Register: func(r *engine.Registry) error {
				return r.Task("greet", greet, engine.WithSummary("Greet someone."),
					engine.WithInputs(engine.Param{Name: "name", Type: "string", Required: true}))
			}},
			{Name: "broken", Register: func(*engine.Registry) error { return fmt.Errorf("missing licence key") }},
		},
		Path: []string{}, // no exec plug-ins; nil means $PYOCO_PLUGIN_PATH
	})
	if err != nil {
		panic(err)
	}
	for _, p := range rep.Plugins {
		fmt.Println(p.Origin, p.Name, p.Version, p.Tasks, p.Errors)
	}
	def, _ := reg.Lookup("hello/greet")
	out, _ := def.Run(context.Background(), &engine.TaskContext{}, map[string]any{"name": "pyoco"})
	fmt.Println(out)
	// Output:
	// go hello 1.0.0 [hello/greet] []
	// go broken  [] [plug-in broken: register: missing licence key]
	// hello, pyoco
}
