package redisstore

import (
	"embed"
	"strings"

	"github.com/redis/go-redis/v9"
)

//go:embed lua/*.lua
var luaFS embed.FS

// loadScript returns the script in lua/<name>.lua. Each file starts with a
// header that documents its KEYS, ARGV and reply.
func loadScript(name string) *redis.Script {
	src, err := luaFS.ReadFile("lua/" + name + ".lua")
	if err != nil {
		panic("redisstore: missing embedded script " + name) // a build bug
	}
	return redis.NewScript(string(src))
}

// The Lua scripts. Every change of a run's status, with its index moves and
// its event, is one script, so it is atomic on a single Redis and on Cluster
// (all keys share the namespace's hash tag).
var (
	// createScript: RunCreate.
	createScript = loadScript("create")
	// getScript: RunGet.
	getScript = loadScript("get")
	// startScript: RunStart.
	startScript = spliceScript("start", runStartMarker, "run_start")
	// queueTakeScript: QueuePopBatch with QueuePopParams.Start.
	queueTakeScript = spliceScript("queue_take", runStartMarker, "run_start")
	// finishScript: RunFinish.
	finishScript = spliceScript("finish", taskApplyMarker, "task_apply")
	// cancelScript: RunCancel (publishes on the cancel channel).
	cancelScript = loadScript("cancel")
	// taskUpdateScript: TaskUpdate.
	taskUpdateScript = spliceScript("task_update", taskApplyMarker, "task_apply")
	// logAppendScript: LogAppend.
	logAppendScript = loadScript("log_append")
	// listScript: one step of RunList.
	listScript = loadScript("list")
	// sweepScript: retention clean-up of the indexes.
	sweepScript = loadScript("sweep")
	// scheduleClaimScript: ScheduleClaim (schedule_claim.lua spliced into
	// create.lua).
	scheduleClaimScript = spliceScript("create", "local nkeys, nargs = #KEYS, #ARGV\n", "schedule_claim")
)

// taskApplyMarker is the line of task_update.lua and finish.lua that
// task_apply.lua (their shared apply_tasks function) replaces.
const taskApplyMarker = "-- @task_apply\n"

// runStartMarker is the line of start.lua and queue_take.lua that
// run_start.lua (their shared start_run function) replaces.
const runStartMarker = "-- @run_start\n"

// spliceScript returns the script lua/<into>.lua with the line marker
// replaced by the text of lua/<prelude>.lua.
func spliceScript(into, marker, prelude string) *redis.Script {
	body, err1 := luaFS.ReadFile("lua/" + into + ".lua")
	pre, err2 := luaFS.ReadFile("lua/" + prelude + ".lua")
	if err1 != nil || err2 != nil || strings.Count(string(body), marker) != 1 {
		panic("redisstore: cannot splice script " + prelude + " into " + into) // a build bug
	}
	return redis.NewScript(strings.Replace(string(body), marker, string(pre), 1))
}
