package engine

// RunStatus is the state of a run (SPEC §3).
type RunStatus string

// Run statuses. The names are public: API, metrics and webhooks use them as is.
const (
	RunPending    RunStatus = "PENDING"
	RunRunning    RunStatus = "RUNNING"
	RunCancelling RunStatus = "CANCELLING"
	RunCompleted  RunStatus = "COMPLETED"
	RunFailed     RunStatus = "FAILED"
	RunCancelled  RunStatus = "CANCELLED"
)

// RunStatuses lists every run status in lifecycle order.
var RunStatuses = []RunStatus{RunPending, RunRunning, RunCancelling, RunCompleted, RunFailed, RunCancelled}

// Terminal reports whether s is a final status (COMPLETED, FAILED or CANCELLED).
func (s RunStatus) Terminal() bool {
	return s == RunCompleted || s == RunFailed || s == RunCancelled
}

// Valid reports whether s is one of [RunStatuses].
func (s RunStatus) Valid() bool {
	for _, v := range RunStatuses {
		if s == v {
			return true
		}
	}
	return false
}

// TaskStatus is the state of one task of a run (SPEC §2).
type TaskStatus string

// Task statuses.
const (
	TaskPending   TaskStatus = "PENDING"
	TaskRunning   TaskStatus = "RUNNING"
	TaskSucceeded TaskStatus = "SUCCEEDED"
	TaskFailed    TaskStatus = "FAILED"
	TaskSkipped   TaskStatus = "SKIPPED"
	TaskCancelled TaskStatus = "CANCELLED"
)

// TaskStatuses lists every task status.
var TaskStatuses = []TaskStatus{TaskPending, TaskRunning, TaskSucceeded, TaskFailed, TaskSkipped, TaskCancelled}

// Terminal reports whether s is a final task status.
func (s TaskStatus) Terminal() bool {
	return s == TaskSucceeded || s == TaskFailed || s == TaskSkipped || s == TaskCancelled
}

// CancelledBeforeStartMsg is the error of the tasks of a run cancelled while
// PENDING: [RunStore.RunCancel] makes them CANCELLED with it.
const CancelledBeforeStartMsg = "cancelled before the run started"
