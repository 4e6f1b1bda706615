package redisstore

import (
	"context"

	"github.com/pyoco/pyoco/engine"
)

// ScheduleClaimCrashed is ScheduleClaim of a store with several
// partitions by a server that crashes after the claim, before the run's
// creation.
func ScheduleClaimCrashed(ctx context.Context, s *Store, p *engine.ScheduleClaimParams) error {
	_, err := s.scheduleClaimIntent(ctx, p)
	return err
}

// SetListBudget changes how many index members one list.lua call of s
// examines, so tests can make RunList take several calls.
func SetListBudget(s *Store, n int) { s.listBudget = n }

// PartitionOf is the partition of run id among n.
func PartitionOf(id string, n int) int { return partitionOf(id, n) }
