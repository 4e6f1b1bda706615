package redisstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pyoco/pyoco/engine"
)

// WriteBatch performs ops (RunStart, TaskUpdateMany, RunFinish of any runs
// of the namespace) in one pipelined round trip: each is applied atomically
// on its own, with the result the matching method gives. The finishes of
// runs of one partition go in one finish_many.lua (one script, each run's
// finish on its own: a refusal is that run's reply), the other ops each in
// its own script. A script Redis did not know (NOSCRIPT, after a restart
// or a SCRIPT FLUSH, or the first use of finish_many.lua; nothing of it was
// applied) is sent again on its own, which loads it. A lone op is sent as the method sends
// it. This is the engine's group commit ([engine.BatchWriter]); on Cluster
// a pipeline's commands go to their partitions' slots.
func (s *Store) WriteBatch(ctx context.Context, ops []*engine.WriteOp) {
	if len(ops) == 1 {
		s.writeOne(ctx, ops[0])
		return
	}
	pipe := s.client.Pipeline()
	cmds := make([]*redis.Cmd, len(ops))
	t0 := time.Now()
	finishes := make(map[int][]int) // partition → indexes in ops of its finishes
	for i, op := range ops {
		var err error
		switch {
		case op.Start != nil:
			cmds[i] = s.runStartCmd(ctx, pipe, op.Start)
		case op.Tasks != nil:
			cmds[i], err = s.taskUpdateManyCmd(ctx, pipe, op.Tasks)
		case op.Finish != nil:
			k := partitionOf(op.Finish.RunID, len(s.parts))
			finishes[k] = append(finishes[k], i)
		}
		op.Err = err
	}
	many := make(map[int]*redis.Cmd) // partition → its finish_many
	for k, idx := range finishes {
		if len(idx) == 1 {
			cmds[idx[0]], ops[idx[0]].Err = s.runFinishCmd(ctx, pipe, ops[idx[0]].Finish)
			continue
		}
		if c := s.finishManyCmd(ctx, pipe, k, ops, idx); c != nil {
			many[k] = c
		}
	}
	_, _ = pipe.Exec(ctx) // each command carries its own error
	for k, c := range many {
		if isNoScript(c.Err()) {
			// Nothing of it was applied: sent again on its own, which
			// loads the script (a pipeline cannot).
			if c = s.finishManyCmd(ctx, s.client, k, ops, finishes[k]); c == nil {
				continue
			}
		}
		s.finishManyResult(c, ops, finishes[k])
	}
	for i, op := range ops {
		c := cmds[i]
		if c == nil {
			continue // op.Err is set, or its finish_many gave its result
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

// finishManyCmd queues (on a pipeline; on a client, runs) one
// finish_many.lua for the finishes at idx in ops, all of partition k; an
// op whose arguments cannot be encoded gets its error and is left out (nil
// when none is left).
func (s *Store) finishManyCmd(ctx context.Context, c redis.Scripter, k int, ops []*engine.WriteOp, idx []int) *redis.Cmd {
	pk := s.parts[k]
	args := []any{pk.run(""), pk.tasks(""), pk.logs("")}
	n := 0
	for _, i := range idx {
		p := ops[i].Finish
		a, err := s.finishArgs(p)
		if err != nil {
			ops[i].Err = err
			continue
		}
		args = append(append(args, p.RunID, len(a)), a...)
		n++
	}
	if n == 0 {
		return nil
	}
	ks := append([]string{pk.events(), pk.expiry()}, pk.statuses()...)
	ks = append(ks, pk.queued(), pk.queue())
	return finishManyScript.Run(ctx, c, ks, args...)
}

// finishManyResult hands each finish at idx in ops (those without an
// error already, in order) its reply from c; one that failed as a whole
// gives each of its runs that error.
func (s *Store) finishManyResult(c *redis.Cmd, ops []*engine.WriteOp, idx []int) {
	var live []int
	for _, i := range idx {
		if ops[i].Err == nil {
			live = append(live, i)
		}
	}
	vals, err := c.Slice()
	if err != nil || len(vals) != len(live) {
		for _, i := range live {
			ops[i].Err = fmt.Errorf("finish run %s: %w", ops[i].Finish.RunID, interpretError(cmp.Or(err, errors.New("short reply"))))
		}
		return
	}
	for j, i := range live {
		v, verr := vals[j], error(nil)
		if e, ok := v.(error); ok {
			v, verr = nil, e
		}
		ops[i].Run, ops[i].Err = s.runFinishResult(ops[i].Finish, v, verr)
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
