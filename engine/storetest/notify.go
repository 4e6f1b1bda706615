package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
)

// closeTimeout bounds the wait for a channel that should close; a store may
// deliver the notification asynchronously (Redis pub/sub).
const closeTimeout = 5 * time.Second

func requireClosed(t testing.TB, ch <-chan struct{}, msg string) {
	t.Helper()
	select {
	case _, ok := <-ch:
		require.False(t, ok, "%s: channel received a value instead of closing", msg)
	case <-time.After(closeTimeout):
		require.FailNow(t, msg+": channel not closed")
	}
}

func requireOpen(t testing.TB, ch <-chan struct{}, msg string) {
	t.Helper()
	select {
	case <-ch:
		require.FailNow(t, msg+": channel closed")
	default:
	}
}

func testCancelNotifier(t *testing.T, setup setupFunc) {
	// notifier returns the store as a CancelNotifier, skipping if it is not.
	notifier := func(t *testing.T) (*testBundle, engine.CancelNotifier) {
		t.Helper()
		b := setup(t)
		n, ok := b.store.(engine.CancelNotifier)
		if !ok {
			t.Skip("store does not implement engine.CancelNotifier")
		}
		return b, n
	}

	t.Run("ClosesOnCancelOfThatRunOnly", func(t *testing.T) {
		t.Parallel()
		b, n := notifier(t)
		r1 := createRun(t, b, NewTestRun("hello", "a"))
		r2 := createRun(t, b, NewTestRun("hello", "a"))
		startRun(t, b, r1.ID, "w1", b.now)
		startRun(t, b, r2.ID, "w1", b.now)
		ch1, err := n.RunCancelNotify(b.ctx, r1.ID)
		require.NoError(t, err)
		ch2a, err := n.RunCancelNotify(b.ctx, r2.ID)
		require.NoError(t, err)
		ch2b, err := n.RunCancelNotify(b.ctx, r2.ID)
		require.NoError(t, err)
		requireOpen(t, ch1, "before cancel")

		_, err = b.store.RunCancel(b.ctx, &engine.RunCancelParams{RunID: r2.ID, At: b.now})
		require.NoError(t, err)
		requireClosed(t, ch2a, "cancelled run, first subscriber")
		requireClosed(t, ch2b, "cancelled run, second subscriber")
		requireOpen(t, ch1, "other run")

		// Finishing without a cancel request does not close it either.
		_, err = b.store.RunFinish(b.ctx, &engine.RunFinishParams{RunID: r2.ID, Status: engine.RunCancelled, At: b.now})
		require.NoError(t, err)
		requireOpen(t, ch1, "other run")

		_, err = b.store.RunCancel(b.ctx, &engine.RunCancelParams{RunID: r1.ID, At: b.now})
		require.NoError(t, err)
		requireClosed(t, ch1, "cancelled run")
	})

	t.Run("ClosesOnCancelOfPendingRun", func(t *testing.T) {
		t.Parallel()
		b, n := notifier(t)
		r := createRun(t, b, NewTestRun("hello", "a"))
		ch, err := n.RunCancelNotify(b.ctx, r.ID)
		require.NoError(t, err)
		_, err = b.store.RunCancel(b.ctx, &engine.RunCancelParams{RunID: r.ID, At: b.now})
		require.NoError(t, err)
		requireClosed(t, ch, "cancelled pending run")
	})

	t.Run("ClosesWhenContextEnds", func(t *testing.T) {
		t.Parallel()
		b, n := notifier(t)
		r := createRun(t, b, NewTestRun("hello", "a"))
		startRun(t, b, r.ID, "w1", b.now)
		ctx, cancel := context.WithCancel(b.ctx)
		ch, err := n.RunCancelNotify(ctx, r.ID)
		require.NoError(t, err)
		requireOpen(t, ch, "before ctx ends")
		cancel()
		requireClosed(t, ch, "ctx ended")

		// A later cancel of the run is still fine (no double close).
		_, err = b.store.RunCancel(b.ctx, &engine.RunCancelParams{RunID: r.ID, At: b.now})
		require.NoError(t, err)
	})

	t.Run("ContextEndsAfterCancel", func(t *testing.T) {
		t.Parallel()
		b, n := notifier(t)
		r := createRun(t, b, NewTestRun("hello", "a"))
		startRun(t, b, r.ID, "w1", b.now)
		ctx, cancel := context.WithCancel(b.ctx)
		ch, err := n.RunCancelNotify(ctx, r.ID)
		require.NoError(t, err)
		_, err = b.store.RunCancel(b.ctx, &engine.RunCancelParams{RunID: r.ID, At: b.now})
		require.NoError(t, err)
		requireClosed(t, ch, "cancelled")
		cancel() // must not close it again
	})

	t.Run("AlreadyRequested", func(t *testing.T) {
		t.Parallel()
		for _, st := range []engine.RunStatus{engine.RunCancelling, engine.RunCancelled} {
			t.Run(string(st), func(t *testing.T) {
				t.Parallel()
				b, n := notifier(t)
				r := createRun(t, b, NewTestRun("hello", "a"))
				moveTo(t, b, r.ID, st)
				ch, err := n.RunCancelNotify(b.ctx, r.ID)
				require.NoError(t, err)
				requireClosed(t, ch, "cancellation already requested")
			})
		}
	})

	t.Run("UnknownNotFound", func(t *testing.T) {
		t.Parallel()
		b, n := notifier(t)
		_, err := n.RunCancelNotify(b.ctx, unknownID)
		require.ErrorIs(t, err, engine.ErrNotFound)
	})
}
