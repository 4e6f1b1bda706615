package api

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// waitJoined waits until the pending read of key has n joiners.
func waitJoined(t *testing.T, c *coalescer, key string, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		k := c.keys[key]
		return k != nil && k.pending != nil && k.pending.joined == n
	}, 5*time.Second, time.Millisecond)
}

func requireIdle(t *testing.T, c *coalescer) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	require.Empty(t, c.keys)
}

// TestCoalescerJoinsTheNextRead: calls arriving while a read runs share the
// next read, which starts after it ends; none gets the earlier answer.
func TestCoalescerJoinsTheNextRead(t *testing.T) {
	t.Parallel()
	c := newCoalescer()
	var reads atomic.Int32
	release := make(chan struct{})
	read := func(context.Context) ([]byte, error) {
		n := reads.Add(1)
		if n == 1 {
			<-release
		}
		return []byte(strconv.Itoa(int(n))), nil
	}
	ctx := context.Background()
	first := make(chan string)
	go func() {
		b, err := c.do(ctx, "k", read)
		require.NoError(t, err)
		first <- string(b)
	}()
	require.Eventually(t, func() bool { return reads.Load() == 1 }, 5*time.Second, time.Millisecond)

	const later = 10
	var wg sync.WaitGroup
	got := make([]string, later)
	for i := range later {
		wg.Go(func() {
			b, err := c.do(ctx, "k", read)
			require.NoError(t, err)
			got[i] = string(b)
		})
	}
	waitJoined(t, c, "k", later-1) // one leads the pending read, the others joined it
	require.Equal(t, int32(1), reads.Load(), "the pending read waits for the running one")
	close(release)
	require.Equal(t, "1", <-first)
	wg.Wait()
	for _, g := range got {
		require.Equal(t, "2", g, "a call must get a read that started after it arrived")
	}
	require.Equal(t, int32(2), reads.Load())
	requireIdle(t, c)

	// Alone, a call reads at once.
	b, err := c.do(ctx, "k", read)
	require.NoError(t, err)
	require.Equal(t, "3", string(b))
	requireIdle(t, c)
}

// TestCoalescerKeysErrorsAndCancel: distinct keys do not wait for each
// other, errors are shared, and a caller that gives up does not stop the
// read the others wait for.
func TestCoalescerKeysErrorsAndCancel(t *testing.T) {
	t.Parallel()
	c := newCoalescer()
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	boom := errors.New("boom")
	var readCtxErr atomic.Value
	slow := func(ctx context.Context) ([]byte, error) {
		started <- struct{}{}
		<-release
		readCtxErr.Store(ctx.Err() == nil)
		return nil, boom
	}
	ctx := context.Background()

	cctx, cancel := context.WithCancel(ctx)
	leaderDone := make(chan error)
	go func() { // leads the read with a context it then cancels
		_, err := c.do(cctx, "a", slow)
		leaderDone <- err
	}()
	<-started
	// Another key is not held up by "a".
	b, err := c.do(ctx, "b", func(context.Context) ([]byte, error) { return []byte("b"), nil })
	require.NoError(t, err)
	require.Equal(t, "b", string(b))

	// A joiner of the next read of "a" that gives up gets its ctx's error.
	jctx, jcancel := context.WithCancel(ctx)
	joinerDone := make(chan error)
	nextDone := make(chan error)
	go func() { _, err := c.do(ctx, "a", slow); nextDone <- err }()
	waitJoined(t, c, "a", 0)
	go func() { _, err := c.do(jctx, "a", slow); joinerDone <- err }()
	waitJoined(t, c, "a", 1)
	jcancel()
	require.ErrorIs(t, <-joinerDone, context.Canceled)

	cancel() // the leader's client went away: its read goes on for the others
	close(release)
	require.ErrorIs(t, <-leaderDone, boom)
	require.Equal(t, true, readCtxErr.Load(), "the shared read's context must not end with the leader's")
	<-started
	require.ErrorIs(t, <-nextDone, boom)
	requireIdle(t, c)
}

// TestCoalescerPanic: a panicking read releases its joiners with an error
// and panics in its leader.
func TestCoalescerPanic(t *testing.T) {
	t.Parallel()
	c := newCoalescer()
	release := make(chan struct{})
	started := make(chan struct{})
	var calls atomic.Int32
	read := func(context.Context) ([]byte, error) {
		if calls.Add(1) == 1 {
			close(started)
			<-release
			return []byte("ok"), nil
		}
		panic("kaboom")
	}
	ctx := context.Background()
	go func() { _, _ = c.do(ctx, "k", read) }()
	<-started
	leader := make(chan any)
	go func() {
		defer func() { leader <- recover() }()
		_, _ = c.do(ctx, "k", read)
	}()
	waitJoined(t, c, "k", 0)
	joiner := make(chan error)
	go func() { _, err := c.do(ctx, "k", read); joiner <- err }()
	waitJoined(t, c, "k", 1)
	close(release)
	require.Equal(t, "kaboom", <-leader)
	err := <-joiner
	require.ErrorContains(t, err, "kaboom")
	requireIdle(t, c)
}
