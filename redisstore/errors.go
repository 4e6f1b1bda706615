package redisstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/pyoco/pyoco/engine"
)

// Error replies of the Lua scripts: the first word is the code.
const (
	replyNotFound = "NOTFOUND" // "NOTFOUND run" / "NOTFOUND task"
	replyConflict = "CONFLICT" // "CONFLICT <status>" / "CONFLICT run exists"
	replyInvalid  = "INVALID"  // "INVALID status <status>"
)

// interpretError translates an error from go-redis into the engine's terms,
// in one place (as River's drivers do):
//
//   - redis.Nil and the scripts' "NOTFOUND …" replies wrap
//     [engine.ErrNotFound]; "CONFLICT …" wraps [engine.ErrConflict];
//     "INVALID …" is a plain error.
//   - Connection trouble (refused or reset connections, EOF, I/O timeouts,
//     an exhausted pool, a closed client) and Redis saying it cannot serve
//     now (LOADING, CLUSTERDOWN, TRYAGAIN, MASTERDOWN, READONLY after a
//     fail-over, BUSY with a long script, OOM at maxmemory) wrap both
//     [engine.ErrUnavailable] and the cause.
//   - The caller's context ending (context.Canceled, DeadlineExceeded) and
//     anything else are returned as they are.
func interpretError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, redis.Nil) {
		return engine.ErrNotFound
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		code, detail, _ := strings.Cut(rerr.Error(), " ")
		switch code {
		case replyNotFound:
			return fmt.Errorf("%s: %w", detail, engine.ErrNotFound)
		case replyConflict:
			return fmt.Errorf("%s: %w", detail, engine.ErrConflict)
		case replyInvalid:
			return errors.New(detail)
		case "LOADING", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "READONLY", "BUSY", "OOM":
			return fmt.Errorf("%w: %w", engine.ErrUnavailable, err)
		}
		return err
	}
	if isConnError(err) {
		return fmt.Errorf("%w: %w", engine.ErrUnavailable, err)
	}
	return err
}

// isConnError reports whether err means Redis could not be reached or the
// connection broke.
func isConnError(err error) bool {
	var netErr net.Error
	return errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, redis.ErrPoolTimeout) ||
		errors.Is(err, redis.ErrPoolExhausted) ||
		errors.Is(err, redis.ErrClosed) ||
		strings.Contains(err.Error(), "connection refused")
}

// conflictStatus returns the run status of a "CONFLICT <status>" script
// reply in err, or "".
func conflictStatus(err error) engine.RunStatus {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return ""
	}
	code, detail, _ := strings.Cut(rerr.Error(), " ")
	if code != replyConflict {
		return ""
	}
	if st := engine.RunStatus(detail); st.Valid() {
		return st
	}
	return ""
}
