package redisstore

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pyoco/pyoco/engine"
)

// WriteBatch performs ops (RunStart, TaskUpdateMany, RunFinish of any runs
// of the namespace) in one pipelined round trip: each is its own script,
// atomic on its own, with the result the matching method gives. An op whose
// script Redis did not know (NOSCRIPT, after a restart or a SCRIPT FLUSH;
// nothing of it was applied) is sent again on its own, which loads the
// script. A lone op is sent as the method sends it. This is the engine's
// group commit ([engine.BatchWriter]); on Cluster every op goes to the
// namespace's one slot.
func (s *Store) WriteBatch(ctx context.Context, ops []*engine.WriteOp) {
	if len(ops) == 1 {
		s.writeOne(ctx, ops[0])
		return
	}
	pipe := s.client.Pipeline()
	cmds := make([]*redis.Cmd, len(ops))
	t0 := time.Now()
	for i, op := range ops {
		var err error
		switch {
		case op.Start != nil:
			cmds[i] = s.runStartCmd(ctx, pipe, op.Start)
		case op.Tasks != nil:
			cmds[i], err = s.taskUpdateManyCmd(ctx, pipe, op.Tasks)
		case op.Finish != nil:
			cmds[i], err = s.runFinishCmd(ctx, pipe, op.Finish)
		}
		op.Err = err
	}
	_, _ = pipe.Exec(ctx) // each command carries its own error
	for i, op := range ops {
		c := cmds[i]
		if c == nil {
			continue // op.Err is set
		}
		if isNoScript(c.Err()) {
			s.writeOne(ctx, op)
			continue
		}
		switch {
		case op.Start != nil:
			op.Run, op.Err = s.runStartResult(op.Start, t0, c.Val(), c.Err())
		case op.Tasks != nil:
			op.Err = taskUpdateManyResult(op.Tasks, c.Err())
		case op.Finish != nil:
			op.Run, op.Err = s.runFinishResult(op.Finish, c.Val(), c.Err())
		}
	}
}

// writeOne performs op with the matching method.
func (s *Store) writeOne(ctx context.Context, op *engine.WriteOp) {
	switch {
	case op.Start != nil:
		op.Run, op.Err = s.RunStart(ctx, op.Start)
	case op.Tasks != nil:
		op.Err = s.TaskUpdateMany(ctx, op.Tasks)
	case op.Finish != nil:
		op.Run, op.Err = s.RunFinish(ctx, op.Finish)
	}
}

// isNoScript reports whether err is Redis's NOSCRIPT reply.
func isNoScript(err error) bool {
	return err != nil && redis.HasErrorPrefix(err, "NOSCRIPT")
}

var _ engine.BatchWriter = (*Store)(nil)
