package engine

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"sync"
)

// BuiltinPlugin is the plug-in name of the built-in tasks.
const BuiltinPlugin = "builtin"

var taskNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)?$`)

// Registry holds the task implementations a scheduler can run. The zero value
// is not usable; call [NewRegistry]. A Registry is safe for concurrent use.
type Registry struct {
	mu    sync.RWMutex
	tasks map[string]*TaskDef
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{tasks: make(map[string]*TaskDef)}
}

// ErrDuplicateTask is returned by [Registry.Add] for a name already registered.
var ErrDuplicateTask = errors.New("task already registered")

// Add registers def. It returns an error for an empty or malformed name, a
// nil Run, or a name that is already registered (wrapping [ErrDuplicateTask]).
func (r *Registry) Add(def TaskDef) error {
	if !taskNameRE.MatchString(def.Name) {
		return fmt.Errorf("register task %q: name must match %s", def.Name, taskNameRE)
	}
	if def.Run == nil {
		return fmt.Errorf("register task %q: Run is nil", def.Name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.tasks[def.Name]; ok {
		return fmt.Errorf("register task %q (plug-in %s): %w by plug-in %s", def.Name, def.Plugin, ErrDuplicateTask, old.Plugin)
	}
	d := def
	d.Tags = slices.Clone(def.Tags)
	d.Inputs = slices.Clone(def.Inputs)
	d.Outputs = slices.Clone(def.Outputs)
	r.tasks[def.Name] = &d
	return nil
}

// Lookup returns the task registered under name.
func (r *Registry) Lookup(name string) (*TaskDef, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	d, ok := r.tasks[name]
	return d, ok
}

// Remove unregisters name and reports whether it was registered.
func (r *Registry) Remove(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.tasks[name]
	delete(r.tasks, name)
	return ok
}

// List returns every registered task, sorted by name.
func (r *Registry) List() []*TaskDef {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*TaskDef, 0, len(r.tasks))
	for _, d := range r.tasks {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
