package redisstore

import (
	"fmt"
	"strconv"
	"time"

	"github.com/pyoco/pyoco/engine"
)

// keys builds every Redis key and channel name of one namespace; nothing
// else in the package spells a key. Every name starts with the hash tag
// "{<namespace>}" so all of them map to one Cluster slot and each Lua script
// may touch any of them. docs/redis.md documents the layout.
type keys struct {
	prefix string // "{<namespace>}:"
}

func newKeys(namespace string) keys { return keys{prefix: "{" + namespace + "}:"} }

// run is the run hash of run id.
func (k keys) run(id string) string { return k.prefix + "run:" + id }

// runPrefix is run(id) without the id, for scripts that find runs through
// index members.
func (k keys) runPrefix() string { return k.prefix + "run:" }

// tasks is the tasks hash of run id.
func (k keys) tasks(id string) string { return k.prefix + "tasks:" + id }

// logs is the log stream of run id.
func (k keys) logs(id string) string { return k.prefix + "logs:" + id }

// events is the run-events stream.
func (k keys) events() string { return k.prefix + "events" }

// expiry is the sorted set of finished runs by expiry time (see sweep.lua).
func (k keys) expiry() string { return k.prefix + "expiry" }

// all is the index of every run.
func (k keys) all() string { return k.prefix + "idx:all" }

// status is the index of the runs in status st.
func (k keys) status(st engine.RunStatus) string { return k.prefix + "idx:status:" + string(st) }

// statuses is the status index of each of [engine.RunStatuses], in order
// (the order finish.lua, cancel.lua and sweep.lua expect).
func (k keys) statuses() []string {
	out := make([]string, len(engine.RunStatuses))
	for i, st := range engine.RunStatuses {
		out[i] = k.status(st)
	}
	return out
}

// flow is the index of the runs of a flow.
func (k keys) flow(name string) string { return k.prefix + "idx:flow:" + name }

// tag is the index of the runs with a tag.
func (k keys) tag(tag string) string { return k.prefix + "idx:tag:" + tag }

// queue is the run queue: a stream of {run_id, flow} entries read by the
// consumer group [queueGroup].
func (k keys) queue() string { return k.prefix + "queue" }

// queued is the hash flow → number of PENDING runs (QueueDepth).
func (k keys) queued() string { return k.prefix + "queued" }

// workers is the sorted set of live workers, scored by expiry (Unix ms).
func (k keys) workers() string { return k.prefix + "workers" }

// worker is the JSON description of worker id (expires with its heartbeat).
func (k keys) worker(id string) string { return k.prefix + "worker:" + id }

// idempotency is the string holding the run ID an Idempotency-Key created
// (expires with the key's TTL).
func (k keys) idempotency(key string) string { return k.prefix + "idem:" + key }

// schedule is the claim state of schedule name of flow: a hash of tick,
// run_id and run_at (Unix ms), kept until deleted (schedule_claim.lua).
// Flow and schedule names have no ':', so the key is unambiguous.
func (k keys) schedule(flow, name string) string {
	return k.prefix + "schedule:" + flow + ":" + name
}

// cancelChannel is the pub/sub channel on which cancel.lua publishes the ID
// of each run whose cancellation is requested.
func (k keys) cancelChannel() string { return k.prefix + "cancel" }

// indexMember is a run's member in every index: 16 hex digits of its
// CreatedAt in Unix ms (sign bit flipped, so the digits sort as the numbers
// do), ":", and its ID. All members have score 0, so Redis orders them by
// bytes: by CreatedAt, then by ID.
func indexMember(created time.Time, id string) string {
	return fmt.Sprintf("%016x:%s", uint64(created.UnixMilli())^(1<<63), id)
}

// parseIndexMember reverses [indexMember].
func parseIndexMember(m string) (created time.Time, id string, ok bool) {
	if len(m) < 18 || m[16] != ':' {
		return time.Time{}, "", false
	}
	u, err := strconv.ParseUint(m[:16], 16, 64)
	if err != nil {
		return time.Time{}, "", false
	}
	return time.UnixMilli(int64(u ^ (1 << 63))).UTC(), m[17:], true
}

// gcRecord is a finished run's member of the expiry set: netstrings of its
// run, tasks and logs keys, its index member, and the flow and tag index keys
// it is in (sweep.lua decodes it). Binary-safe, so any tag works.
func (k keys) gcRecord(id, member, flow string, tags []string) string {
	var b []byte
	add := func(s string) {
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, ':')
		b = append(b, s...)
	}
	add(k.run(id))
	add(k.tasks(id))
	add(k.logs(id))
	add(member)
	add(k.flow(flow))
	for _, t := range tags {
		add(k.tag(t))
	}
	return string(b)
}
