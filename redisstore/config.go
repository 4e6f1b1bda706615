package redisstore

import (
	"fmt"
	"strings"
	"time"
)

// Defaults of [Config].
const (
	DefaultNamespace     = "pyoco"
	DefaultRetention     = 168 * time.Hour
	DefaultLogMaxEntries = 10000
	DefaultEventMaxLen   = 100000
	// MaxPartitions bounds [Config.Partitions].
	MaxPartitions = 1024
)

// Config tunes a [Store]. The zero value (or a nil *Config) means every
// default.
type Config struct {
	// Namespace prefixes every key, as the hash tag "{Namespace}", so that
	// stores of different namespaces share a Redis without seeing each
	// other. It must not contain '{' or '}'. Defaults to "pyoco".
	Namespace string
	// Retention is how long a finished run (its hash, tasks and logs) is
	// kept after it reached a terminal status. Defaults to 168h (7 days);
	// must be at least a millisecond.
	Retention time.Duration
	// LogMaxEntries caps each run's log stream (XADD MAXLEN ~, so Redis may
	// keep a few more): older entries are trimmed. Defaults to 10000.
	LogMaxEntries int64
	// EventMaxLen caps the run-events stream (XADD MAXLEN ~). Defaults to
	// 100000.
	EventMaxLen int64
	// Partitions spreads the namespace over that many hash tags
	// ("{Namespace:p<k>}"), so that a Redis Cluster serves it from several
	// masters; 1 is the single-tag layout "{Namespace}" (partition.go,
	// docs/redis.md). Between 1 and 1024; defaults to 1. A namespace keeps
	// the count it was first used with: a Store opened with another count
	// fails its first command with an error naming both.
	Partitions int
}

// withDefaults returns a copy of c (nil allowed) with zero fields set to
// their defaults, after checking it.
func (c *Config) withDefaults() (Config, error) {
	var out Config
	if c != nil {
		out = *c
	}
	if out.Namespace == "" {
		out.Namespace = DefaultNamespace
	}
	if out.Retention == 0 {
		out.Retention = DefaultRetention
	}
	if out.LogMaxEntries == 0 {
		out.LogMaxEntries = DefaultLogMaxEntries
	}
	if out.EventMaxLen == 0 {
		out.EventMaxLen = DefaultEventMaxLen
	}
	if out.Partitions == 0 {
		out.Partitions = 1
	}
	return out, out.validate()
}

// validate reports the first invalid field, by name.
func (c *Config) validate() error {
	if strings.ContainsAny(c.Namespace, "{}") {
		return fmt.Errorf("redisstore: Config.Namespace %q must not contain '{' or '}' (it becomes the key hash tag)", c.Namespace)
	}
	if c.Retention < time.Millisecond {
		return fmt.Errorf("redisstore: Config.Retention %s must be at least 1ms", c.Retention)
	}
	if c.LogMaxEntries < 1 {
		return fmt.Errorf("redisstore: Config.LogMaxEntries %d must be positive", c.LogMaxEntries)
	}
	if c.Partitions < 1 || c.Partitions > MaxPartitions {
		return fmt.Errorf("redisstore: Config.Partitions %d must be between 1 and %d", c.Partitions, MaxPartitions)
	}
	if c.EventMaxLen < 1 {
		return fmt.Errorf("redisstore: Config.EventMaxLen %d must be positive", c.EventMaxLen)
	}
	return nil
}
