package engine

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/robfig/cron/v3"
)

// Catchup says what a schedule does with the ticks it missed while no
// server ran it (docs/flows.md, "Schedules").
type Catchup string

// Catch-up policies.
const (
	// CatchupNone skips missed ticks: only a tick that is on time runs.
	CatchupNone Catchup = "none"
	// CatchupOne runs the latest missed tick once, for all of them (the default).
	CatchupOne Catchup = "one"
	// CatchupAll runs every missed tick, oldest first, at most
	// [MaxCatchupRuns] of them (the latest ones); older ones are skipped.
	CatchupAll Catchup = "all"
)

// Limits of flow.schedule.
const (
	// MaxCatchupRuns bounds the runs that catchup: all starts for the
	// ticks missed in one outage.
	MaxCatchupRuns = 100
	// MaxSchedules bounds the schedules of one flow.
	MaxSchedules = 100
	// MinScheduleEvery is the shortest every: interval.
	MinScheduleEvery = time.Second
)

var scheduleKeys = []string{"name", "cron", "every", "timezone", "params", "catchup"}

// cronParser reads the classic five fields (minute hour day-of-month month
// day-of-week) and the descriptors @yearly, @monthly, @weekly, @daily,
// @hourly.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Schedule is one entry of flow.schedule: when a server starts runs of the
// flow on its own. Exactly one of Cron and Every is set. A Schedule is
// immutable once loaded.
type Schedule struct {
	// Name identifies the schedule within its flow: in the run tag
	// "schedule:<name>", the API and the store's claim state. Defaults to
	// the entry's index in flow.schedule ("0", "1", …).
	Name string
	// Cron is a five-field cron expression (or a descriptor such as
	// @daily), read in Location.
	Cron string
	// Every is a fixed interval; its ticks are the multiples of it since
	// the Unix epoch (every: 30s fires at :00 and :30 of each minute).
	Every time.Duration
	// Timezone is the IANA name the cron expression is read in ("" for UTC).
	Timezone string
	// Location is Timezone loaded (UTC when none).
	Location *time.Location
	// Params override the flow defaults in the runs it starts.
	Params map[string]any
	// Catchup defaults to [CatchupOne].
	Catchup Catchup
	// Pos is where the entry is declared.
	Pos Position

	spec cron.Schedule // Cron parsed; nil for Every
}

// Spec is the schedule's timing as written: the cron text, or "every <d>".
func (s *Schedule) Spec() string {
	if s.Cron != "" {
		return s.Cron
	}
	return "every " + s.Every.String()
}

// Tag is the tag of the runs the schedule starts: "schedule:<name>".
func (s *Schedule) Tag() string { return "schedule:" + s.Name }

// Next returns the first tick strictly after t (in UTC), or the zero time
// if there is none within five years (a cron expression such as
// "0 0 30 2 *" never fires).
func (s *Schedule) Next(t time.Time) time.Time {
	if s.spec == nil {
		d := s.Every.Nanoseconds()
		if d <= 0 {
			return time.Time{}
		}
		ns := t.UnixNano()
		q := ns / d
		if ns < 0 && ns%d != 0 {
			q-- // floor division
		}
		return time.Unix(0, (q+1)*d).UTC()
	}
	n := s.spec.Next(t)
	if n.IsZero() {
		return n
	}
	return n.UTC()
}

// schedules reads flow.schedule: a list of entries (a single mapping is
// accepted too).
func (l *loader) schedules(f *Flow, v field) {
	n, release := l.deref(v.value)
	defer release()
	var items []ast.Node
	switch t := n.(type) {
	case nil:
		return
	case *ast.NullNode:
		return
	case *ast.SequenceNode:
		items = t.Values
	case *ast.MappingNode:
		items = []ast.Node{t}
	default:
		l.errorf(l.pos(n), "flow.schedule must be a list of schedules, got %s", nodeKind(n))
		return
	}
	if len(items) > MaxSchedules {
		l.errorf(v.keyPos, "flow.schedule has %d entries: at most %d", len(items), MaxSchedules)
		return
	}
	names := make(map[string]Position, len(items))
	for i, item := range items {
		s := l.schedule(i, item)
		if s == nil {
			continue
		}
		if first, dup := names[s.Name]; dup {
			l.errorf(s.Pos, "duplicate schedule name %q (first at %s); give each schedule its own name", s.Name, shortPos(first))
			continue
		}
		names[s.Name] = s.Pos
		f.Schedules = append(f.Schedules, s)
	}
}

// schedule reads one entry of flow.schedule; nil when it is unusable.
func (l *loader) schedule(i int, item ast.Node) *Schedule {
	where := fmt.Sprintf("flow.schedule[%d]", i)
	entries, ok := l.mapping(item, where)
	if !ok {
		return nil
	}
	s := &Schedule{Name: strconv.Itoa(i), Catchup: CatchupOne, Location: time.UTC, Pos: l.startPos(item)}
	if len(entries) > 0 {
		s.Pos = entries[0].keyPos
	}
	fields := l.fields(entries, where, scheduleKeys)
	good := true
	if fv, ok := fields["name"]; ok {
		if name, ok := l.text(fv.value, where+".name"); ok {
			switch {
			case len(name) > MaxNameLen:
				l.errorf(l.pos(fv.value), "%s: name is %d bytes long: at most %d", where, len(name), MaxNameLen)
				good = false
			case !isTaskName(name):
				l.errorf(l.pos(fv.value), "%s: invalid name %q: use letters, digits, '_', '.' and '-'", where, name)
				good = false
			default:
				s.Name = name
			}
		} else {
			good = false
		}
	}
	cronF, hasCron := fields["cron"]
	everyF, hasEvery := fields["every"]
	switch {
	case hasCron && hasEvery:
		l.errorf(everyF.keyPos, "%s has both cron and every: give one of them", where)
		return nil
	case !hasCron && !hasEvery:
		l.errorf(s.Pos, "%s needs cron (e.g. cron: \"*/5 * * * *\") or every (e.g. every: 30s)", where)
		return nil
	}
	if fv, ok := fields["timezone"]; ok {
		if tz, ok := l.text(fv.value, where+".timezone"); ok {
			switch {
			case hasEvery:
				l.errorf(fv.keyPos, "%s: timezone applies to cron only (every counts from the Unix epoch)", where)
				good = false
			case tz == "" || tz == "Local" || strings.ContainsAny(tz, "\x00\\") || strings.HasPrefix(tz, "/") || strings.Contains(tz, ".."):
				l.errorf(l.pos(fv.value), "%s: unknown timezone %q (want an IANA name such as Europe/Paris or UTC)", where, tz)
				good = false
			default:
				loc, err := time.LoadLocation(tz)
				if err != nil {
					l.errorf(l.pos(fv.value), "%s: unknown timezone %q (want an IANA name such as Europe/Paris or UTC)", where, tz)
					good = false
				} else {
					s.Timezone, s.Location = tz, loc
				}
			}
		} else {
			good = false
		}
	}
	if hasCron {
		text, ok := l.text(cronF.value, where+".cron")
		if !ok {
			return nil
		}
		text = strings.TrimSpace(text)
		pos := l.pos(cronF.value)
		switch {
		case strings.HasPrefix(text, "@every"):
			l.errorf(pos, "%s: bad cron %q: write every: <duration> instead of @every", where, text)
			return nil
		case strings.HasPrefix(text, "TZ=") || strings.HasPrefix(text, "CRON_TZ="):
			l.errorf(pos, "%s: bad cron %q: give the time zone as timezone:, not in the expression", where, text)
			return nil
		}
		sched, err := cronParser.Parse(text)
		if err != nil {
			l.errorf(pos, "%s: bad cron %q: %v (want five fields: minute hour day-of-month month day-of-week)", where, text, err)
			return nil
		}
		spec, ok := sched.(*cron.SpecSchedule)
		if !ok {
			l.errorf(pos, "%s: bad cron %q", where, text)
			return nil
		}
		spec.Location = s.Location
		s.Cron, s.spec = text, spec
		if s.Next(time.Now()).IsZero() {
			l.errorf(pos, "%s: cron %q never fires", where, text)
			return nil
		}
	}
	if hasEvery {
		d, ok := l.duration(everyF.value, where+".every")
		if !ok {
			return nil
		}
		if d < MinScheduleEvery {
			l.errorf(l.pos(everyF.value), "%s: every must be at least %s, got %s", where, MinScheduleEvery, d)
			return nil
		}
		s.Every = d
	}
	if fv, ok := fields["catchup"]; ok {
		if c, ok := l.text(fv.value, where+".catchup"); ok {
			switch cu := Catchup(c); cu {
			case CatchupNone, CatchupOne, CatchupAll:
				s.Catchup = cu
			default:
				l.errorf(l.pos(fv.value), "%s: bad catchup %q (want none, one or all)", where, c)
				good = false
			}
		} else {
			good = false
		}
	}
	if fv, ok := fields["params"]; ok {
		if entries, ok := l.mapping(fv.value, where+".params"); ok {
			s.Params = make(map[string]any, len(entries))
			for _, e := range entries {
				val, ok := l.value(e.value, nil, 0)
				good = good && ok
				s.Params[e.key] = val
			}
		} else {
			good = false
		}
	}
	if !good {
		return nil
	}
	return s
}
