package api

import (
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/pyoco/pyoco/engine"
)

// Bounds of the query parameters.
const (
	DefaultRunsLimit = 50
	MaxRunsLimit     = 500
	MaxLogsTail      = 10000
	// DefaultLogsLimit and MaxLogsLimit bound the entries of one answer of
	// GET /runs/{run_id}/logs (one page; continue with after=next_after).
	DefaultLogsLimit = 1000
	MaxLogsLimit     = 10000
	maxCursorLen     = 1024
	// maxFilterLen bounds tag and task filters and each tag of a run, in
	// characters (as the OpenAPI maxLength counts them).
	maxFilterLen = 256
)

var flowNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// checkKnown rejects query parameters other than known, so that a typo
// (stauts=FAILED) is an error instead of a silently unfiltered answer.
func checkKnown(q url.Values, known ...string) error {
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(known, k) {
			if len(known) == 0 {
				return errBadParam(clip(k), "unknown query parameter (this endpoint takes none)")
			}
			return errBadParam(clip(k), "unknown query parameter (known: %s)", strings.Join(known, ", "))
		}
	}
	return nil
}

// single returns the one value of param, rejecting repeats.
func single(q url.Values, param string) (string, bool, error) {
	vs, ok := q[param]
	if !ok {
		return "", false, nil
	}
	if len(vs) > 1 {
		return "", false, errBadParam(param, "given %d times; give it once", len(vs))
	}
	return vs[0], true, nil
}

// intParam parses param as an integer in lo..hi.
func intParam(q url.Values, param string, lo, hi int64) (int64, bool, error) {
	v, ok, err := single(q, param)
	if err != nil || !ok {
		return 0, false, err
	}
	n, perr := strconv.ParseInt(v, 10, 64)
	if perr != nil || n < lo || n > hi {
		return 0, false, errBadParam(param, "want an integer from %d to %d, got %q", lo, hi, clip(v))
	}
	return n, true, nil
}

// clip shortens a caller's value quoted back in a message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

// parseRunsQuery parses the query of GET /runs (SPEC §4) into list
// parameters. Its errors are 400s naming the parameter.
func parseRunsQuery(q url.Values) (*engine.RunListParams, error) {
	if err := checkKnown(q, "status", "flow", "tag", "limit", "cursor"); err != nil {
		return nil, err
	}
	p := &engine.RunListParams{Limit: DefaultRunsLimit}
	for _, v := range q["status"] {
		for _, part := range strings.Split(v, ",") {
			st := engine.RunStatus(strings.ToUpper(strings.TrimSpace(part)))
			if !st.Valid() {
				return nil, errBadParam("status", "unknown run status %q (want one of PENDING, RUNNING, CANCELLING, COMPLETED, FAILED, CANCELLED)", clip(part))
			}
			if !slices.Contains(p.Statuses, st) {
				p.Statuses = append(p.Statuses, st)
			}
		}
	}
	flow, ok, err := single(q, "flow")
	if err != nil {
		return nil, err
	}
	if ok && (len(flow) > maxFilterLen || !flowNameRE.MatchString(flow)) {
		return nil, errBadParam("flow", "want a flow name ([A-Za-z0-9_.-]+), got %q", clip(flow))
	}
	p.Flow = flow
	tag, ok, err := single(q, "tag")
	if err != nil {
		return nil, err
	}
	if ok && (tag == "" || utf8.RuneCountInString(tag) > maxFilterLen) {
		return nil, errBadParam("tag", "want a tag of 1 to %d characters", maxFilterLen)
	}
	p.Tag = tag
	if n, ok, err := intParam(q, "limit", 1, MaxRunsLimit); err != nil {
		return nil, err
	} else if ok {
		p.Limit = int(n)
	}
	cur, ok, err := single(q, "cursor")
	if err != nil {
		return nil, err
	}
	if ok && (cur == "" || len(cur) > maxCursorLen) {
		return nil, errBadParam("cursor", "not a cursor this server made (use next_cursor as is)")
	}
	p.Cursor = cur
	return p, nil
}

// logsQuery is the parsed query of GET /runs/{run_id}/logs.
type logsQuery struct {
	tail   int
	limit  int
	task   string
	after  int64
	follow bool
}

// parseLogsQuery parses the query of GET /runs/{run_id}/logs. Its errors
// are 400s naming the parameter.
func parseLogsQuery(q url.Values) (*logsQuery, error) {
	if err := checkKnown(q, "tail", "task", "after", "follow", "limit"); err != nil {
		return nil, err
	}
	lq := &logsQuery{limit: DefaultLogsLimit}
	if n, ok, err := intParam(q, "tail", 1, MaxLogsTail); err != nil {
		return nil, err
	} else if ok {
		lq.tail = int(n)
	}
	if n, ok, err := intParam(q, "limit", 1, MaxLogsLimit); err != nil {
		return nil, err
	} else if ok {
		lq.limit = int(n)
	}
	task, ok, err := single(q, "task")
	if err != nil {
		return nil, err
	}
	if ok && (task == "" || utf8.RuneCountInString(task) > maxFilterLen) {
		return nil, errBadParam("task", "want a task name of 1 to %d characters", maxFilterLen)
	}
	lq.task = task
	if n, ok, err := intParam(q, "after", 0, 1<<62); err != nil {
		return nil, err
	} else if ok {
		lq.after = n
	}
	f, ok, err := single(q, "follow")
	if err != nil {
		return nil, err
	}
	if ok {
		switch strings.ToLower(f) {
		case "true", "1":
			lq.follow = true
		case "false", "0":
		default:
			return nil, errBadParam("follow", "want true or false, got %q", clip(f))
		}
	}
	return lq, nil
}
