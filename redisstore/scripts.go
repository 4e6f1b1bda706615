package redisstore

import (
	"embed"

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
	startScript = loadScript("start")
	// finishScript: RunFinish.
	finishScript = loadScript("finish")
	// cancelScript: RunCancel (publishes on the cancel channel).
	cancelScript = loadScript("cancel")
	// taskUpdateScript: TaskUpdate.
	taskUpdateScript = loadScript("task_update")
	// logAppendScript: LogAppend.
	logAppendScript = loadScript("log_append")
	// listScript: one step of RunList.
	listScript = loadScript("list")
	// sweepScript: retention clean-up of the indexes.
	sweepScript = loadScript("sweep")
)
