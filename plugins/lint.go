package plugins

import (
	"fmt"

	"github.com/pyoco/pyoco/engine"
)

// paramTypes are the types a task input or output may declare (see [engine.Param]).
var paramTypes = map[string]bool{
	"string": true, "number": true, "integer": true, "boolean": true,
	"object": true, "array": true, "duration": true, "any": true,
}

// Lint returns every reason the plug-ins of rep are not clean, one line
// each: the report's problems (describe errors, clashes, failed
// registrations), then for each task the plug-ins registered in reg: a
// missing summary, an input or output without a type or with a type
// [engine.Param] does not know. No lines means clean.
func Lint(rep *Report, reg *engine.Registry) []string {
	out := rep.Problems()
	for _, p := range rep.Plugins {
		for _, name := range p.Tasks {
			def, ok := reg.Lookup(name)
			if !ok {
				continue
			}
			if def.Summary == "" {
				out = append(out, fmt.Sprintf("task %s: missing summary", name))
			}
			for _, io := range []struct {
				kind   string
				params []engine.Param
			}{{"input", def.Inputs}, {"output", def.Outputs}} {
				for _, prm := range io.params {
					switch {
					case prm.Type == "":
						out = append(out, fmt.Sprintf("task %s: %s %q has no type", name, io.kind, prm.Name))
					case !paramTypes[prm.Type]:
						out = append(out, fmt.Sprintf("task %s: %s %q has unknown type %q", name, io.kind, prm.Name, prm.Type))
					case prm.Items != "" && prm.Type != "object" && prm.Type != "array":
						out = append(out, fmt.Sprintf("task %s: %s %q has items but type %q (items is for object and array)", name, io.kind, prm.Name, prm.Type))
					case prm.Items != "" && !paramTypes[prm.Items]:
						out = append(out, fmt.Sprintf("task %s: %s %q has unknown items type %q", name, io.kind, prm.Name, prm.Items))
					}
				}
			}
		}
	}
	return out
}
