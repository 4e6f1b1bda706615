package plugins_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/memstore"
)

// pythonExample is the directory of the Python exec plug-in example.
func pythonExample(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed")
	}
	dir, err := filepath.Abs("../examples/plugins/python")
	require.NoError(t, err)
	return dir
}

// TestPythonPluginFlow runs the Python example in a flow: wordcount reads
// its text from a FIFO that this test writes only after the plug-in's
// "reading" line is in the run's logs, which proves the plug-in's stderr
// is streamed while it runs; slugify then uses wordcount's output.
func TestPythonPluginFlow(t *testing.T) {
	t.Parallel()
	plugDir := pythonExample(t)
	reg := newRegistry(t)
	rep := load(t, reg, testConfig(plugDir))
	require.Len(t, rep.Plugins, 1)
	require.True(t, rep.Plugins[0].OK(), "%+v", rep.Plugins[0])
	require.Equal(t, []string{"pyfun/slugify", "pyfun/wordcount"}, rep.Plugins[0].Tasks)
	require.Equal(t, "1.0.0", rep.Plugins[0].Version)

	fifo := filepath.Join(t.TempDir(), "text.fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	src := `version: 1
flow:
  name: pyfun_test
  graph: |
    count >> slug
tasks:
  count:
    use: pyfun/wordcount
    timeout: 30s
    inputs:
      path: $ctx.params.path
      top: 2
  slug:
    use: pyfun/slugify
    inputs:
      text: "Top: ${node.count.output.top_word}, ${node.count.output.words} words"
`
	flow, err := engine.LoadFlow("flow.yaml", []byte(src), reg)
	require.NoError(t, err)
	store := memstore.New()
	eng, err := engine.New(store, reg, nil)
	require.NoError(t, err)
	ctx := context.Background()
	run, err := eng.Submit(ctx, &engine.SubmitParams{Flow: flow, Params: map[string]any{"path": fifo}})
	require.NoError(t, err)

	type result struct {
		run *engine.Run
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := eng.Execute(ctx, &engine.ExecuteParams{RunID: run.ID})
		done <- result{r, err}
	}()

	// Wait for the plug-in to say it is reading: it is then blocked opening
	// the FIFO, so the line can only have come while it runs.
	want := "pyfun: reading " + fifo
	deadline := time.Now().Add(waitTimeout)
	for {
		entries, err := store.LogList(ctx, &engine.LogListParams{RunID: run.ID, Task: "count"})
		require.NoError(t, err)
		if slicesContain(entries, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line %q while the plug-in runs; logs: %+v", want, entries)
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case r := <-done:
		t.Fatalf("the run ended before the FIFO was written: %+v %v", r.run, r.err)
	default:
	}
	f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString("Pyoco runs flows.\nFlows run tasks; tasks run plug-ins: flows, flows!\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())

	var r result
	select {
	case r = <-done:
	case <-time.After(waitTimeout):
		t.Fatal("the run did not finish")
	}
	require.NoError(t, r.err)
	require.Equal(t, engine.RunCompleted, r.run.Status, "%+v", r.run)

	var count map[string]any
	require.NoError(t, json.Unmarshal(r.run.Tasks["count"].Output, &count))
	require.Equal(t, map[string]any{
		"words": 12.0, "unique": 7.0, "lines": 2.0, "chars": 69.0, "top_word": "flows",
		"top": []any{map[string]any{"word": "flows", "count": 4.0}, map[string]any{"word": "run", "count": 2.0}},
	}, count)
	var slug map[string]any
	require.NoError(t, json.Unmarshal(r.run.Tasks["slug"].Output, &slug))
	require.Equal(t, map[string]any{"slug": "top-flows-12-words"}, slug)

	entries, err := store.LogList(ctx, &engine.LogListParams{RunID: run.ID})
	require.NoError(t, err)
	for _, e := range entries {
		if strings.HasPrefix(e.Text, "pyfun: ") {
			require.Equal(t, engine.StreamStderr, e.Stream)
		}
	}
	require.True(t, slicesContain(entries, "pyfun: counted 12 words, 7 distinct"))
	require.True(t, slicesContain(entries, "pyfun: slugified 20 characters into 'top-flows-12-words'"))
}

func slicesContain(entries []engine.LogEntry, text string) bool {
	for _, e := range entries {
		if e.Text == text {
			return true
		}
	}
	return false
}

// TestPythonPluginErrors checks that a task error of the Python plug-in
// fails the attempt with its message.
func TestPythonPluginErrors(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	load(t, reg, testConfig(pythonExample(t)))
	def, ok := reg.Lookup("pyfun/wordcount")
	require.True(t, ok)
	_, err := def.Run(context.Background(), taskContext(newLineCollector()), map[string]any{"text": "a", "path": "/x"})
	require.EqualError(t, err, `give exactly one of the inputs "text" and "path"`)
	def, _ = reg.Lookup("pyfun/slugify")
	out, err := def.Run(context.Background(), taskContext(newLineCollector()), map[string]any{"text": "Crème Brûlée for 2!", "separator": "_"})
	require.NoError(t, err)
	require.Equal(t, map[string]any{"slug": "creme_brulee_for_2"}, out)
}

// TestGoExampleBuilds builds examples/plugins/vision (its own module, with
// the vision plug-in blank-imported into pyoco) in a copy whose replace
// points at this tree, then runs its flow with the binary. Everything comes
// from the module cache: no network.
func TestGoExampleBuilds(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds a pyoco binary")
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	src := filepath.Join(root, "examples", "plugins", "vision")
	work := t.TempDir()
	require.NoError(t, os.CopyFS(work, os.DirFS(src)))
	// Point the replace at this tree and offer the main module's sums, so
	// that a dependency added to pyoco since the example's go.sum was
	// written resolves from the module cache too.
	gomod, err := os.ReadFile(filepath.Join(work, "go.mod"))
	require.NoError(t, err)
	gomod = bytes.Replace(gomod, []byte("=> ../../.."), []byte("=> "+root), 1)
	require.NoError(t, os.WriteFile(filepath.Join(work, "go.mod"), gomod, 0o644))
	sums, err := os.ReadFile(filepath.Join(root, "go.sum"))
	require.NoError(t, err)
	own, _ := os.ReadFile(filepath.Join(work, "go.sum"))
	require.NoError(t, os.WriteFile(filepath.Join(work, "go.sum"), append(own, sums...), 0o644))

	bin := filepath.Join(t.TempDir(), "pyoco-vision")
	env := append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off", "GOTOOLCHAIN=local")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// Raise the example's requirements to the main module's, so its module
	// graph is the one already in the cache even when pyoco gained a
	// dependency after the example's go.mod was last tidied.
	modJSON, err := exec.CommandContext(ctx, goBin, "mod", "edit", "-json", filepath.Join(root, "go.mod")).Output()
	require.NoError(t, err)
	var mainMod struct {
		Require []struct{ Path, Version string }
	}
	require.NoError(t, json.Unmarshal(modJSON, &mainMod))
	edit := []string{"mod", "edit"}
	for _, r := range mainMod.Require {
		edit = append(edit, "-require="+r.Path+"@"+r.Version)
	}
	cmd := exec.CommandContext(ctx, goBin, edit...)
	cmd.Dir, cmd.Env = work, env
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go mod edit: %s", out)
	build := exec.CommandContext(ctx, goBin, "build", "-o", bin, ".")
	build.Dir, build.Env = work, env
	out, err = build.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	test := exec.CommandContext(ctx, goBin, "test", "./...")
	test.Dir, test.Env = work, env
	out, err = test.CombinedOutput()
	require.NoError(t, err, "go test in the example module: %s", out)

	runEnv := append(os.Environ(), "PYOCO_PLUGIN_PATH="+filepath.Join(work, "no-plugins"), "PYOCO_PLUGIN_CACHE=off", "NO_COLOR=1")
	list := exec.CommandContext(ctx, bin, "plugins", "list", "--json")
	list.Dir, list.Env = work, runEnv
	out, err = list.Output()
	require.NoError(t, err)
	var rep struct {
		Plugins []struct {
			Name, Origin, Version string
			Tasks                 []string
		}
	}
	require.NoError(t, json.Unmarshal(out, &rep), "%s", out)
	require.Len(t, rep.Plugins, 1)
	require.Equal(t, "vision", rep.Plugins[0].Name)
	require.Equal(t, "go", rep.Plugins[0].Origin)
	require.Equal(t, "0.1.0", rep.Plugins[0].Version)
	require.Equal(t, []string{"vision/image_classify"}, rep.Plugins[0].Tasks)

	run := exec.CommandContext(ctx, bin, "run", "--json", "flow.yaml")
	run.Dir, run.Env = work, runEnv
	var stderr bytes.Buffer
	run.Stderr = &stderr
	out, err = run.Output()
	require.NoError(t, err, "pyoco-vision run: %s", stderr.String())
	var doc struct {
		Status string
		Tasks  map[string]struct {
			Status string
			Output json.RawMessage
		}
	}
	require.NoError(t, json.Unmarshal(out, &doc), "%s", out)
	require.Equal(t, "COMPLETED", doc.Status)
	var classify map[string]any
	require.NoError(t, json.Unmarshal(doc.Tasks["classify"].Output, &classify))
	require.Equal(t, "orange", classify["dominant_color"])
	require.Equal(t, 0.75, classify["dominant_share"])
	require.Equal(t, "medium", classify["brightness_class"])
	require.Equal(t, 48.0, classify["width"])
	require.Equal(t, `"medium orange image: orange covers 0.75 of 48x32 pixels"`, string(doc.Tasks["report"].Output))
}
