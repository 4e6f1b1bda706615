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
