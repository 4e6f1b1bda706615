package dashboards_test

import (
	"debug/elf"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"github.com/stretchr/testify/require"
)

// buildContext copies the repository into dir as `docker build .` would
// send it: without what .dockerignore excludes (Docker's own matcher).
func buildContext(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Open(repoPath(".dockerignore"))
	require.NoError(t, err)
	patterns, err := ignorefile.ReadAll(f)
	f.Close()
	require.NoError(t, err)
	pm, err := patternmatcher.New(patterns)
	require.NoError(t, err)
	root, err := filepath.Abs(repo)
	require.NoError(t, err)
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		skip, err := pm.MatchesOrParentMatches(rel)
		if err != nil {
			return err
		}
		if skip {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		dst := filepath.Join(dir, filepath.FromSlash(rel))
		switch {
		case d.IsDir():
			return os.MkdirAll(dst, 0o755)
		case d.Type().IsRegular():
			return copyFile(path, dst)
		}
		return nil // symlinks and the like: not in the build
	})
	require.NoError(t, err)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, st.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// TestDockerBuildStage runs the Dockerfile's build stage without Docker:
// in a copy of the build context .dockerignore leaves, with the stage's ENV
// and ARG defaults, its `go build` RUN line (cache mounts dropped, the
// output redirected) makes a statically linked pyoco that runs.
func TestDockerBuildStage(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("compiles pyoco: not in -short")
	}
	stages := parseDockerfile(t, repoPath("Dockerfile"))
	build := stages[0]

	env := map[string]string{}
	var goBuild string
	assign := regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S*)`)
	for _, in := range build.instr {
		f := strings.Fields(in)
		switch strings.ToUpper(f[0]) {
		case "ENV", "ARG":
			for _, m := range assign.FindAllStringSubmatch(strings.TrimSpace(in[len(f[0]):]), -1) {
				env[m[1]] = strings.Trim(m[2], `"`)
			}
		case "RUN":
			if strings.Contains(in, "go build") {
				goBuild = in
			}
		}
	}
	require.Equal(t, "0", env["CGO_ENABLED"])
	require.NotEmpty(t, goBuild, "the build stage runs go build")

	cmd := strings.TrimSpace(strings.TrimPrefix(goBuild, "RUN"))
	for strings.HasPrefix(cmd, "--") { // BuildKit flags (--mount=…)
		cmd = strings.TrimSpace(cmd[strings.IndexByte(cmd, ' '):])
	}
	out := filepath.Join(t.TempDir(), "pyoco")
	require.Contains(t, cmd, "-o /out/pyoco")
	cmd = strings.Replace(cmd, "-o /out/pyoco", "-o "+out, 1)

	ctxDir := t.TempDir()
	buildContext(t, ctxDir)
	for _, f := range []string{"go.mod", "go.sum", "cmd/pyoco/main.go"} {
		require.FileExists(t, filepath.Join(ctxDir, f))
	}
	for _, f := range []string{"dashboards", "deploy", "docs", ".git"} {
		require.NoDirExists(t, filepath.Join(ctxDir, f), ".dockerignore keeps %s out", f)
	}

	sh := exec.CommandContext(t.Context(), "sh", "-c", cmd)
	sh.Dir = ctxDir
	sh.Env = os.Environ()
	for k, v := range env {
		sh.Env = append(sh.Env, k+"="+v)
	}
	sh.Env = append(sh.Env, "VERSION=v0.0.0-docker-test")
	b, err := sh.CombinedOutput()
	require.NoError(t, err, "%s\n%s", cmd, b)

	// Static: no program interpreter (dynamic loader) in the ELF headers.
	ef, err := elf.Open(out)
	require.NoError(t, err)
	defer ef.Close()
	for _, p := range ef.Progs {
		require.NotEqual(t, elf.PT_INTERP, p.Type, "the binary is statically linked")
	}
	v, err := exec.CommandContext(t.Context(), out, "version").CombinedOutput()
	require.NoError(t, err, "%s", v)
	require.Contains(t, string(v), "v0.0.0-docker-test", "the VERSION build arg reaches the binary")
}
