package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestMain lets the test binary act as the pyoco command inside scripts:
// `exec pyoco ...` runs main's run() in a child process, so the scripts
// test the real binary's flags, output and exit codes.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"pyoco": func() { os.Exit(run()) },
	})
}

// TestScripts runs the black-box CLI scripts in testdata/script
// (txtar files; see github.com/rogpeppe/go-internal/testscript).
func TestScripts(t *testing.T) {
	t.Parallel()
	examples, err := filepath.Abs("../../examples")
	if err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	// Scripts that build a custom pyoco (plugin_build.txtar) use this
	// checkout and the machine's Go caches, offline.
	goEnv := map[string]string{}
	if out, err := exec.Command("go", "env", "GOMODCACHE", "GOCACHE").Output(); err == nil {
		if v := strings.Fields(string(out)); len(v) == 2 {
			goEnv["GOMODCACHE"], goEnv["GOCACHE"] = v[0], v[1]
		}
	}
	// The scripts run offline, but `go mod tidy` there reads the go.mod of
	// every module version in the graph (some are never downloaded to
	// build this checkout): fetch those small files here, once, through
	// the machine's GOPROXY, so a fresh machine's cache has them.
	if !testing.Short() {
		warm := exec.Command("go", "mod", "tidy", "-diff")
		warm.Dir = root
		if out, err := warm.CombinedOutput(); err != nil && !strings.HasPrefix(string(out), "diff ") {
			t.Logf("go mod tidy -diff in %s (fetching the module graph for plugin_build): %v\n%s", root, err, out)
		}
	}
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			env.Setenv("EXAMPLES", examples)
			env.Setenv("NO_COLOR", "")
			env.Setenv("PYOCO_PLUGIN_PATH", filepath.Join(env.WorkDir, "no-plugins"))
			env.Setenv("HOME", env.WorkDir)
			env.Setenv("PYOCO_ROOT", root)
			for k, v := range goEnv {
				env.Setenv(k, v)
			}
			env.Setenv("GOPROXY", "off")
			env.Setenv("GOTOOLCHAIN", "local")
			env.Setenv("GOFLAGS", "-buildvcs=false")
			return nil
		},
		RequireExplicitExec: true,
		UpdateScripts:       os.Getenv("PYOCO_UPDATE_SCRIPTS") == "1",
	})
}
