// Package procgroup keeps the process groups that tasks started and are
// still running in this process (shell tasks, exec plug-ins), so that a
// second Ctrl+C can kill all of them, children that ignore SIGTERM
// included, before pyoco exits.
//
// It imports only the standard library; engine must not import it (the
// task implementations and the command line do).
package procgroup
