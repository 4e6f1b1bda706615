// Command gen writes pyoco's Grafana dashboards (package dashboards) as JSON
// files into a directory, by default the dashboards directory itself:
//
//	cd dashboards && go run ./gen [-dir DIR]
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
	flag.Parse()
	if err := run(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	for _, f := range dashboards.All() {
		d, err := f.Build()
		if err != nil {
			return fmt.Errorf("build %s: %w", f.Name, err)
		}
		b, err := dashboards.Marshal(d)
		if err != nil {
			return fmt.Errorf("%s: %w", f.Name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, f.Name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
