package plugins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pyoco/pyoco/engine"
)

// Origins of a plug-in, as in [PluginReport].Origin.
const (
	OriginGo   = "go"
	OriginExec = "exec"
)

// Defaults of [Config].
const (
	DefaultDescribeTimeout = 5 * time.Second
	DefaultWaitDelay       = 5 * time.Second
	DefaultOutputMaxBytes  = 1 << 20
)

// PathEnv is the environment variable listing the exec plug-in directories.
const PathEnv = "PYOCO_PLUGIN_PATH"

// CacheOff as Config.CacheDir disables the on-disk describe cache.
const CacheOff = "off"

// Config tunes [Load]. The zero value is usable: every field has a default.
type Config struct {
	// Path lists the directories searched for exec plug-ins, in order.
	// Defaults to $PYOCO_PLUGIN_PATH (read with Getenv) split on
	// os.PathListSeparator, or ~/.pyoco/plugins when that is unset or
	// empty. A non-nil empty slice disables exec plug-ins. Directories
	// that do not exist are skipped silently, as in $PATH.
	Path []string
	// GoPlugins are the Go plug-ins to load. Defaults to [engine.Plugins];
	// a non-nil empty slice loads none.
	GoPlugins []engine.Plugin
	// DescribeTimeout bounds one `describe` of an exec plug-in. Defaults to 5s.
	DescribeTimeout time.Duration
	// WaitDelay is the grace a cancelled or timed-out exec plug-in gets
	// between SIGTERM and SIGKILL (sent to its whole process group).
	// Defaults to 5s.
	WaitDelay time.Duration
	// OutputMaxBytes caps what an exec plug-in may print on stdout, for
	// `describe` and for each `run`; more is rejected with an error.
	// Defaults to 1 MiB.
	OutputMaxBytes int
	// CacheDir keeps describe results across processes, keyed by the
	// binary's path, modification time and size. Defaults to
	// <os.UserCacheDir>/pyoco/plugins (no disk cache if there is none);
	// [CacheOff] disables it. Results are always cached in memory for the
	// life of the process.
	CacheDir string
	// Strict makes [Load] return an error when any plug-in has a warning or
	// an error (the tasks that did load stay registered).
	Strict bool
	// Getenv reads PYOCO_PLUGIN_PATH and HOME. Defaults to os.Getenv.
	Getenv func(string) string
}

func (c *Config) withDefaults() (Config, error) {
	var cfg Config
	if c != nil {
		cfg = *c
	}
	if cfg.Getenv == nil {
		cfg.Getenv = os.Getenv
	}
	if cfg.GoPlugins == nil {
		cfg.GoPlugins = engine.Plugins()
	}
	if cfg.Path == nil {
		cfg.Path = DefaultPath(cfg.Getenv)
	}
	switch {
	case cfg.DescribeTimeout == 0:
		cfg.DescribeTimeout = DefaultDescribeTimeout
	case cfg.DescribeTimeout < 0:
		return cfg, fmt.Errorf("plugins config: DescribeTimeout %s: want a positive duration", cfg.DescribeTimeout)
	}
	switch {
	case cfg.WaitDelay == 0:
		cfg.WaitDelay = DefaultWaitDelay
	case cfg.WaitDelay < 0:
		return cfg, fmt.Errorf("plugins config: WaitDelay %s: want a positive duration", cfg.WaitDelay)
	}
	switch {
	case cfg.OutputMaxBytes == 0:
		cfg.OutputMaxBytes = DefaultOutputMaxBytes
	case cfg.OutputMaxBytes < 0:
		return cfg, fmt.Errorf("plugins config: OutputMaxBytes %d: want 0 or more", cfg.OutputMaxBytes)
	}
	switch cfg.CacheDir {
	case "":
		if dir, err := os.UserCacheDir(); err == nil {
			cfg.CacheDir = filepath.Join(dir, "pyoco", "plugins")
		} else {
			cfg.CacheDir = CacheOff
		}
	case CacheOff:
	default:
		if !filepath.IsAbs(cfg.CacheDir) {
			return cfg, fmt.Errorf("plugins config: CacheDir %q: want an absolute path", cfg.CacheDir)
		}
	}
	return cfg, nil
}

// DefaultPath returns the exec plug-in directories named by
// $PYOCO_PLUGIN_PATH, or ~/.pyoco/plugins when it is unset or empty (none
// when the home directory is unknown). Empty entries are dropped.
func DefaultPath(getenv func(string) string) []string {
	if v := getenv(PathEnv); v != "" {
		var dirs []string
		for _, d := range filepath.SplitList(v) {
			if d != "" {
				dirs = append(dirs, d)
			}
		}
		return dirs
	}
	home := getenv("HOME")
	if home == "" {
		home, _ = os.UserHomeDir()
	}
	if home == "" {
		return []string{}
	}
	return []string{filepath.Join(home, ".pyoco", "plugins")}
}

// Report says what [Load] did with each plug-in it found.
type Report struct {
	// Path is the exec plug-in directories searched, in order.
	Path []string `json:"path"`
	// Plugins are in load order: Go plug-ins by name, then exec plug-ins
	// in path order (directories in order, files by name within one).
	Plugins []PluginReport `json:"plugins"`
}

// PluginReport is what became of one plug-in.
type PluginReport struct {
	Name string `json:"name"`
	// Origin is [OriginGo] or [OriginExec].
	Origin  string `json:"origin"`
	Version string `json:"version"`
	// Path is an exec plug-in's executable ("" for Go plug-ins).
	Path string `json:"path,omitempty"`
	// Tasks are the full names ("<plugin>/<task>") that were registered.
	Tasks []string `json:"tasks"`
	// Warnings are problems that left the plug-in, or some of its tasks,
	// out while pyoco goes on: a name clash, a task name already taken.
	Warnings []string `json:"warnings"`
	// Errors are why the plug-in could not load at all: a crashing or
	// hanging describe, bad JSON, a Register that failed or panicked.
	Errors []string `json:"errors"`
}

// OK reports whether the plug-in loaded without warnings or errors.
func (p *PluginReport) OK() bool { return len(p.Warnings) == 0 && len(p.Errors) == 0 }

// Problems returns one line per warning and error of every plug-in, e.g.
// `exec plug-in "pyfun" (/p/pyoco-plugin-pyfun): describe: timed out after 5s`.
func (r *Report) Problems() []string {
	var out []string
	for _, p := range r.Plugins {
		for _, m := range append(append([]string(nil), p.Errors...), p.Warnings...) {
			out = append(out, p.label()+": "+m)
		}
	}
	return out
}

func (p *PluginReport) label() string {
	if p.Path != "" {
		return fmt.Sprintf("%s plug-in %q (%s)", p.Origin, p.Name, p.Path)
	}
	return fmt.Sprintf("%s plug-in %q", p.Origin, p.Name)
}

// ErrProblems is wrapped by the error of [Report.Err].
var ErrProblems = errors.New("plug-in problems")

// Err returns nil when every plug-in loaded cleanly, and otherwise an error
// wrapping [ErrProblems] that lists them.
func (r *Report) Err() error {
	probs := r.Problems()
	if len(probs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrProblems, strings.Join(probs, "; "))
}

// Load adds the tasks of every Go plug-in and every exec plug-in found to
// reg and reports what happened. Plug-in problems do not make it fail: they
// are in the report, unless cfg.Strict, when the report's error is
// returned too. Other errors are a bad Config and ctx ending.
//
// Clash rule (deterministic, first wins): what reg already holds (the
// built-in tasks, anything the caller added) always wins over plug-ins;
// then Go plug-ins in name order, then exec plug-ins in path order. A
// plug-in whose name is already taken is not loaded at all (a warning
// names the winner); a task whose full name is taken is skipped (a
// warning on its plug-in).
func Load(ctx context.Context, reg *engine.Registry, cfg *Config) (*Report, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	l := &loader{cfg: c, reg: reg, claimed: make(map[string]string)}
	rep := &Report{Path: nonNil(c.Path)}
	for _, p := range c.GoPlugins {
		rep.Plugins = append(rep.Plugins, l.loadGo(p))
	}
	for _, cand := range discover(c.Path) {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("load plug-ins: %w", context.Cause(ctx))
		}
		rep.Plugins = append(rep.Plugins, l.loadExec(ctx, cand))
	}
	for i := range rep.Plugins {
		p := &rep.Plugins[i]
		p.Tasks, p.Warnings, p.Errors = nonNil(p.Tasks), nonNil(p.Warnings), nonNil(p.Errors)
	}
	if c.Strict {
		if err := rep.Err(); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

type loader struct {
	cfg     Config
	reg     *engine.Registry
	claimed map[string]string // plug-in name → label of the plug-in that has it
}

// claim takes name for rep, or records on rep who has it already.
func (l *loader) claim(rep *PluginReport) bool {
	if err := engine.ValidPluginName(rep.Name); err != nil {
		rep.Errors = append(rep.Errors, err.Error())
		return false
	}
	if winner, ok := l.claimed[rep.Name]; ok {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("name clash: shadowed by %s, not loaded", winner))
		return false
	}
	l.claimed[rep.Name] = rep.label()
	return true
}

func (l *loader) loadGo(p engine.Plugin) PluginReport {
	rep := PluginReport{Name: p.Name, Origin: OriginGo, Version: p.Version}
	if !l.claim(&rep) {
		return rep
	}
	defs, err := p.Tasks()
	if err != nil {
		rep.Errors = append(rep.Errors, err.Error())
		return rep
	}
	l.add(&rep, defs)
	return rep
}

// add registers defs, skipping (with a warning) names already taken.
func (l *loader) add(rep *PluginReport, defs []engine.TaskDef) {
	for _, d := range defs {
		if old, ok := l.reg.Lookup(d.Name); ok {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("name clash: task %s is already provided by %s, not registered", d.Name, pluginLabel(old.Plugin)))
			continue
		}
		if err := l.reg.Add(d); err != nil {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("task %s not registered: %v", d.Name, err))
			continue
		}
		rep.Tasks = append(rep.Tasks, d.Name)
	}
}

func pluginLabel(name string) string {
	if name == engine.BuiltinPlugin || name == "" {
		return "the built-in tasks"
	}
	return fmt.Sprintf("plug-in %q", name)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// MarshalJSON writes nil lists as [] (the API schema says array, never
// null): GET /plugins and `pyoco plugins list --json` both encode a Report.
func (r Report) MarshalJSON() ([]byte, error) {
	type plain Report
	if r.Path == nil {
		r.Path = []string{}
	}
	if r.Plugins == nil {
		r.Plugins = []PluginReport{}
	}
	return json.Marshal(plain(r))
}

// MarshalJSON writes nil lists as [], like [Report.MarshalJSON].
func (p PluginReport) MarshalJSON() ([]byte, error) {
	type plain PluginReport
	for _, l := range []*[]string{&p.Tasks, &p.Warnings, &p.Errors} {
		if *l == nil {
			*l = []string{}
		}
	}
	return json.Marshal(plain(p))
}
