//go:build !linux

package redistest

import "os/exec"

// setProcAttr does nothing outside Linux: [Main] stops the servers.
func setProcAttr(*exec.Cmd) {}
