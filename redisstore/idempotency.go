package redisstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pyoco/pyoco/engine"
)

// idempotencyScript: IdempotencyGetOrSet; idempotencyReleaseScript:
// IdempotencyRelease.
var (
	idempotencyScript        = loadScript("idempotency")
	idempotencyReleaseScript = loadScript("idempotency_release")
)

// IdempotencyGetOrSet binds key to runID for ttl unless key is already bound,
// atomically (one script, so concurrent submits with the same key on any
// number of API servers get one binding). It returns the run ID bound
// earlier, or "" when this call made the binding. The binding is a string
// key "{ns}:idem:<key>" that Redis expires after ttl (at least a
// millisecond); it is independent of the run's own retention. Errors wrap
// [engine.ErrUnavailable] when Redis cannot be reached.
func (s *Store) IdempotencyGetOrSet(ctx context.Context, key, runID string, ttl time.Duration) (string, error) {
	if key == "" || runID == "" {
		return "", errors.New("idempotency key: missing key or run ID")
	}
	v, err := idempotencyScript.Run(ctx, s.client, []string{s.parts[partitionOf(key, len(s.parts))].idempotency(key)}, runID, max(ttl.Milliseconds(), 1)).Text()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("idempotency key %q: %w", key, interpretError(err))
	}
	return v, nil
}

// IdempotencyRelease unbinds key if it is still bound to runID (one
// script: compare-and-delete).
func (s *Store) IdempotencyRelease(ctx context.Context, key, runID string) error {
	if err := idempotencyReleaseScript.Run(ctx, s.client, []string{s.parts[partitionOf(key, len(s.parts))].idempotency(key)}, runID).Err(); err != nil {
		return fmt.Errorf("idempotency key %q: %w", key, interpretError(err))
	}
	return nil
}

var _ engine.IdempotencyStore = (*Store)(nil)
