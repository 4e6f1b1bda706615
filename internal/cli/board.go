package cli

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/pyoco/pyoco/engine"
)

// boardTick is how often the board's timers are redrawn.
const boardTick = 100 * time.Millisecond

// board is the live progress of a run on a terminal (Bubble Tea): the line
// log (the cute lines, what tasks say) scrolls above, and below it, redrawn
// in place, the tasks running now with their attempt and an elapsed timer.
// Its lines keep their order: each is handed to the program in the order
// observe sees it. It is safe for concurrent use; stop ends it, after which
// nothing is drawn and the terminal is as before (cursor shown).
type board struct {
	mu      sync.Mutex
	w       io.Writer
	prog    *tea.Program
	done    chan struct{} // closed when the program has ended
	ticks   chan struct{} // closed to stop the ticker; ticked when it has
	ticked  chan struct{}
	stopped bool
	// failed is set when the program could not start: the lines are then
	// written to w as they come, without a board.
	failed bool
}

// startBoard draws the board on w until stop. total is the number of tasks
// of the run (0: unknown).
func startBoard(w io.Writer, total int) *board {
	m := &boardModel{running: map[string]*boardTask{}, total: total, now: time.Now()}
	b := &board{w: w, done: make(chan struct{})}
	// No input (so no raw mode: Ctrl+C stays a SIGINT that cancels the
	// run), no signal handler of its own, and a panic in drawing is a
	// crash rather than a program that quietly stopped reading messages.
	b.prog = tea.NewProgram(m, tea.WithOutput(w), tea.WithInput(nil), tea.WithoutSignalHandler(),
		tea.WithoutCatchPanics(), tea.WithoutBracketedPaste(), tea.WithFPS(30))
	go func() {
		defer close(b.done)
		_, _ = b.prog.Run()
	}()
	// Once the program has taken a message its loop runs until stop, so
	// Println (which cannot give up) never blocks for ever; a program that
	// failed to start ends its context, and Send returns.
	ready := make(chan struct{})
	b.prog.Send(boardHello{ready: ready})
	select {
	case <-ready:
	case <-b.done:
		b.failed, b.stopped = true, true
		return b
	}
	// The timers move on with the ticks (our goroutine, stopped by stop:
	// no command of the program outlives it).
	b.ticks, b.ticked = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(b.ticked)
		tk := time.NewTicker(boardTick)
		defer tk.Stop()
		for {
			select {
			case <-b.ticks:
				return
			case now := <-tk.C:
				b.prog.Send(boardNow(now))
			}
		}
	}()
	return b
}

// event updates the board with ev and prints line (if not empty) above it.
func (b *board) event(ev engine.Progress, line string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failed {
		_, _ = io.WriteString(b.w, line)
		return
	}
	if b.stopped {
		return
	}
	b.prog.Send(boardEvent{ev: ev})
	if line = strings.TrimRight(line, "\n"); line != "" {
		b.prog.Println(line)
	}
}

// stop clears the board (the lines above stay) and waits for the program
// to end. It may be called more than once.
func (b *board) stop() {
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		<-b.done
		return
	}
	b.stopped = true
	close(b.ticks)
	<-b.ticked
	b.prog.Send(boardStop{})
	b.mu.Unlock()
	<-b.done
}

// boardModel is the Bubble Tea model of the board.
type boardModel struct {
	flow    string
	runID   string
	started time.Time
	total   int
	done    int
	failed  int
	running map[string]*boardTask
	order   []string // running tasks, in the order they started
	now     time.Time
	width   int
	stopped bool
}

// boardTask is one running task.
type boardTask struct {
	attempt int
	since   time.Time
	// retrying is set while the task waits for its next attempt, due at
	// retryAt (zero: not known).
	retrying bool
	retryAt  time.Time
}

type (
	boardEvent struct{ ev engine.Progress }
	boardHello struct{ ready chan struct{} }
	boardStop  struct{}
	boardNow   time.Time
)

func (m *boardModel) Init() tea.Cmd { return nil }

func (m *boardModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case boardNow:
		m.now = time.Time(msg)
	case tea.WindowSizeMsg:
		m.width = msg.Width
	case boardHello:
		close(msg.ready)
	case boardStop:
		m.stopped = true
		return m, tea.Quit
	case boardEvent:
		m.apply(msg.ev)
	}
	return m, nil
}

func (m *boardModel) apply(ev engine.Progress) {
	at := ev.Time
	if at.IsZero() {
		at = time.Now()
	}
	if at.After(m.now) {
		m.now = at
	}
	switch ev.Kind {
	case engine.ProgressRunStarted:
		m.flow, m.runID, m.started = ev.FlowName, ev.RunID, at
	case engine.ProgressTaskStarted:
		t, ok := m.running[ev.Task]
		if !ok {
			t = &boardTask{}
			m.running[ev.Task] = t
			m.order = append(m.order, ev.Task)
		}
		t.attempt, t.since, t.retrying, t.retryAt = max(ev.Attempt, 1), at, false, time.Time{}
	case engine.ProgressTaskRetrying:
		if t, ok := m.running[ev.Task]; ok {
			t.retrying, t.retryAt = true, time.Time{}
			if ev.RetryIn >= 0 {
				t.retryAt = at.Add(ev.RetryIn)
			}
		}
	case engine.ProgressTaskFinished:
		if _, ok := m.running[ev.Task]; ok {
			delete(m.running, ev.Task)
			m.order = slices.DeleteFunc(m.order, func(n string) bool { return n == ev.Task })
		}
		m.done++
		if engine.TaskStatus(ev.Status) == engine.TaskFailed {
			m.failed++
		}
	case engine.ProgressRunFinished:
		m.running = map[string]*boardTask{}
		m.order = nil
	}
}

// fmtElapsed is a timer: tenths of a second below a minute, then 1m05s.
func fmtElapsed(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	if d < time.Minute {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	d = d.Truncate(time.Second)
	if d < time.Hour {
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

func (m *boardModel) View() string {
	if m.stopped || m.flow == "" {
		return ""
	}
	var b strings.Builder
	counts := fmt.Sprintf("%d done", m.done)
	if m.total > 0 {
		counts = fmt.Sprintf("%d/%d done", m.done, m.total)
	}
	if m.failed > 0 {
		counts += fmt.Sprintf(", %d failed", m.failed)
	}
	fmt.Fprintf(&b, "── %s  %d running · %s · %s ──\n", m.flow, len(m.order), counts, fmtElapsed(m.now.Sub(m.started)))
	nameW := 4
	for _, n := range m.order {
		nameW = max(nameW, len(n))
	}
	nameW = min(nameW, 40)
	for _, n := range m.order {
		t := m.running[n]
		state := "running " + fmtElapsed(m.now.Sub(t.since))
		switch {
		case t.retrying && !t.retryAt.IsZero():
			state = "retrying in " + fmtElapsed(t.retryAt.Sub(m.now))
		case t.retrying:
			state = "retrying"
		}
		name := n
		if len(name) > nameW {
			name = name[:nameW-1] + "…"
		}
		fmt.Fprintf(&b, "  ⏳ %-*s  attempt %d  %s\n", nameW, name, t.attempt, state)
	}
	return b.String()
}
