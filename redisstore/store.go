package redisstore

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pyoco/pyoco/engine"
)

const (
	// defaultListLimit is RunList's page size when RunListParams.Limit <= 0.
	defaultListLimit = 50
	// defaultListBudget bounds the index members one list.lua call
	// examines, so one call never blocks Redis for long.
	defaultListBudget = 1000
	// logPage is how many log entries LogList reads per round trip when it
	// filters by task.
	logPage = 1000
	// sweepEvery is the least time between two lazy retention sweeps of one
	// Store (RunCreate and RunList trigger them).
	sweepEvery = time.Second
	// sweepBatch bounds the runs one sweep.lua call removes; a full batch
	// makes the next call sweep again at once.
	sweepBatch = 500
)

// Store is an [engine.Store] on Redis that also implements
// [engine.CancelNotifier], the queue capabilities ([engine.Queue],
// [engine.QueueBatchPopper], [engine.QueueStats], [engine.WorkerRegistry],
// [engine.Pinger]), [engine.IdempotencyStore] and [engine.ScheduleStore]
// (schedule.go). Create it with [New]. It
// is safe for concurrent use and needs no Close: it uses the client's pool,
// plus one pub/sub connection and goroutine only while RunCancelNotify
// channels are open (and 200ms after). It keeps no state about the
// deliveries it serves: ownership comes in each write's params (the
// RunAttempt fence, the Lease to settle).
//
// Every change of a run's status, its index entries and its event happens in
// one Lua script, so it is atomic on a single Redis and on Redis Cluster
// alike: all keys of a namespace share the hash tag "{namespace}", or with
// several partitions all keys of a run and its partition share
// "{namespace:p<k>}" (partition.go). See docs/redis.md for the key layout.
//
// Errors wrap [engine.ErrNotFound], [engine.ErrConflict],
// [engine.ErrBadCursor] as the contract says, and [engine.ErrUnavailable]
// when Redis cannot be reached.
type Store struct {
	client redis.UniversalClient
	cfg    Config
	keys   keys
	// parts are the keys of each partition (partition.go); parts[0] is
	// keys when there is one.
	parts []keys
	// partCheck and partReady: the stored partition count was checked
	// (partition.go).
	partCheck partitionState
	partReady atomic.Bool
	// pops is the per-consumer state of QueuePopBatch over several
	// partitions (queue_partition.go).
	pops popStates

	// listBudget bounds the index members one list.lua call examines
	// (defaultListBudget; tests lower it).
	listBudget int
	// nextSweep is the Unix ms after which RunCreate or RunList sweep.
	nextSweep atomic.Int64
	// partGroup[k] is set once partition k's queue consumer group is known
	// to exist (queue.go).
	partGroup []atomic.Bool
	// hub shares one cancel subscription among RunCancelNotify waiters
	// (notify.go).
	hub cancelHub
}

// New returns a Store that keeps its state in client's Redis, under
// cfg.Namespace. cfg may be nil (every default). It returns an error naming
// the field if cfg is invalid. New does not contact Redis.
func New(client redis.UniversalClient, cfg *Config) (*Store, error) {
	if client == nil {
		return nil, errors.New("redisstore: nil client")
	}
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Store{client: client, cfg: c, keys: newKeys(c.Namespace), parts: partitionKeys(c.Namespace, c.Partitions), listBudget: defaultListBudget}
	s.partGroup = make([]atomic.Bool, len(s.parts))
	return s, nil
}

// Ping checks that Redis answers; the error wraps [engine.ErrUnavailable]
// when it does not (for readiness probes). It also checks, once, that the
// namespace is laid out in [Config.Partitions] partitions (a plain error
// naming both counts otherwise).
func (s *Store) Ping(ctx context.Context) error {
	if err := s.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping redis: %w", interpretError(err))
	}
	return s.ready(ctx)
}

// RunCreate stores a copy of run, with its tasks, adds it to the indexes (all
// runs, PENDING, its flow, each distinct tag) and records its PENDING event,
// in one script. run.Status and every task must be PENDING (a plain error
// otherwise); a zero CreatedAt is set to the current time in the stored copy.
// Times are kept to the millisecond. It returns an error wrapping
// [engine.ErrConflict] if the ID exists.
func (s *Store) RunCreate(ctx context.Context, run *engine.Run) error {
	ks, args, err := s.createArgs(run)
	if err != nil {
		return err
	}
	if err := s.ready(ctx); err != nil {
		return fmt.Errorf("create run %s: %w", run.ID, err)
	}
	s.maybeSweep(ctx)
	if err := createScript.Run(ctx, s.client, ks, args...).Err(); err != nil {
		return fmt.Errorf("create run %s: %w", run.ID, interpretError(err))
	}
	return nil
}

// createArgs checks a run given to RunCreate and returns create.lua's keys
// and arguments.
func (s *Store) createArgs(run *engine.Run) ([]string, []any, error) {
	if run == nil || run.ID == "" {
		return nil, nil, errors.New("create run: missing run ID")
	}
	if run.Status != engine.RunPending {
		return nil, nil, fmt.Errorf("create run %s: status is %s, want %s", run.ID, run.Status, engine.RunPending)
	}
	for name, ts := range run.Tasks {
		if ts == nil || ts.Status != engine.TaskPending {
			return nil, nil, fmt.Errorf("create run %s: task %s is not %s", run.ID, name, engine.TaskPending)
		}
	}
	r := *run
	if r.CreatedAt.IsZero() {
		r.CreatedAt = time.Now()
	}
	r.CreatedAt = r.CreatedAt.Truncate(time.Millisecond)
	tags := uniq(r.Tags)
	member := indexMember(r.CreatedAt, r.ID)
	pk := s.part(r.ID)

	args, err := runFields(&r, member, pk.gcRecord(r.ID, member, r.FlowName, tags))
	if err != nil {
		return nil, nil, fmt.Errorf("create run %s: %w", r.ID, err)
	}
	nRun := len(args)
	for _, name := range sortedKeys(r.Tasks) {
		tf, err := taskFields(name, r.Tasks[name])
		if err != nil {
			return nil, nil, fmt.Errorf("create run %s: %w", r.ID, err)
		}
		args = append(args, tf...)
	}
	queue := "1"
	if r.ParentRunID != "" {
		queue = "" // a sub-flow's run is run by its parent, not queued
	}
	args = append([]any{member, s.cfg.EventMaxLen, r.ID, r.FlowName, ms(r.CreatedAt), nRun, queue}, args...)
	ks := []string{
		pk.run(r.ID), pk.tasks(r.ID), pk.events(),
		pk.all(), pk.status(engine.RunPending), pk.flow(r.FlowName),
		pk.queue(), pk.queued(),
	}
	for _, t := range tags {
		ks = append(ks, pk.tag(t))
	}
	return ks, args, nil
}

// RunGet returns the run with its tasks, read in one consistent snapshot, or
// an error wrapping [engine.ErrNotFound].
func (s *Store) RunGet(ctx context.Context, id string) (*engine.Run, error) {
	if err := s.ready(ctx); err != nil {
		return nil, fmt.Errorf("get run %s: %w", id, err)
	}
	pk := s.part(id)
	v, err := getScript.Run(ctx, s.client, []string{pk.run(id), pk.tasks(id)}).Result()
	if err != nil {
		return nil, fmt.Errorf("get run %s: %w", id, interpretError(err))
	}
	r, err := parseRunWithTasks(v)
	if err != nil {
		return nil, fmt.Errorf("get run %s: %w", id, err)
	}
	return r, nil
}

// RunStart hands the run to p.WorkerID: PENDING becomes RUNNING with
// StartedAt p.At, moving between the status indexes and recording a RUNNING
// event; a RUNNING or CANCELLING run (a takeover) keeps its status and
// StartedAt and records no event. Either way Attempt is incremented and
// WorkerID set. A zero p.At means now. It returns the run with its tasks;
// its Attempt is the fence the caller passes in its later writes'
// RunAttempt. It returns an error wrapping [engine.ErrConflict] if the run
// is terminal, [engine.ErrNotFound] if unknown; then p.Lease, if set, is
// acknowledged in the same script.
func (s *Store) RunStart(ctx context.Context, p *engine.RunStartParams) (*engine.Run, error) {
	t0 := time.Now()
	v, err := s.runStartCmd(ctx, s.client, p).Result()
	return s.runStartResult(p, t0, v, err)
}

// runStartCmd queues (or, on a client, runs) start.lua for p.
func (s *Store) runStartCmd(ctx context.Context, c redis.Scripter, p *engine.RunStartParams) *redis.Cmd {
	pk := s.part(p.RunID)
	ks := []string{
		pk.run(p.RunID), pk.tasks(p.RunID), pk.events(),
		pk.status(engine.RunPending), pk.status(engine.RunRunning),
		pk.queued(), pk.queue(),
	}
	return startScript.Run(ctx, c, ks, p.WorkerID, ms(orNow(p.At)), s.cfg.EventMaxLen, queueGroup, leaseID(p.Lease))
}

func (s *Store) runStartResult(p *engine.RunStartParams, t0 time.Time, v any, err error) (*engine.Run, error) {
	if err != nil {
		return nil, fmt.Errorf("start run %s: %w", p.RunID, interpretError(err))
	}
	r, err := parseRunWithTasks(v)
	if err != nil {
		return nil, fmt.Errorf("start run %s: %w", p.RunID, err)
	}
	if r.Status == engine.RunRunning {
		s.hub.started(r.ID, t0)
	}
	return r, nil
}

// leaseID is l's entry ID, or "" for none.
func leaseID(l *engine.Lease) string {
	if l == nil {
		return ""
	}
	return leaseEntry(l.ID)
}

// fenceArg is a RunAttempt fence as a script argument ("" for none).
func fenceArg(attempt int) string {
	if attempt == 0 {
		return ""
	}
	return strconv.Itoa(attempt)
}

// RunFinish moves a non-terminal run (PENDING included) to p.Status
// (COMPLETED, FAILED or CANCELLED), sets EndedAt to p.At (zero means now) and
// Error to p.Error, moves it between status indexes, records the event and
// starts its retention: after [Config.Retention] the run, its tasks and logs
// expire and the indexes forget it. p.Tasks are written first, in the same
// script (one of an unknown task is skipped). It returns the run with its
// tasks; an error wrapping [engine.ErrConflict] if the run is already
// terminal, [engine.ErrNotFound] if unknown, and a plain error if p.Status
// is not terminal. p.Lease, if set, is acknowledged in the same script,
// whatever the outcome; but when p.RunAttempt is set and differs from the
// run's attempt (another worker took the run over), nothing changes, not
// even the entry (the new owner holds it), and the error wraps
// [engine.ErrConflict] ("owner lost").
func (s *Store) RunFinish(ctx context.Context, p *engine.RunFinishParams) (*engine.Run, error) {
	cmd, err := s.runFinishCmd(ctx, s.client, p)
	if err != nil {
		return nil, err
	}
	return s.runFinishResult(p, cmd.Val(), cmd.Err())
}

// runFinishCmd queues (or, on a client, runs) finish.lua for p.
func (s *Store) runFinishCmd(ctx context.Context, c redis.Scripter, p *engine.RunFinishParams) (*redis.Cmd, error) {
	args, err := s.finishArgs(p)
	if err != nil {
		return nil, err
	}
	pk := s.part(p.RunID)
	ks := append([]string{
		pk.run(p.RunID), pk.tasks(p.RunID), pk.logs(p.RunID), pk.events(), pk.expiry(),
	}, pk.statuses()...)
	ks = append(ks, pk.queued(), pk.queue())
	return finishScript.Run(ctx, c, ks, args...), nil
}

// finishArgs returns finish.lua's ARGV for p.
func (s *Store) finishArgs(p *engine.RunFinishParams) ([]any, error) {
	if !p.Status.Terminal() {
		return nil, fmt.Errorf("finish run %s: status %q is not terminal", p.RunID, p.Status)
	}
	args := []any{string(p.Status), ms(orNow(p.At)), p.Error, s.cfg.EventMaxLen, s.cfg.Retention.Milliseconds(), queueGroup, leaseID(p.Lease), fenceArg(p.RunAttempt), boolString(p.Brief), len(p.Tasks)}
	for _, t := range p.Tasks {
		g, err := taskUpdateGroup(t)
		if err != nil {
			return nil, fmt.Errorf("finish run %s: task %s: %w", p.RunID, t.Task, err)
		}
		args = append(args, g...)
	}
	return args, nil
}

func (s *Store) runFinishResult(p *engine.RunFinishParams, v any, err error) (*engine.Run, error) {
	if err != nil {
		return nil, fmt.Errorf("finish run %s: %w", p.RunID, interpretError(err))
	}
	if p.Brief {
		// The attempt alone: the rest is what p set (times kept to the
		// millisecond, as stored).
		s, _ := v.(string)
		attempt, err := strconv.Atoi(cmp.Or(s, "0"))
		if err != nil {
			return nil, fmt.Errorf("finish run %s: attempt %q: %w", p.RunID, s, err)
		}
		return &engine.Run{ID: p.RunID, Status: p.Status, EndedAt: p.At.Truncate(time.Millisecond), Error: p.Error, Attempt: attempt}, nil
	}
	r, err := parseRunWithTasks(v)
	if err != nil {
		return nil, fmt.Errorf("finish run %s: %w", p.RunID, err)
	}
	return r, nil
}

// RunCancel requests cancellation: a PENDING run becomes CANCELLED at once
// (EndedAt p.At, retention started), a RUNNING one CANCELLING; both record an
// event and publish on the namespace's cancel channel (see
// [Store.RunCancelNotify]). A CANCELLING run stays so, with no event. It
// returns the new status; for a terminal run the run's status and an error
// wrapping [engine.ErrConflict]; for an unknown run "" and
// [engine.ErrNotFound].
func (s *Store) RunCancel(ctx context.Context, p *engine.RunCancelParams) (engine.RunStatus, error) {
	pk := s.part(p.RunID)
	ks := append([]string{
		pk.run(p.RunID), pk.tasks(p.RunID), pk.logs(p.RunID), pk.events(), pk.expiry(),
	}, pk.statuses()...)
	ks = append(ks, pk.queued(), pk.queue())
	if err := s.ready(ctx); err != nil {
		return "", fmt.Errorf("cancel run %s: %w", p.RunID, err)
	}
	st, err := cancelScript.Run(ctx, s.client, ks,
		ms(orNow(p.At)), s.cfg.EventMaxLen, s.cfg.Retention.Milliseconds(), s.keys.cancelChannel(), engine.CancelledBeforeStartMsg).Text()
	if err != nil {
		return conflictStatus(err), fmt.Errorf("cancel run %s: %w", p.RunID, interpretError(err))
	}
	return engine.RunStatus(st), nil
}

// RunList returns runs newest first (CreatedAt, then ID, both descending),
// without tasks, from the sorted-set indexes: it walks the smallest index the
// filters select (the union of the status indexes, the flow's or the tag's)
// and checks the others per run, so a selective filter never scans every
// run. p.Limit defaults to 50. NextCursor is "" when no further run matches.
// The cursor is the position (CreatedAt, ID) of the page's last run, so a
// walk never returns a run twice; one the store did not make gives an error
// wrapping [engine.ErrBadCursor]. Each call first sweeps expired runs out of
// the indexes (at most once a second per Store).
func (s *Store) RunList(ctx context.Context, p *engine.RunListParams) (*engine.RunPage, error) {
	pos := ""
	if p.Cursor != "" {
		m, err := decodeCursor(p.Cursor)
		if err != nil {
			return nil, fmt.Errorf("list runs: %w", err)
		}
		pos = m
	}
	limit := p.Limit
	if limit <= 0 {
		limit = defaultListLimit
	}
	if err := s.ready(ctx); err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	s.maybeSweep(ctx)

	// Index members order runs the same way in every partition, so one
	// position continues the walk in all of them: each partition lists up
	// to a page plus one after it, and the merge keeps the newest.
	parts := make([][]map[string]string, len(s.parts))
	err := s.forParts(func(k int, pk keys) error {
		var err error
		parts[k], err = s.listPartition(ctx, pk, p, pos, limit+1)
		return err
	})
	if err != nil {
		return nil, err
	}
	runs := mergeNewestFirst(parts, limit+1)

	page := &engine.RunPage{}
	if len(runs) > limit {
		runs = runs[:limit]
		page.NextCursor = encodeCursor(runs[limit-1][fieldMember])
	}
	page.Runs = make([]*engine.Run, len(runs))
	for i, h := range runs {
		r, err := parseRun(h)
		if err != nil {
			return nil, fmt.Errorf("list runs: %w", err)
		}
		page.Runs[i] = r
	}
	return page, nil
}

// listPartition returns up to want runs of partition pk matching p's
// filters, newest first after position pos (a member, "" for the newest),
// calling list.lua until it has them or the index ends.
func (s *Store) listPartition(ctx context.Context, pk keys, p *engine.RunListParams, pos string, want int) ([]map[string]string, error) {
	statuses := uniq(p.Statuses)
	ks := []string{pk.all()}
	for _, st := range statuses {
		ks = append(ks, pk.status(st))
	}
	hasFlow, hasTag := "0", "0"
	if p.Flow != "" {
		ks, hasFlow = append(ks, pk.flow(p.Flow)), "1"
	}
	if p.Tag != "" {
		ks, hasTag = append(ks, pk.tag(p.Tag)), "1"
	}
	// A call may return fewer than asked when it ran out of budget.
	var runs []map[string]string
	for len(runs) < want {
		args := []any{pos, want - len(runs), s.listBudget, pk.runPrefix(), len(statuses), hasFlow, hasTag}
		for _, st := range statuses {
			args = append(args, string(st))
		}
		for _, f := range listFields {
			args = append(args, f)
		}
		v, err := listScript.Run(ctx, s.client, ks, args...).Slice()
		if err != nil {
			return nil, fmt.Errorf("list runs: %w", interpretError(err))
		}
		if len(v) < 2 {
			return nil, fmt.Errorf("list runs: unexpected reply of %d elements", len(v))
		}
		pos, _ = v[0].(string)
		for _, h := range v[2:] {
			m, err := hashMap(h)
			if err != nil {
				return nil, fmt.Errorf("list runs: %w", err)
			}
			runs = append(runs, m)
		}
		if done, _ := v[1].(int64); done == 1 {
			break
		}
	}
	return runs, nil
}

// TaskUpdate changes one task of a run as [engine.TaskUpdateParams]
// describes, in one script. ResetEnd is applied before EndedAt, so both
// together set EndedAt; an Attempt is inserted or replaced by Number. It
// returns an error wrapping [engine.ErrNotFound] if the run or task is
// unknown, [engine.ErrConflict] if the run is terminal or, when
// p.RunAttempt is set, if the run's attempt differs ("owner lost": another
// worker took the run over). It records no event.
func (s *Store) TaskUpdate(ctx context.Context, p *engine.TaskUpdateParams) error {
	err := s.TaskUpdateMany(ctx, &engine.TaskUpdateManyParams{RunID: p.RunID, RunAttempt: p.RunAttempt, Tasks: []*engine.TaskUpdateParams{p}})
	if err != nil {
		return fmt.Errorf("task %s: %w", p.Task, err)
	}
	return nil
}

// TaskUpdateMany applies p.Tasks to the run in order, in one script, each as
// [Store.TaskUpdate] does, fenced by p.RunAttempt. A change of an unknown
// task is skipped, except the last one's (an error wrapping
// [engine.ErrNotFound], leaving the earlier ones applied).
func (s *Store) TaskUpdateMany(ctx context.Context, p *engine.TaskUpdateManyParams) error {
	cmd, err := s.taskUpdateManyCmd(ctx, s.client, p)
	if err != nil {
		return err
	}
	return taskUpdateManyResult(p, cmd.Err())
}

// taskUpdateManyCmd queues (or, on a client, runs) task_update.lua for p.
func (s *Store) taskUpdateManyCmd(ctx context.Context, c redis.Scripter, p *engine.TaskUpdateManyParams) (*redis.Cmd, error) {
	args := make([]any, 0, 2+8*len(p.Tasks))
	args = append(args, fenceArg(p.RunAttempt), len(p.Tasks))
	for _, t := range p.Tasks {
		g, err := taskUpdateGroup(t)
		if err != nil {
			return nil, fmt.Errorf("update task %s of run %s: %w", t.Task, p.RunID, err)
		}
		args = append(args, g...)
	}
	pk := s.part(p.RunID)
	return taskUpdateScript.Run(ctx, c, []string{pk.run(p.RunID), pk.tasks(p.RunID)}, args...), nil
}

func taskUpdateManyResult(p *engine.TaskUpdateManyParams, err error) error {
	if err != nil {
		return fmt.Errorf("update tasks of run %s: %w", p.RunID, interpretError(err))
	}
	return nil
}

// taskUpdateGroup encodes p as one change group of task_update.lua: the
// task's status field, the number of fields to delete (0: none needs it
// now), the number of set arguments, and those.
func taskUpdateGroup(p *engine.TaskUpdateParams) ([]any, error) {
	t := p.Task
	set := []any{
		taskField(taskStatus, t), string(p.Status),
		taskField(taskError, t), p.Error,
	}
	if !p.StartedAt.IsZero() {
		set = append(set, taskField(taskStarted, t), ms(p.StartedAt))
	}
	if !p.EndedAt.IsZero() {
		set = append(set, taskField(taskEnded, t), ms(p.EndedAt))
	} else if p.ResetEnd {
		// "" reads as no EndedAt; setting it costs no separate HDEL.
		set = append(set, taskField(taskEnded, t), "")
	}
	if len(p.Output) > 0 {
		set = append(set, taskField(taskOutput, t), []byte(p.Output), taskField(taskTrunc, t), boolString(p.OutputTruncated))
	}
	if a := p.Attempt; a != nil {
		b, err := json.Marshal(a)
		if err != nil {
			return nil, fmt.Errorf("attempt: %w", err)
		}
		set = append(set, attemptField(a.Number, t), b)
	}
	// The script applies a group if its check field exists: the task's
	// status, or for a foreach iteration its task's (the row is created by
	// its first write).
	check := taskField(taskStatus, t)
	if parent, _, ok := engine.IterationOf(t); ok {
		check = taskField(taskStatus, parent)
		if p.Use != "" {
			set = append(set, taskField(taskUse, t), p.Use)
		}
	}
	return append([]any{check, 0, len(set)}, set...), nil
}

// LogAppend appends entries to a run's log stream (terminal runs included:
// late lines are kept until the run expires), assigning Seq 1, 2, 3… per run
// and writing each Seq back into entries; one call's entries get consecutive
// Seqs atomically. Timestamps are kept to the millisecond; the stream is
// capped at about [Config.LogMaxEntries] (oldest trimmed). An empty batch
// does nothing. It returns an error wrapping [engine.ErrNotFound] if the run
// is unknown.
func (s *Store) LogAppend(ctx context.Context, runID string, entries []engine.LogEntry) error {
	if len(entries) == 0 {
		return nil
	}
	args := make([]any, 0, 3+len(entries)*2*logFieldPairs)
	args = append(args, s.cfg.LogMaxEntries, len(entries), logFieldPairs)
	for i := range entries {
		args = append(args, logFields(&entries[i])...)
	}
	pk := s.part(runID)
	first, err := logAppendScript.Run(ctx, s.client, []string{pk.run(runID), pk.logs(runID)}, args...).Int64()
	if err != nil {
		return fmt.Errorf("append logs of run %s: %w", runID, interpretError(err))
	}
	for i := range entries {
		entries[i].Seq = first + int64(i)
	}
	return nil
}

// LogList returns a run's entries in Seq order: those of p.Task (if set) with
// Seq > p.After, then the last p.Tail of them (if set), then the first
// p.Limit (if set). Seq ranges are stream-ID ranges, so After and Tail cost
// no scan; a Task filter reads the stream in pages. It returns an error
// wrapping [engine.ErrNotFound] if the run is unknown.
func (s *Store) LogList(ctx context.Context, p *engine.LogListParams) ([]engine.LogEntry, error) {
	key := s.part(p.RunID).logs(p.RunID)
	start := "-"
	if p.After > 0 {
		start = "(" + logStreamID(p.After)
	}
	var (
		msgs []redis.XMessage
		err  error
	)
	switch {
	case p.Task == "" && p.Tail > 0:
		msgs, err = s.client.XRevRangeN(ctx, key, "+", start, int64(p.Tail)).Result()
		slices.Reverse(msgs)
	case p.Task == "" && p.Limit > 0:
		msgs, err = s.client.XRangeN(ctx, key, start, "+", int64(p.Limit)).Result()
	case p.Task == "":
		msgs, err = s.client.XRange(ctx, key, start, "+").Result()
	case p.Tail > 0:
		msgs, err = s.scanLogs(ctx, key, start, p.Task, p.Tail, true)
		slices.Reverse(msgs)
	default:
		msgs, err = s.scanLogs(ctx, key, start, p.Task, p.Limit, false)
	}
	if err != nil {
		return nil, fmt.Errorf("list logs of run %s: %w", p.RunID, interpretError(err))
	}
	if len(msgs) == 0 {
		n, err := s.client.Exists(ctx, s.part(p.RunID).run(p.RunID)).Result()
		if err != nil {
			return nil, fmt.Errorf("list logs of run %s: %w", p.RunID, interpretError(err))
		}
		if n == 0 {
			return nil, fmt.Errorf("list logs of run %s: %w", p.RunID, engine.ErrNotFound)
		}
		return nil, nil
	}
	if p.Limit > 0 && len(msgs) > p.Limit {
		msgs = msgs[:p.Limit]
	}
	out := make([]engine.LogEntry, len(msgs))
	for i, m := range msgs {
		if out[i], err = parseLogEntry(m); err != nil {
			return nil, fmt.Errorf("list logs of run %s: %w", p.RunID, err)
		}
	}
	return out, nil
}

// scanLogs reads the log stream key from start (exclusive bound or "-"),
// forward or (reverse) backward from the newest, in pages, keeping the
// entries of task until it has max of them (0: all).
func (s *Store) scanLogs(ctx context.Context, key, start, task string, max int, reverse bool) ([]redis.XMessage, error) {
	var out []redis.XMessage
	from := start // forward: lower bound; backward: "+" then below the last seen
	if reverse {
		from = "+"
	}
	for {
		var page []redis.XMessage
		var err error
		if reverse {
			page, err = s.client.XRevRangeN(ctx, key, from, start, logPage).Result()
		} else {
			page, err = s.client.XRangeN(ctx, key, from, "+", logPage).Result()
		}
		if err != nil {
			return nil, err
		}
		for _, m := range page {
			if t, _ := m.Values[logTask].(string); t == task {
				out = append(out, m)
				if max > 0 && len(out) == max {
					return out, nil
				}
			}
		}
		if len(page) < logPage {
			return out, nil
		}
		from = "(" + page[len(page)-1].ID
	}
}

// EventList returns events after p.After ("" = from the start), oldest first,
// at most p.Limit of them (0: all). Event IDs are the events stream's entry
// IDs; an After that is not one gives an error wrapping
// [engine.ErrBadCursor]. The stream is capped at about [Config.EventMaxLen].
func (s *Store) EventList(ctx context.Context, p *engine.EventListParams) ([]engine.Event, error) {
	if len(s.parts) > 1 {
		return s.eventListPartitions(ctx, p)
	}
	start := "-"
	if p.After != "" {
		if !validStreamID(p.After) {
			return nil, fmt.Errorf("list events after %q: %w", p.After, engine.ErrBadCursor)
		}
		start = "(" + p.After
	}
	var (
		msgs []redis.XMessage
		err  error
	)
	if p.Limit > 0 {
		msgs, err = s.client.XRangeN(ctx, s.keys.events(), start, "+", int64(p.Limit)).Result()
	} else {
		msgs, err = s.client.XRange(ctx, s.keys.events(), start, "+").Result()
	}
	if err != nil {
		return nil, fmt.Errorf("list events: %w", interpretError(err))
	}
	out := make([]engine.Event, len(msgs))
	for i, m := range msgs {
		if out[i], err = parseEvent(m); err != nil {
			return nil, fmt.Errorf("list events: %w", err)
		}
	}
	return out, nil
}

// Sweep removes finished runs whose retention has passed from every index
// (their keys expire by themselves), at most a batch of them, and returns
// how many it removed (a batch per partition). RunCreate and RunList call it lazily; call it
// directly to clean up a namespace that sees no traffic.
func (s *Store) Sweep(ctx context.Context) (int, error) {
	counts := make([]int, len(s.parts))
	err := s.forParts(func(k int, pk keys) error {
		ks := append([]string{pk.expiry(), pk.all()}, pk.statuses()...)
		n, err := sweepScript.Run(ctx, s.client, ks, sweepBatch).Int()
		if err != nil {
			return fmt.Errorf("sweep expired runs: %w", interpretError(err))
		}
		counts[k] = n
		return nil
	})
	n := 0
	for _, c := range counts {
		n += c
	}
	return n, err
}

// maybeSweep runs [Store.Sweep] if the last one is sweepEvery ago, or
// finished a full batch. Errors are left to the caller's own command, which
// fails the same way; the next call retries.
func (s *Store) maybeSweep(ctx context.Context) {
	now := time.Now().UnixMilli()
	next := s.nextSweep.Load()
	if now < next || !s.nextSweep.CompareAndSwap(next, now+sweepEvery.Milliseconds()) {
		return
	}
	n, err := s.Sweep(ctx)
	if err != nil || n >= sweepBatch {
		s.nextSweep.Store(0)
	}
}

// orNow returns t, or the current time if t is zero.
func orNow(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}

// uniq returns s without duplicates, in first-seen order.
func uniq[T comparable](s []T) []T {
	var out []T
	for _, v := range s {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// sortedKeys returns the keys of m in order (stable script arguments).
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

var (
	_ engine.Store          = (*Store)(nil)
	_ engine.CancelNotifier = (*Store)(nil)
)
