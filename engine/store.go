package engine

import (
	"context"
	"encoding/json"
	"time"
)

// RunStore keeps runs and their task states. Every method that changes a
// run's status also updates the store's indexes and appends an [Event] in
// the same atomic step (a Redis implementation does each in one Lua script).
// Implementations are safe for concurrent use and return copies.
type RunStore interface {
	// RunCreate stores a new run. run.Status must be PENDING and run.Tasks
	// must hold every task, PENDING. ErrConflict if the ID exists.
	RunCreate(ctx context.Context, run *Run) error
	// RunGet returns the run with its tasks, or ErrNotFound.
	RunGet(ctx context.Context, id string) (*Run, error)
	// RunStart hands the run to a worker: PENDING → RUNNING (sets StartedAt),
	// or, for a takeover, RUNNING/CANCELLING stays as is. It increments
	// Attempt, sets WorkerID and returns the run with its tasks. ErrConflict
	// if the run is terminal; ErrNotFound if unknown.
	RunStart(ctx context.Context, p *RunStartParams) (*Run, error)
	// RunFinish applies p.Tasks (in order), then moves the run to a
	// terminal status and sets EndedAt and Error, in one atomic step.
	// ErrConflict if it is already terminal, or if p.RunAttempt is set and
	// differs from the run's Attempt ("owner lost": nothing changes).
	RunFinish(ctx context.Context, p *RunFinishParams) (*Run, error)
	// RunCancel asks for cancellation: PENDING → CANCELLED at once (its
	// PENDING tasks too, with EndedAt p.At and Error
	// [CancelledBeforeStartMsg]), RUNNING → CANCELLING, CANCELLING stays. Returns the new status;
	// ErrConflict (with the run's status) if the run is already terminal.
	RunCancel(ctx context.Context, p *RunCancelParams) (RunStatus, error)
	// RunList returns runs newest first (by CreatedAt, then ID), without tasks.
	RunList(ctx context.Context, p *RunListParams) (*RunPage, error)
	// TaskUpdate changes one task of a run. ErrNotFound if the run or task is
	// unknown; ErrConflict if the run is terminal, or if p.RunAttempt is set
	// and differs from the run's Attempt ("owner lost": nothing changes).
	TaskUpdate(ctx context.Context, p *TaskUpdateParams) error
	// TaskUpdateMany applies several task changes of one run, in order, in
	// one atomic step, fenced by p.RunAttempt as TaskUpdate is. A change of
	// an unknown task is skipped, except the last one's (ErrNotFound,
	// leaving the earlier ones applied).
	TaskUpdateMany(ctx context.Context, p *TaskUpdateManyParams) error
}

// LogStore keeps each run's log entries.
type LogStore interface {
	// LogAppend appends entries to a run's logs, assigning each a Seq one
	// higher than the last (per run, starting at 1); it writes the assigned
	// Seq back into entries.
	LogAppend(ctx context.Context, runID string, entries []LogEntry) error
	// LogList returns entries in Seq order.
	LogList(ctx context.Context, p *LogListParams) ([]LogEntry, error)
}

// EventStore reads the run-events stream.
type EventStore interface {
	// EventList returns events after p.After ("" = from the start), oldest first.
	EventList(ctx context.Context, p *EventListParams) ([]Event, error)
}

// Store is everything the engine needs from a state store.
type Store interface {
	RunStore
	LogStore
	EventStore
}

// CancelNotifier is an optional [Store] capability: the returned channel is
// closed when cancellation of the run is requested (RunCancel), or when ctx
// ends. Without it the scheduler polls RunGet once a second.
type CancelNotifier interface {
	RunCancelNotify(ctx context.Context, runID string) (<-chan struct{}, error)
}

// RunStartParams are the arguments of [RunStore.RunStart].
type RunStartParams struct {
	RunID    string
	WorkerID string
	At       time.Time
	// Lease, when set, is the delivery of the run by a [Queue] store. That
	// store acknowledges it in the same step when the run is terminal or
	// unknown (RunStart then fails with ErrConflict or ErrNotFound), so the
	// worker needs no [Queue.QueueAck].
	Lease *Lease
}

// RunFinishParams are the arguments of [RunStore.RunFinish].
type RunFinishParams struct {
	RunID  string
	Status RunStatus // COMPLETED, FAILED or CANCELLED
	At     time.Time
	Error  string
	// RunAttempt is the fence: the run's Attempt as the writer's RunStart
	// returned it. When it is set (not 0) and the stored Attempt differs,
	// another worker took the run over since: the finish is refused with
	// ErrConflict and changes nothing. 0 writes unfenced (API-side writes).
	RunAttempt int
	// Lease, when set, is the delivery being finished: a [Queue] store
	// acknowledges it in the same step, whatever the outcome but an "owner
	// lost" refusal (the new owner holds the entry).
	Lease *Lease
	// Tasks are task changes written in the same step, before the status
	// change (their RunID and RunAttempt are ignored). One of a task that
	// does not exist is skipped.
	Tasks []*TaskUpdateParams
	// Brief says the caller needs no stored run back: the store may then
	// return a brief run, with only ID, Status, EndedAt, Error and Attempt
	// set and no tasks, and save reading the whole run back (the Redis
	// store then answers with the attempt alone). Refusals are the same.
	Brief bool
}

// RunCancelParams are the arguments of [RunStore.RunCancel].
type RunCancelParams struct {
	RunID string
	At    time.Time
}

// RunListParams filter and page [RunStore.RunList]. Zero values match all.
type RunListParams struct {
	Statuses []RunStatus // any of
	Flow     string
	Tag      string
	// Limit defaults to 50.
	Limit int
	// Cursor is the NextCursor of the previous page; opaque.
	Cursor string
}

// RunPage is one page of [RunStore.RunList].
type RunPage struct {
	Runs []*Run
	// NextCursor is "" on the last page.
	NextCursor string
}

// TaskUpdateParams describe a change of one task. Status and Error are
// always set (an empty Error clears it); StartedAt, EndedAt and Output are
// set only when non-zero; OutputTruncated is set together with Output.
type TaskUpdateParams struct {
	RunID string
	Task  string
	// Use, when set, names the task's implementation. It is set on every
	// write of a foreach iteration ("name[3]", see [IterationOf]): such a
	// row is created by its first write when the run has the foreach task.
	Use       string
	Status    TaskStatus
	StartedAt time.Time
	EndedAt   time.Time
	// Attempt, when non-nil, is inserted or replaced (by Number) in the
	// task's attempts.
	Attempt         *Attempt
	Error           string
	Output          json.RawMessage
	OutputTruncated bool
	// ResetEnd clears EndedAt (a task that is retried after a takeover).
	ResetEnd bool
	// RunAttempt is the writer's fence, as in [RunFinishParams].
	RunAttempt int
}

// TaskUpdateManyParams are the arguments of [RunStore.TaskUpdateMany].
type TaskUpdateManyParams struct {
	RunID string
	// RunAttempt is the writer's fence, as in [RunFinishParams].
	RunAttempt int
	// Tasks are applied in order; their RunID and RunAttempt are ignored.
	Tasks []*TaskUpdateParams
}

// LogListParams filter [LogStore.LogList].
type LogListParams struct {
	RunID string
	Task  string // only this task's entries
	After int64  // only Seq > After
	// Tail keeps only the last Tail matching entries (0: all).
	Tail int
	// Limit caps the entries returned, from the first matching (0: all).
	Limit int
}

// EventListParams page [EventStore.EventList].
type EventListParams struct {
	After string
	Limit int // 0: all
}
