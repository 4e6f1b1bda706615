package cli

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Version is the release, set at build time with
// -ldflags "-X github.com/pyoco/pyoco/internal/cli.Version=v0.6.0".
var Version = "dev"

func versionInfo() map[string]string {
	info := map[string]string{"version": Version, "go": runtime.Version(), "platform": runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info["version"] = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				info["commit"] = s.Value
			}
		}
	}
	return info
}

func newVersionCmd(e *env) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "version",
		Short: "Print the version of pyoco",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(c *cobra.Command, args []string) error {
			info := versionInfo()
			if asJSON {
				return json.NewEncoder(e.stdout).Encode(info)
			}
			line := fmt.Sprintf("pyoco %s (%s, %s)", info["version"], info["go"], info["platform"])
			if info["commit"] != "" {
				line += " commit " + info["commit"]
			}
			fmt.Fprintln(e.stdout, line)
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}
