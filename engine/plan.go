// The plan and the scheduler: which units are admitted and when, with
// the when/switch decisions and the expression scope they read.

package engine

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// plan is a flow's graph by task index (file order), for the scheduler.
type plan struct {
	names []string
	index map[string]int
	specs []*TaskSpec
	up    [][]int
	down  [][]int

	// flowName and inline give the metric labels (see [LabelInline]).
	flowName string
	inline   bool
	// subFlows is true when a task runs a sub-flow (see failOrphans).
	subFlows bool
	// attemptAttrs caches the metric attributes of an attempt's end, by
	// task index·3 + outcome (made on first use: building a set hashes it).
	attemptAttrs []atomic.Pointer[metric.MeasurementOption]
}

// attemptOpt returns the metric attributes {flow, task, status} of an
// attempt of task i that ended with status.
func (p *plan) attemptOpt(i int, status TaskStatus) metric.MeasurementOption {
	k := 0
	switch status {
	case TaskSucceeded:
	case TaskFailed:
		k = 1
	case TaskCancelled:
		k = 2
	default:
		return metric.WithAttributeSet(attribute.NewSet(LabelFlow.String(p.flowName), LabelTask.String(p.taskLabel(i)), LabelStatus.String(string(status))))
	}
	slot := &p.attemptAttrs[i*3+k]
	if o := slot.Load(); o != nil {
		return *o
	}
	o := metric.WithAttributeSet(attribute.NewSet(LabelFlow.String(p.flowName), LabelTask.String(p.taskLabel(i)), LabelStatus.String(string(status))))
	slot.Store(&o)
	return o
}

// taskLabel is the task label value of task i.
func (p *plan) taskLabel(i int) string {
	if p.inline {
		return LabelInline
	}
	return p.names[i]
}

func newPlan(f *Flow) *plan {
	p := &plan{
		names: f.Order,
		index: make(map[string]int, len(f.Order)),
		specs: make([]*TaskSpec, len(f.Order)),
		up:    make([][]int, len(f.Order)),
		down:  make([][]int, len(f.Order)),

		flowName:     flowLabel(f.File, f.Name),
		inline:       f.File == InlineFlowFile,
		attemptAttrs: make([]atomic.Pointer[metric.MeasurementOption], 3*len(f.Order)),
	}
	for i, name := range f.Order {
		p.index[name] = i
		p.specs[i] = f.Tasks[name]
		p.subFlows = p.subFlows || p.specs[i].SubFlow != nil
	}
	for i, s := range p.specs {
		for _, u := range s.Upstream {
			j := p.index[u]
			p.up[i] = append(p.up[i], j)
			p.down[j] = append(p.down[j], i)
		}
	}
	return p
}

// readyQueue is a min-heap of startable task indexes: the first in file
// order starts first.
type readyQueue []int

func (q *readyQueue) push(v int) {
	h := append(*q, v)
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if h[p] <= h[i] {
			break
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
	*q = h
}

func (q *readyQueue) pop() int {
	h := *q
	v := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	for i := 0; ; {
		l, m := 2*i+1, i
		if l < len(h) && h[l] < h[m] {
			m = l
		}
		if r := l + 1; r < len(h) && h[r] < h[m] {
			m = r
		}
		if m == i {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	*q = h
	return v
}

// scheduler is the bookkeeping of one schedule call: per task, how many
// upstream tasks ended and how many succeeded, so that each change costs
// only the task's downstream edges.
type scheduler struct {
	x       *execution
	nDone   []int32
	nOK     []int32
	queued  []bool
	ready   readyQueue
	recheck []int // pending tasks whose upstream changed
}

// settled records that task i reached a terminal status.
func (s *scheduler) settled(i int) {
	ok := s.x.status[i] == TaskSucceeded
	for _, d := range s.x.plan.down[i] {
		s.nDone[d]++
		if ok {
			s.nOK[d]++
		}
		s.recheck = append(s.recheck, d)
	}
}

// check queues the pending task i if its trigger is satisfied, or skips it
// if it never can be.
func (s *scheduler) check(i int) {
	x := s.x
	if x.status[i] != TaskPending || s.queued[i] {
		return
	}
	spec, n := x.plan.specs[i], int32(len(x.plan.up[i]))
	if spec.Trigger == TriggerAny && n > 0 {
		switch {
		case s.nOK[i] > 0:
			s.admit(i)
		case s.nDone[i] == n:
			s.skip(i, "skipped: no upstream task succeeded")
		}
		return
	}
	switch {
	case s.nOK[i] == n:
		s.admit(i)
	case s.nDone[i] > s.nOK[i]:
		for _, u := range x.plan.up[i] {
			if st := x.status[u]; st.Terminal() && st != TaskSucceeded {
				s.skip(i, fmt.Sprintf("skipped: upstream %s %s", x.plan.names[u], st))
				return
			}
		}
	}
}

// admit queues task i, whose trigger is satisfied, unless its switch did
// not take its branch or its when is false (then it is SKIPPED), or its
// switch has not ended yet (then it waits: the switch is upstream, so its
// end checks i again).
func (s *scheduler) admit(i int) {
	x := s.x
	spec := x.plan.specs[i]
	if spec.Branch != "" {
		sw := x.plan.index[spec.Branch]
		st := x.status[sw]
		if !st.Terminal() {
			return
		}
		if st != TaskSucceeded {
			s.skip(i, fmt.Sprintf("skipped: switch %s %s", spec.Branch, st))
			return
		}
		x.mu.Lock()
		dec, _ := x.outputs[spec.Branch].(map[string]any)
		x.mu.Unlock()
		taken, _ := dec["tasks"].([]any)
		if !slices.Contains(taken, any(spec.Name)) {
			s.skip(i, fmt.Sprintf("skipped: switch %s took %s", spec.Branch, describeCase(dec, len(x.plan.specs[sw].Switch.Default) > 0)))
			return
		}
	}
	if spec.When != nil {
		ok, err := spec.When.evalBool(x.exprScope(spec.When, nil, nil))
		switch {
		case err != nil:
			x.status[i], x.errs[i] = TaskFailed, "when: "+err.Error()
			x.endTask(i, TaskFailed, x.errs[i])
			s.settled(i)
			if spec.FailPolicy != FailIsolate {
				x.stop(errFailStop)
			}
			return
		case !ok:
			s.skip(i, "skipped: when "+quoteExpr(spec.When.Text)+" is false")
			return
		}
	}
	s.queue(i)
}

// describeCase says which case a switch's decision (its output) took.
func describeCase(dec map[string]any, hasDefault bool) string {
	c, _ := dec["case"].(string)
	if dec["default"] == true {
		if !hasDefault {
			return fmt.Sprintf("no case (value %q)", c)
		}
		return "the default"
	}
	return fmt.Sprintf("case %q", c)
}

func (s *scheduler) queue(i int) {
	s.queued[i] = true
	s.ready.push(i)
}

func (s *scheduler) skip(i int, reason string) {
	x := s.x
	x.status[i], x.errs[i] = TaskSkipped, reason
	name := x.plan.names[i]
	now := time.Now().UTC()
	x.taskUpdate(&TaskUpdateParams{RunID: x.run.ID, Task: name, Status: TaskSkipped, EndedAt: now, Error: reason})
	x.e.report(Progress{Kind: ProgressTaskFinished, RunID: x.run.ID, FlowName: x.run.FlowName, TraceID: x.run.TraceID, Task: name, Status: string(TaskSkipped), Error: reason})
	s.settled(i)
}

// schedule starts tasks as their triggers allow until every task is
// finished or runCtx is done and nothing runs any more.
func (x *execution) schedule(runCtx context.Context) {
	p := x.plan
	n := len(p.names)
	s := &scheduler{x: x, nDone: make([]int32, n), nOK: make([]int32, n), queued: make([]bool, n)}
	for i := range n {
		if x.status[i].Terminal() {
			s.settled(i)
		}
	}
	s.recheck = s.recheck[:0]
	for i := range n {
		s.recheck = append(s.recheck, i)
	}

	maxPar := x.flow.MaxParallel
	if maxPar <= 0 {
		maxPar = DefaultMaxParallel
	}
	// Up to maxPar long-lived workers run the tasks (their grown stacks are
	// reused). Both channels have room for every task that can be running,
	// so neither side ever blocks the other.
	jobs := make(chan int, maxPar)
	results := make(chan taskResult, maxPar)
	running, workers := 0, 0
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(jobs)
	for {
		if runCtx.Err() == nil {
			// Skips travel down the graph: skipping appends to recheck.
			// A when that fails to evaluate can stop the run.
			for k := 0; k < len(s.recheck) && runCtx.Err() == nil; k++ {
				s.check(s.recheck[k])
			}
			s.recheck = s.recheck[:0]
			for running < maxPar && len(s.ready) > 0 && runCtx.Err() == nil {
				i := s.ready.pop()
				x.status[i] = TaskRunning
				running++
				if workers < running {
					workers++
					wg.Go(func() {
						w := &taskWorker{}
						defer w.stop()
						for i := range jobs {
							results <- x.runTask(runCtx, i, w)
						}
					})
				}
				jobs <- i
			}
		}
		if running == 0 {
			return
		}
		// Running tasks see a cancellation through their contexts; their
		// results keep coming.
		r := <-results
		running--
		x.status[r.i], x.errs[r.i] = r.status, r.err
		s.settled(r.i)
		if r.status == TaskFailed && p.specs[r.i].FailPolicy != FailIsolate {
			x.stop(errFailStop)
		}
	}
}

// decide evaluates a switch: its output, the recorded decision that the
// tasks of its branches (and a run taken over later) follow.
func (x *execution) decide(spec *TaskSpec) (any, error) {
	sw := spec.Switch
	v, err := sw.Expr.eval(x.exprScope(sw.Expr, nil, nil))
	if err != nil {
		return nil, &noRetryError{"switch: " + err.Error()}
	}
	key, err := caseKey(v)
	if err != nil {
		return nil, &noRetryError{fmt.Sprintf("switch: expression %s %v", quoteExpr(sw.Expr.Text), err)}
	}
	_, matched := sw.Cases[key]
	tasks := sw.Taken(key)
	if tasks == nil {
		tasks = []string{}
	}
	return map[string]any{"value": v, "case": key, "default": !matched, "tasks": tasks}, nil
}

// exprScope is what expression e sees now: the run's params, the outputs
// so far of the tasks it reads, and the iteration and round output when
// given.
func (x *execution) exprScope(e *Expr, it *Iteration, output any) *exprScope {
	outs := make(map[string]any, len(e.nodes))
	x.mu.Lock()
	for _, name := range e.nodes {
		if v, ok := x.outputs[name]; ok {
			outs[name] = v
		}
	}
	x.mu.Unlock()
	s := &exprScope{params: x.run.Params, outputs: outs, output: output}
	if it != nil {
		s.item, s.index = it.Item, it.Index
	}
	return s
}
