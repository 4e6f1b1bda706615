package engine

import (
	"fmt"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
)

// Plugin is a Go task plug-in: a package that calls [RegisterPlugin] from
// init() and is linked into a pyoco binary with a blank import, the way
// database/sql drivers are. Its tasks are addressed as "<Name>/<task>" in a
// flow's `use:`.
type Plugin struct {
	// Name is the plug-in's namespace: letters, digits, '_', '.', '-'.
	// "builtin" is reserved.
	Name string
	// Version is shown by `pyoco plugins list`; free form, e.g. "0.3.1".
	Version string
	// Register adds the plug-in's tasks to the registry it is given, with
	// [Registry.Task] or [Registry.Add]. Task names may be bare ("classify")
	// or already prefixed ("vision/classify"); a name in another plug-in's
	// namespace is an error. It is called once per registry that is built
	// (tests build several), so it must not keep state between calls. A
	// returned error or a panic is reported and the plug-in contributes no
	// tasks: pyoco still starts.
	Register func(*Registry) error
}

// pluginNameRE is what a plug-in name must look like: one segment of a task name.
var pluginNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

var (
	pluginsMu sync.RWMutex
	plugins   = make(map[string]Plugin)
)

// ValidPluginName reports why name cannot name a plug-in, or nil when it can.
func ValidPluginName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("plug-in name is empty")
	case name == BuiltinPlugin:
		return fmt.Errorf("plug-in name %q is reserved for the built-in tasks", name)
	case !pluginNameRE.MatchString(name):
		return fmt.Errorf("plug-in name %q: must match %s", name, pluginNameRE)
	}
	return nil
}

// RegisterPlugin announces a Go plug-in. Call it from an init() function.
// It panics, as a start-up bug, when p.Name is empty, malformed or reserved
// (see [ValidPluginName]), when p.Register is nil, or when a plug-in of
// that name is already registered. It is safe for concurrent use.
func RegisterPlugin(p Plugin) {
	if err := ValidPluginName(p.Name); err != nil {
		panic("engine.RegisterPlugin: " + err.Error())
	}
	if p.Register == nil {
		panic(fmt.Sprintf("engine.RegisterPlugin: plug-in %q: Register is nil", p.Name))
	}
	pluginsMu.Lock()
	defer pluginsMu.Unlock()
	if _, dup := plugins[p.Name]; dup {
		panic(fmt.Sprintf("engine.RegisterPlugin: plug-in %q already registered", p.Name))
	}
	plugins[p.Name] = p
}

// Plugins returns every plug-in announced with [RegisterPlugin], sorted by
// name. It registers nothing: build a [Registry] from them with
// [Plugin.Tasks] (the plugins package does, with reports).
func Plugins() []Plugin {
	pluginsMu.RLock()
	defer pluginsMu.RUnlock()
	out := make([]Plugin, 0, len(plugins))
	for _, p := range plugins {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Plugin) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Tasks calls p.Register on a fresh [Registry] and returns the tasks it
// added, sorted, each named "<p.Name>/<task>" and with Plugin set to
// p.Name. It returns an error, and no tasks, when Register returns one,
// panics, or adds a task outside p's namespace.
func (p Plugin) Tasks() (defs []TaskDef, err error) {
	if err := ValidPluginName(p.Name); err != nil {
		return nil, err
	}
	if p.Register == nil {
		return nil, fmt.Errorf("plug-in %s: Register is nil", p.Name)
	}
	scratch := NewRegistry()
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("plug-in %s: Register panicked: %v\n%s", p.Name, r, debug.Stack())
			}
		}()
		if rerr := p.Register(scratch); rerr != nil {
			err = fmt.Errorf("plug-in %s: register: %w", p.Name, rerr)
		}
	}()
	if err != nil {
		return nil, err
	}
	prefix := p.Name + "/"
	for _, d := range scratch.List() {
		def := *d
		switch ns, _, ok := strings.Cut(def.Name, "/"); {
		case !ok:
			def.Name = prefix + def.Name
		case ns != p.Name:
			return nil, fmt.Errorf("plug-in %s: task %q is outside its namespace %q", p.Name, def.Name, prefix)
		}
		def.Plugin = p.Name
		defs = append(defs, def)
	}
	slices.SortFunc(defs, func(a, b TaskDef) int { return strings.Compare(a.Name, b.Name) })
	return defs, nil
}

// TaskOption sets a piece of a task's metadata in [Registry.Task].
type TaskOption func(*TaskDef)

// WithSummary sets the one-line description shown by `pyoco tasks list`.
func WithSummary(s string) TaskOption { return func(d *TaskDef) { d.Summary = s } }

// WithTags sets the task's search tags.
func WithTags(tags ...string) TaskOption {
	return func(d *TaskDef) { d.Tags = slices.Clone(tags) }
}

// WithCategory sets the task's category (e.g. "vision", "system").
func WithCategory(c string) TaskOption { return func(d *TaskDef) { d.Category = c } }

// WithInputs describes the task's inputs.
func WithInputs(ps ...Param) TaskOption {
	return func(d *TaskDef) { d.Inputs = slices.Clone(ps) }
}

// WithOutputs describes the fields of the task's output.
func WithOutputs(ps ...Param) TaskOption {
	return func(d *TaskDef) { d.Outputs = slices.Clone(ps) }
}

// WithStrictInputs says that the task refuses inputs it does not declare
// (a [Typed] function does): `pyoco check` and every flow load then report
// such an input as an error (see [TaskDef.StrictInputs]).
func WithStrictInputs() TaskOption { return func(d *TaskDef) { d.StrictInputs = true } }

// Task registers fn under name with the metadata opts set; it is the
// helper form of [Registry.Add] and returns the same errors. Wrap a
// function taking a struct with [Typed] to get decoded, checked inputs.
func (r *Registry) Task(name string, fn TaskFunc, opts ...TaskOption) error {
	def := TaskDef{Name: name, Run: fn}
	for _, o := range opts {
		o(&def)
	}
	return r.Add(def)
}
