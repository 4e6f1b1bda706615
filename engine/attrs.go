package engine

import "go.opentelemetry.io/otel/attribute"

// Attribute keys shared by spans, metrics and log records (SPEC §6). They
// are public names: dashboards and trace queries use them.
const (
	AttrRunID       = attribute.Key("pyoco.run.id")
	AttrFlowName    = attribute.Key("pyoco.flow.name")
	AttrRunStatus   = attribute.Key("pyoco.run.status")
	AttrRunAttempt  = attribute.Key("pyoco.run.attempt")
	AttrTaskName    = attribute.Key("pyoco.task.name")
	AttrTaskUse     = attribute.Key("pyoco.task.use")
	AttrTaskAttempt = attribute.Key("pyoco.task.attempt")
	// AttrTaskIndex is the index of a foreach iteration (from 0).
	AttrTaskIndex  = attribute.Key("pyoco.task.index")
	AttrTaskStatus = attribute.Key("pyoco.task.status")
	AttrWorkerID   = attribute.Key("pyoco.worker.id")

	// OTel CI/CD semantic conventions, where they fit.
	AttrCICDPipelineName       = attribute.Key("cicd.pipeline.name")
	AttrCICDPipelineRunID      = attribute.Key("cicd.pipeline.run.id")
	AttrCICDPipelineResult     = attribute.Key("cicd.pipeline.result")
	AttrCICDPipelineTaskName   = attribute.Key("cicd.pipeline.task.name")
	AttrCICDTaskRunResult      = attribute.Key("cicd.pipeline.task.run.result")
	AttrCICDPipelineTaskRunID  = attribute.Key("cicd.pipeline.task.run.id")
	AttrCICDPipelineActionName = attribute.Key("cicd.pipeline.action.name")
)

// Metric label names (SPEC §5). Labels stay low-cardinality: never a run id.
const (
	LabelFlow   = attribute.Key("flow")
	LabelTask   = attribute.Key("task")
	LabelStatus = attribute.Key("status")
)

// Log record keys of the engine's own operational logs.
const (
	LogKeyRunID  = "run_id"
	LogKeyTask   = "task"
	LogKeyFlow   = "flow"
	LogKeyWorker = "worker_id"
	LogKeyError  = "error"
)

// cicdResult maps a run or task status to the CI/CD semantic-convention result value.
func cicdResult(status string) string {
	switch status {
	case "COMPLETED", "SUCCEEDED":
		return "success"
	case "FAILED":
		return "failure"
	case "CANCELLED":
		return "cancellation"
	case "SKIPPED":
		return "skip"
	}
	return "error"
}
