// Command kubeschemas writes the JSON schemas kubeconform needs to validate
// deploy/kubernetes offline into a directory:
//
//	cd tools/kubeconform
//	go run ./cmd/kubeschemas /tmp/schemas
//	go tool kubeconform -strict -summary \
//	  -schema-location '/tmp/schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json' ../../deploy/kubernetes/*.yaml
package main

import (
	"fmt"
	"os"

	"github.com/pyoco/pyoco/tools/kubeconform"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: kubeschemas DIR")
		os.Exit(2)
	}
	if err := os.MkdirAll(os.Args[1], 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "kubeschemas:", err)
		os.Exit(1)
	}
	if err := kubeconform.WriteSchemas(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "kubeschemas:", err)
		os.Exit(1)
	}
}
