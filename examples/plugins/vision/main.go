// Command pyoco-vision is pyoco with the vision plug-in built in:
//
//	go build -o pyoco-vision .
//	./pyoco-vision plugins list
//	./pyoco-vision run flow.yaml
//
// Every Go plug-in is one blank import; the rest is pyoco's own command line.
package main

import (
	"github.com/pyoco/pyoco/cmd/pyococmd"

	_ "github.com/pyoco/pyoco/examples/plugins/vision/vision"
)

func main() {
	pyococmd.Main()
}
