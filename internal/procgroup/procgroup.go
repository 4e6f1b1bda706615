// Package procgroup keeps the process groups that tasks started and are
// still running in this process (shell tasks, exec plug-ins), so that a
// second Ctrl+C can kill all of them, children that ignore SIGTERM
// included, before pyoco exits.
//
// It imports only the standard library; engine must not import it (the
// task implementations and the command line do).
package procgroup

import (
	"sync"
	"syscall"
)

var (
	mu     sync.Mutex
	groups = map[int]int{} // group leader pid → holders
)

// Add records the process group led by pid (a process started with
// Setpgid) as live. Call the returned func once the group is done with
// (after its leader was waited for and any cleanup kill sent). Safe for
// concurrent use.
func Add(pid int) (remove func()) {
	mu.Lock()
	groups[pid]++
	mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			mu.Lock()
			defer mu.Unlock()
			if groups[pid]--; groups[pid] <= 0 {
				delete(groups, pid)
			}
		})
	}
}

// KillAll sends SIGKILL to every live process group and returns how many
// it reached. Groups already gone are skipped silently. Safe for
// concurrent use; the groups stay recorded until their holders remove them.
func KillAll() int {
	mu.Lock()
	defer mu.Unlock()
	n := 0
	for pid := range groups {
		if syscall.Kill(-pid, syscall.SIGKILL) == nil {
			n++
		}
	}
	return n
}
