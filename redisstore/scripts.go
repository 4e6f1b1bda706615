package redisstore

import (
	"embed"
	"errors"
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
	finishScript = spliceScript("finish", taskApplyMarker, "task_apply", finishRunMarker, "finish_run")
	// finishManyScript: the finishes of one partition in a WriteBatch.
	finishManyScript = spliceScript("finish_many", taskApplyMarker, "task_apply", finishRunMarker, "finish_run")
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

// finishRunMarker is the line of finish.lua and finish_many.lua that
// finish_run.lua (their shared finish_run function) replaces.
const finishRunMarker = "-- @finish_run\n"

// runStartMarker is the line of start.lua and queue_take.lua that
// run_start.lua (their shared start_run function) replaces.
const runStartMarker = "-- @run_start\n"

// spliceScript returns the script lua/<into>.lua with each marker line
// (pairs of marker and prelude name follow into) replaced by the text of
// lua/<prelude>.lua.
func spliceScript(into string, pairs ...string) *redis.Script {
	body, err := luaFS.ReadFile("lua/" + into + ".lua")
	src := string(body)
	for i := 0; err == nil && i+1 < len(pairs); i += 2 {
		marker, prelude := pairs[i], pairs[i+1]
		var pre []byte
		if pre, err = luaFS.ReadFile("lua/" + prelude + ".lua"); err == nil && strings.Count(src, marker) != 1 {
			err = errors.New("marker")
		}
		src = strings.Replace(src, marker, string(pre), 1)
	}
	if err != nil || len(pairs)%2 != 0 {
		panic("redisstore: cannot splice " + strings.Join(pairs, ",") + " into " + into) // a build bug
	}
	return redis.NewScript(src)
}
