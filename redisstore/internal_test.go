package redisstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
)

func TestIndexMemberOrder(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 1, 2, 3, 4, 5, 6_000_000, time.UTC)
	times := []time.Time{
		{}, time.UnixMilli(-5000), time.UnixMilli(-1), time.UnixMilli(0), time.UnixMilli(1),
		base, base.Add(time.Millisecond), base.Add(time.Hour),
	}
	var members []string
	for _, tm := range times {
		for _, id := range []string{"a", "b", "b0", "c"} {
			m := indexMember(tm, id)
			created, gotID, ok := parseIndexMember(m)
			require.True(t, ok, m)
			require.Equal(t, id, gotID)
			require.Equal(t, tm.UnixMilli(), created.UnixMilli())
			members = append(members, m)
		}
	}
	// Redis orders members of equal score by bytes: that must be the
	// (CreatedAt, ID) order, which is how they were built.
	require.True(t, slices.IsSorted(members), "%v", members)
}

func TestCursor(t *testing.T) {
	t.Parallel()
	m := indexMember(time.UnixMilli(1700000000123), "01a2-id:with:colons")
	got, err := decodeCursor(encodeCursor(m))
	require.NoError(t, err)
	require.Equal(t, m, got)
	for _, bad := range []string{
		"", "x", "!!", encodeCursor("garbage"), encodeCursor(strings.ToUpper(m)),
		encodeCursor(m[:17]), encodeCursor("zzzzzzzzzzzzzzzz:id"),
	} {
		_, err := decodeCursor(bad)
		require.ErrorIs(t, err, engine.ErrBadCursor, "%q", bad)
	}
}

// decodeNetstrings is sweep.lua's decode, in Go.
func decodeNetstrings(t *testing.T, s string) []string {
	t.Helper()
	var out []string
	for s != "" {
		n, rest, ok := strings.Cut(s, ":")
		require.True(t, ok)
		l, err := strconv.Atoi(n)
		require.NoError(t, err)
		out = append(out, rest[:l])
		s = rest[l:]
	}
	return out
}

func TestGCRecord(t *testing.T) {
	t.Parallel()
	k := newKeys("ns")
	rec := k.gcRecord("id1", "m:1", "flow", []string{"t:1", "", "日本"})
	require.Equal(t, []string{
		"{ns}:run:id1", "{ns}:tasks:id1", "{ns}:logs:id1", "m:1",
		"{ns}:idx:flow:flow", "{ns}:idx:tag:t:1", "{ns}:idx:tag:", "{ns}:idx:tag:日本",
	}, decodeNetstrings(t, rec))
}

// The scripts address status indexes by position; the positions follow
// engine.RunStatuses.
func TestStatusOrderMatchesScripts(t *testing.T) {
	t.Parallel()
	require.Equal(t, []engine.RunStatus{"PENDING", "RUNNING", "CANCELLING", "COMPLETED", "FAILED", "CANCELLED"}, engine.RunStatuses)
	for _, name := range []string{"finish", "cancel"} {
		src, err := luaFS.ReadFile("lua/" + name + ".lua")
		require.NoError(t, err)
		require.Contains(t, string(src), "KEYS[6…11] status indexes, in the order PENDING, RUNNING, CANCELLING,")
	}
	src, err := luaFS.ReadFile("lua/finish_run.lua")
	require.NoError(t, err)
	require.Contains(t, string(src), "{PENDING = 6, RUNNING = 7, CANCELLING = 8, COMPLETED = 9, FAILED = 10, CANCELLED = 11}")
	// finish_many.lua builds finish.lua's KEYS: 3 per run, then its own
	// KEYS 1…10 (events, expiry, the six indexes in order, queued, queue).
	src, err = luaFS.ReadFile("lua/finish_many.lua")
	require.NoError(t, err)
	require.Contains(t, string(src), "KEYS[3…8] status indexes, in the order PENDING, RUNNING, CANCELLING,")
	require.Contains(t, string(src), "KEYS[1], KEYS[2],\n    KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]}")
	require.Equal(t, newKeys("x").status(engine.RunPending), newKeys("x").statuses()[0])
}

// replyError is a Redis error reply, as go-redis reports one.
type replyError string

func (e replyError) Error() string { return string(e) }
func (replyError) RedisError()     {}

var _ redis.Error = replyError("")

func TestInterpretError(t *testing.T) {
	t.Parallel()
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: &net.AddrError{Err: "connection refused"}}
	tests := []struct {
		name string
		err  error
		is   error // nil: returned as is
	}{
		{"Nil", redis.Nil, engine.ErrNotFound},
		{"WrappedNil", fmt.Errorf("x: %w", redis.Nil), engine.ErrNotFound},
		{"ScriptNotFound", replyError("NOTFOUND run"), engine.ErrNotFound},
		{"ScriptConflict", replyError("CONFLICT COMPLETED"), engine.ErrConflict},
		{"Refused", refused, engine.ErrUnavailable},
		{"Syscall", fmt.Errorf("dial: %w", syscall.ECONNREFUSED), engine.ErrUnavailable},
		{"EOF", io.EOF, engine.ErrUnavailable},
		{"PoolTimeout", redis.ErrPoolTimeout, engine.ErrUnavailable},
		{"Closed", redis.ErrClosed, engine.ErrUnavailable},
		{"Loading", replyError("LOADING Redis is loading the dataset in memory"), engine.ErrUnavailable},
		{"ClusterDown", replyError("CLUSTERDOWN The cluster is down"), engine.ErrUnavailable},
		{"ReadOnly", replyError("READONLY You can't write against a read only replica."), engine.ErrUnavailable},
		{"Busy", replyError("BUSY Redis is busy running a script."), engine.ErrUnavailable},
		{"OOM", replyError("OOM command not allowed when used memory > 'maxmemory'."), engine.ErrUnavailable},
		{"MasterDown", replyError("MASTERDOWN Link with MASTER is down"), engine.ErrUnavailable},
		{"TryAgain", replyError("TRYAGAIN Multiple keys request during rehashing of slot"), engine.ErrUnavailable},
		{"BusyGroup", replyError("BUSYGROUP Consumer Group name already exists"), nil},
		{"OwnerLost", replyError("CONFLICT owner lost: the run was taken over (attempt 2)"), engine.ErrConflict},
		{"Canceled", context.Canceled, nil},
		{"OtherReply", replyError("ERR wrong number of arguments"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := interpretError(tt.err)
			if tt.is == nil {
				require.Equal(t, tt.err, got)
				return
			}
			require.ErrorIs(t, got, tt.is)
			if tt.is == engine.ErrUnavailable {
				require.ErrorIs(t, got, tt.err, "the cause stays in the chain")
			}
		})
	}
	require.NoError(t, interpretError(nil))
	inv := interpretError(replyError("INVALID status DONE"))
	require.Error(t, inv)
	require.False(t, errors.Is(inv, engine.ErrConflict) || errors.Is(inv, engine.ErrNotFound))
	require.Equal(t, engine.RunFailed, conflictStatus(fmt.Errorf("x: %w", replyError("CONFLICT FAILED"))))
	require.Equal(t, engine.RunStatus(""), conflictStatus(replyError("CONFLICT run exists")))
}
