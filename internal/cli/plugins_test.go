package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// pluginTestEnv is an env whose variables are vars (with the describe
// cache off), printing into buffers.
func pluginTestEnv(vars map[string]string) (*env, *bytes.Buffer, *bytes.Buffer) {
	var stdout, stderr bytes.Buffer
	all := map[string]string{pluginCacheEnv: "off", "NO_COLOR": "1"}
	for k, v := range vars {
		all[k] = v
	}
	return &env{
		stdout: &stdout, stderr: &stderr,
		getenv:    func(k string) string { return all[k] },
		lookupEnv: func(k string) (string, bool) { v, ok := all[k]; return v, ok },
		isTTY:     func(io.Writer) bool { return false },
	}, &stdout, &stderr
}

// runCLI runs the command line in e and returns the exit code, as Main does.
func runCLI(e *env, args ...string) int {
	root := newRoot(e)
	root.SetArgs(args)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	err := root.ExecuteContext(context.Background())
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if !ee.printed && ee.msg != "" {
			_, _ = io.WriteString(e.stderr, "pyoco: "+ee.msg+"\n")
		}
		return ee.code
	}
	_, _ = io.WriteString(e.stderr, "pyoco: "+err.Error()+"\n")
	return ExitUsage
}

func writePlugin(t *testing.T, dir, name, body string) {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pyoco-plugin-"+name), []byte("#!/bin/sh\n"+body), 0o755))
}

// pluginDirs sets up two plug-in directories: the Python example "pyfun",
// a crashing plug-in, a plug-in with lint problems, and a second "pyfun"
// that the first one shadows.
func pluginDirs(t *testing.T) (dir1, dir2 string) {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed")
	}
	dir1, dir2 = t.TempDir(), t.TempDir()
	py, err := os.ReadFile("../../examples/plugins/python/pyoco-plugin-pyfun")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir1, "pyoco-plugin-pyfun"), py, 0o755))
	writePlugin(t, dir1, "crashy", "echo 'crashy: cannot import numpy' >&2; exit 3\n")
	writePlugin(t, dir2, "lazy", `echo '{"protocol": 1, "name": "lazy", "version": "0.0.1", "tasks": [{"name": "t", "inputs": [{"name": "x"}], "outputs": [{"name": "y", "type": "str"}]}]}'`+"\n")
	writePlugin(t, dir2, "pyfun", `echo '{"protocol": 1, "name": "pyfun", "version": "9", "tasks": []}'`+"\n")
	return dir1, dir2
}

func pathList(dirs ...string) string { return strings.Join(dirs, string(os.PathListSeparator)) }

func TestPluginsListJSONGolden(t *testing.T) {
	t.Parallel()
	dir1, dir2 := pluginDirs(t)
	e, stdout, stderr := pluginTestEnv(map[string]string{"PYOCO_PLUGIN_PATH": pathList(dir1, dir2)})
	require.Equal(t, ExitOK, runCLI(e, "plugins", "list", "--json"), stderr.String())
	got := strings.NewReplacer(dir1, "$DIR1", dir2, "$DIR2").Replace(stdout.String())

	golden := filepath.Join("testdata", "plugins_list.json")
	if os.Getenv("PYOCO_UPDATE_GOLDEN") == "1" {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err)
	require.Equal(t, string(want), got, "run with PYOCO_UPDATE_GOLDEN=1 to update")
	require.Empty(t, stderr.String(), "problems are in the JSON, not on stderr")
}

func TestPluginsListTable(t *testing.T) {
	t.Parallel()
	dir1, dir2 := pluginDirs(t)
	e, stdout, stderr := pluginTestEnv(map[string]string{"PYOCO_PLUGIN_PATH": pathList(dir1, dir2)})
	require.Equal(t, ExitOK, runCLI(e, "plugins", "list"), stderr.String())
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	require.Regexp(t, `^NAME\s+ORIGIN\s+VERSION\s+STATUS\s+TASKS\s+PATH$`, lines[0])
	require.Regexp(t, `^crashy\s+exec\s+-\s+error\s+-\s+`+filepath.Join(dir1, "pyoco-plugin-crashy")+`$`, lines[1])
	require.Regexp(t, `^pyfun\s+exec\s+1\.0\.0\s+ok\s+pyfun/slugify,pyfun/wordcount\s+`, lines[2])
	require.Regexp(t, `^lazy\s+exec\s+0\.0\.1\s+ok\s+lazy/t\s+`, lines[3])
	require.Regexp(t, `^pyfun\s+exec\s+-\s+warning\s+-\s+`, lines[4])
	require.Contains(t, stdout.String(), `! exec plug-in "crashy" (`+filepath.Join(dir1, "pyoco-plugin-crashy")+`): describe: exit status 3: crashy: cannot import numpy`)

	e, stdout, _ = pluginTestEnv(map[string]string{"PYOCO_PLUGIN_PATH": filepath.Join(dir1, "none")})
	require.Equal(t, ExitOK, runCLI(e, "plugins", "list"))
	require.Equal(t, "no plug-ins (exec plug-ins are searched in "+filepath.Join(dir1, "none")+")\n", stdout.String())
}

func TestPluginsLint(t *testing.T) {
	t.Parallel()
	dir1, dir2 := pluginDirs(t)
	e, stdout, stderr := pluginTestEnv(map[string]string{"PYOCO_PLUGIN_PATH": pathList(dir1, dir2)})
	require.Equal(t, ExitFailed, runCLI(e, "plugins", "lint"))
	require.Equal(t, []string{
		`exec plug-in "crashy" (` + filepath.Join(dir1, "pyoco-plugin-crashy") + `): describe: exit status 3: crashy: cannot import numpy`,
		`exec plug-in "pyfun" (` + filepath.Join(dir2, "pyoco-plugin-pyfun") + `): name clash: shadowed by exec plug-in "pyfun" (` + filepath.Join(dir1, "pyoco-plugin-pyfun") + `), not loaded`,
		`task lazy/t: missing summary`,
		`task lazy/t: input "x" has no type`,
		`task lazy/t: output "y" has unknown type "str"`,
	}, strings.Split(strings.TrimSpace(stdout.String()), "\n"))
	require.Equal(t, "pyoco: plugins lint: 5 problem(s)\n", stderr.String())

	// The Python example alone is clean.
	e, stdout, stderr = pluginTestEnv(map[string]string{"PYOCO_PLUGIN_PATH": "../../examples/plugins/python"})
	require.Equal(t, ExitOK, runCLI(e, "plugins", "lint"), stdout.String()+stderr.String())
	require.Equal(t, "ok: 1 plug-in(s), 2 task(s)\n", stdout.String())
}

func TestRunStrict(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writePlugin(t, dir, "crashy", "echo 'boom' >&2; exit 3\n")
	flow := filepath.Join(dir, "flow.yaml")
	require.NoError(t, os.WriteFile(flow, []byte("version: 1\nflow:\n  name: s\ntasks:\n  a:\n    use: noop\n"), 0o644))
	problem := `exec plug-in "crashy" (` + filepath.Join(dir, "pyoco-plugin-crashy") + `): describe: exit status 3: boom`

	e, _, stderr := pluginTestEnv(map[string]string{"PYOCO_PLUGIN_PATH": dir})
	require.Equal(t, ExitOK, runCLI(e, "run", "--plain", flow), stderr.String())
	require.Contains(t, stderr.String(), "pyoco: warning: "+problem+"\n")

	e, stdout, stderr := pluginTestEnv(map[string]string{"PYOCO_PLUGIN_PATH": dir})
	require.Equal(t, ExitUsage, runCLI(e, "run", "--strict", "--plain", flow))
	require.Equal(t, "pyoco: error: "+problem+"\npyoco: --strict: plug-in problems are fatal; see 'pyoco plugins lint'\n", stderr.String())
	require.Empty(t, stdout.String(), "the run never started")
}

func TestRunPythonExampleFlow(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed")
	}
	e, stdout, stderr := pluginTestEnv(map[string]string{"PYOCO_PLUGIN_PATH": "../../examples/plugins/python"})
	require.Equal(t, ExitOK, runCLI(e, "run", "--json", "--strict", "../../examples/plugins/python/flow.yaml"), stderr.String())
	var run struct {
		Status string
		Tasks  map[string]struct{ Output json.RawMessage }
	}
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &run), stdout.String())
	require.Equal(t, "COMPLETED", run.Status)
	require.JSONEq(t, `{"slug": "top-word-the-12-words"}`, string(run.Tasks["slug"].Output))
	require.JSONEq(t, `"slug top-word-the-12-words"`, string(run.Tasks["report"].Output))
}

func TestTasksListShowsPluginTasks(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed")
	}
	e, stdout, stderr := pluginTestEnv(map[string]string{"PYOCO_PLUGIN_PATH": "../../examples/plugins/python"})
	require.Equal(t, ExitOK, runCLI(e, "tasks", "list", "--json"), stderr.String())
	var doc struct{ Tasks []taskDoc }
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &doc))
	byName := map[string]taskDoc{}
	for _, d := range doc.Tasks {
		byName[d.Name] = d
	}
	require.Equal(t, "pyfun", byName["pyfun/wordcount"].Plugin)
	require.Equal(t, "text", byName["pyfun/slugify"].Category)
	require.Equal(t, "builtin", byName["shell"].Plugin)

	e, stdout, _ = pluginTestEnv(map[string]string{"PYOCO_PLUGIN_PATH": "../../examples/plugins/python"})
	require.Equal(t, ExitOK, runCLI(e, "tasks", "list"))
	require.Regexp(t, `(?m)^pyfun/wordcount\s+pyfun\s+text\s+text,statistics\s+Count the words`, stdout.String())
}
