package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/pyoco/pyoco/engine"
)

// cancelPollInterval is how often a [Store.RunCancelNotify] subscription
// also reads the run's status, in case a pub/sub message was lost (a
// reconnect drops the messages published meanwhile).
const cancelPollInterval = time.Second

// RunCancelNotify returns a channel that is closed when cancellation of the
// run is requested ([Store.RunCancel] from any process sharing the Redis), or
// when ctx ends. It subscribes to the namespace's cancel channel, then reads
// the run's status, so a cancel requested before the subscription is not
// missed: if the run is already CANCELLING or CANCELLED the channel is closed
// at once, as it is when ctx has already ended. Besides the pub/sub message it re-reads the status every second,
// so a message lost while the connection was down is caught too. Each call
// holds one pub/sub connection and one goroutine until the channel closes.
// It returns an error wrapping [engine.ErrNotFound] if the run is unknown.
func (s *Store) RunCancelNotify(ctx context.Context, runID string) (<-chan struct{}, error) {
	ch := make(chan struct{})
	if ctx.Err() != nil {
		// Nothing to wait for; still report an unknown run.
		if _, err := s.cancelRequested(context.WithoutCancel(ctx), runID); err != nil {
			return nil, fmt.Errorf("notify cancel of run %s: %w", runID, err)
		}
		close(ch)
		return ch, nil
	}
	ps := s.client.Subscribe(ctx, s.keys.cancelChannel())
	// Wait for the subscription to be confirmed before reading the status.
	if _, err := ps.Receive(ctx); err != nil {
		_ = ps.Close()
		return nil, fmt.Errorf("notify cancel of run %s: subscribe: %w", runID, interpretError(err))
	}
	requested, err := s.cancelRequested(ctx, runID)
	if err != nil {
		_ = ps.Close()
		return nil, fmt.Errorf("notify cancel of run %s: %w", runID, err)
	}
	if requested {
		_ = ps.Close()
		close(ch)
		return ch, nil
	}
	msgs := ps.Channel()
	go func() {
		defer close(ch)
		defer ps.Close()
		tick := time.NewTicker(cancelPollInterval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-msgs:
				if !ok {
					msgs = nil // closed under us: keep polling
					continue
				}
				if m.Payload == runID {
					return
				}
			case <-tick.C:
				// Errors (Redis down) and a vanished run: try again later.
				if ok, _ := s.cancelRequested(ctx, runID); ok {
					return
				}
			}
		}
	}()
	return ch, nil
}

// cancelRequested reports whether the run is CANCELLING or CANCELLED; an
// unknown run is an error wrapping [engine.ErrNotFound].
func (s *Store) cancelRequested(ctx context.Context, runID string) (bool, error) {
	st, err := s.client.HGet(ctx, s.keys.run(runID), fieldStatus).Result()
	if err != nil {
		return false, interpretError(err)
	}
	switch engine.RunStatus(st) {
	case engine.RunCancelling, engine.RunCancelled:
		return true, nil
	}
	return false, nil
}
