package redisstore

import (
	"context"
	"fmt"
	"hash/fnv"
	"strconv"
	"sync"
)

// A namespace is spread over [Config.Partitions] partitions. Partition k
// has its own hash tag, "{<namespace>:p<k>}", holding a share of the runs
// (their hashes, tasks, logs, the indexes, the expiry set), its queue stream
// and consumer group, its queued-per-flow counters and its events stream;
// every script touches one partition only, so each stays atomic on Redis
// Cluster, and the partitions spread over the Cluster's masters. With one
// partition the tag is "{<namespace>}" itself: the layout of earlier
// versions, so existing data keeps working.
//
// What is not per run stays under the base tag "{<namespace>}": the
// partition count (meta), the workers registry, the schedules, the webhook
// delivery log and the cancel channel. Idempotency keys go to the partition
// of their key's hash, so a retry reaches the same one.
//
// A run's partition comes from its ID alone ([partitionOf]), so RunGet,
// cancel, logs and every fenced write go straight to it.

// metaScript: checkPartitions.
var metaScript = loadScript("meta")

// partitionKeys returns the keys of each of n partitions of namespace.
func partitionKeys(namespace string, n int) []keys {
	if n == 1 {
		return []keys{newKeys(namespace)}
	}
	out := make([]keys, n)
	for k := range out {
		out[k] = keys{prefix: "{" + namespace + ":p" + strconv.Itoa(k) + "}:"}
	}
	return out
}

// partitionOf is the partition of run ID (or idempotency key) id among n:
// FNV-1a of the ID modulo n. Run IDs are random, so runs spread evenly.
func partitionOf(id string, n int) int {
	if n == 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return int(h.Sum32() % uint32(n))
}

// part returns the keys of run id's partition.
func (s *Store) part(id string) keys { return s.parts[partitionOf(id, len(s.parts))] }

// meta is the namespace's hash of settings fixed at first use
// (field "partitions").
func (k keys) meta() string { return k.prefix + "meta" }

// partitionState is the result of the first check of the stored
// partition count, kept once it succeeded.
type partitionState struct {
	mu sync.Mutex
	ok bool
}

// checkPartitions makes sure the namespace is laid out with this Store's
// partition count: the first call records it in {ns}:meta if the namespace
// has none (a namespace holding runs of the single-tag layout counts as 1),
// and every Store opened with another count gets an error naming both. It
// talks to Redis until one check succeeded, then costs nothing.
func (s *Store) checkPartitions(ctx context.Context) error {
	st := &s.partCheck
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ok {
		return nil
	}
	base := newKeys(s.cfg.Namespace)
	n, err := metaScript.Run(ctx, s.client, []string{base.meta(), base.all(), base.queue()}, s.cfg.Partitions).Int()
	if err != nil {
		return fmt.Errorf("check partitions of namespace %s: %w", s.cfg.Namespace, interpretError(err))
	}
	if n != s.cfg.Partitions {
		return fmt.Errorf("redisstore: namespace %q is laid out in %d partitions, but this store was opened with Config.Partitions %d (--partitions, PYOCO_PARTITIONS): "+
			"the count of a namespace cannot change while it holds data; use %d, or a new namespace (docs/redis.md, Partitions)",
			s.cfg.Namespace, n, s.cfg.Partitions, n)
	}
	st.ok = true
	return nil
}

// ready is checkPartitions, cheap after the first success; the entry
// points that create or route runs call it.
func (s *Store) ready(ctx context.Context) error {
	if s.partReady.Load() {
		return nil
	}
	if err := s.checkPartitions(ctx); err != nil {
		return err
	}
	s.partReady.Store(true)
	return nil
}

// forParts runs f for each partition, concurrently when there are several,
// and returns the first error.
func (s *Store) forParts(f func(k int, pk keys) error) error {
	if len(s.parts) == 1 {
		return f(0, s.parts[0])
	}
	errs := make([]error, len(s.parts))
	var wg sync.WaitGroup
	for k, pk := range s.parts {
		wg.Go(func() { errs[k] = f(k, pk) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Partitions returns the partition count the Store routes by
// ([Config.Partitions]).
func (s *Store) Partitions() int { return len(s.parts) }

// PartitionKeyTag returns the hash tag of partition k ("{ns}" with one
// partition, "{ns:p<k>}" otherwise), for tools that inspect the layout.
func (s *Store) PartitionKeyTag(k int) string {
	p := s.parts[k].prefix
	return p[:len(p)-1]
}
