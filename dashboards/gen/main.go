// Command gen writes pyoco's Grafana dashboards (package dashboards) as JSON
// files into a directory, by default the dashboards directory itself, and
// their copies elsewhere in the repository (docs/grafana_pyoco_cute.json),
// relative to -root:
//
//	cd dashboards && go run ./gen [-dir DIR] [-root DIR]
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/pyoco/pyoco/dashboards"
)

func main() {
	dir := flag.String("dir", ".", "directory to write the dashboard JSON files into")
	root := flag.String("root", "..", "repository root, for the copies (File.Copies)")
	flag.Parse()
	if err := run(*dir, *root); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(dir, root string) error {
	for _, f := range dashboards.All() {
		b, err := f.JSON()
		if err != nil {
			return err
		}
		paths := []string{filepath.Join(dir, f.Name)}
		for _, c := range f.Copies {
			paths = append(paths, filepath.Join(root, filepath.FromSlash(c)))
		}
		for _, p := range paths {
			if err := os.WriteFile(p, b, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}
