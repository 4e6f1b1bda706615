package vision_test

import (
	"context"
	"encoding/json"
	"image"
	"image/color"
	"testing"

	"github.com/pyoco/pyoco/engine"
	"github.com/pyoco/pyoco/engine/builtin"
	"github.com/pyoco/pyoco/engine/memstore"

	"github.com/pyoco/pyoco/examples/plugins/vision/vision"
)

func TestClassify(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 4, 4))
	for y := range 4 {
		for x := range 4 {
			img.Set(x, y, color.RGBA{R: 30, G: 60, B: 220, A: 255})
		}
	}
	img.Set(0, 0, color.White)
	res, err := vision.Classify(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	if res.DominantColor != "blue" || res.DominantShare != 0.938 || res.BrightnessClass != "dark" {
		t.Fatalf("got %+v", res)
	}
}

// TestFlow runs the task the way pyoco does: registered from the plug-in,
// in a flow, on the in-memory store.
func TestFlow(t *testing.T) {
	ctx := context.Background()
	reg := engine.NewRegistry()
	if err := builtin.Register(reg); err != nil {
		t.Fatal(err)
	}
	defs, err := engine.Plugin{Name: "vision", Register: vision.Register}.Tasks()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range defs {
		if err := reg.Add(d); err != nil {
			t.Fatal(err)
		}
	}
	src := "version: 1\nflow: {name: t}\ntasks:\n  c:\n    use: vision/image_classify\n    inputs: {image: ../images/sunset.png}\n"
	flow, err := engine.LoadFlow("flow.yaml", []byte(src), reg)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.New(memstore.New(), reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	run, err := eng.Submit(ctx, &engine.SubmitParams{Flow: flow})
	if err != nil {
		t.Fatal(err)
	}
	final, err := eng.Execute(ctx, &engine.ExecuteParams{RunID: run.ID})
	if err != nil {
		t.Fatal(err)
	}
	var out vision.Result
	if err := json.Unmarshal(final.Tasks["c"].Output, &out); err != nil {
		t.Fatalf("%v: %+v", err, final)
	}
	if out.Label != "medium orange image" {
		t.Fatalf("got %+v", out)
	}
}
