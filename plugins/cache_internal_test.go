package plugins

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pyoco/pyoco/engine"
)

// TestDescribeDiskCache forgets the in-memory cache of one binary, as a
// new process would, and checks that the disk cache answers instead.
func TestDescribeDiskCache(t *testing.T) {
	t.Parallel()
	dir, cache := t.TempDir(), t.TempDir()
	path := filepath.Join(dir, "pyoco-plugin-disk")
	require.NoError(t, os.WriteFile(path, []byte(`#!/bin/sh
echo x >> "$(dirname "$0")/count"
echo '{"protocol": 1, "name": "disk", "version": "3", "tasks": [{"name": "a", "summary": "A"}]}'
`), 0o755))
	cfg := &Config{Path: []string{dir}, GoPlugins: []engine.Plugin{}, CacheDir: cache}
	loadOnce := func() *Report {
		rep, err := Load(context.Background(), engine.NewRegistry(), cfg)
		require.NoError(t, err)
		require.Equal(t, []string{"disk/a"}, rep.Plugins[0].Tasks)
		require.Equal(t, "3", rep.Plugins[0].Version)
		return rep
	}
	forget := func() {
		fi, err := os.Stat(path)
		require.NoError(t, err)
		memCache.Delete(cacheKey{path: path, mtime: fi.ModTime().UnixNano(), size: fi.Size()})
	}
	loadOnce()
	files, err := filepath.Glob(filepath.Join(cache, "describe-*.json"))
	require.NoError(t, err)
	require.Len(t, files, 1)
	forget()
	loadOnce()
	raw, err := os.ReadFile(filepath.Join(dir, "count"))
	require.NoError(t, err)
	require.Equal(t, 1, strings.Count(string(raw), "x"), "the second process reads the disk cache")

	// A corrupt cache file is ignored and rewritten.
	require.NoError(t, os.WriteFile(files[0], []byte("{"), 0o644))
	forget()
	loadOnce()
	raw, err = os.ReadFile(filepath.Join(dir, "count"))
	require.NoError(t, err)
	require.Equal(t, 2, strings.Count(string(raw), "x"))
}
