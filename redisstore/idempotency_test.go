package redisstore_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/storetest"
)

// TestIdempotency runs the shared suite (the in-memory store runs the same).
func TestIdempotency(t *testing.T) {
	t.Parallel()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			c := be.client(t)
			storetest.RunIdempotency(t, func(t *testing.T) engine.IdempotencyStore {
				s, _ := newStore(t, c, nil)
				return s
			})
		})
	}
}

// An empty key is refused (the in-memory store does not check it).
func TestIdempotencyEmptyKey(t *testing.T) {
	t.Parallel()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			s, _ := newStore(t, be.client(t), nil)
			_, err := s.IdempotencyGetOrSet(t.Context(), "", "run-e", time.Hour)
			require.Error(t, err)
		})
	}
}
