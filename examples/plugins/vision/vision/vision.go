// Package vision is an example Go task plug-in for pyoco. Importing it
// (usually blank: import _ ".../vision") registers the plug-in "vision",
// whose task vision/image_classify reads an image and classifies its
// dominant colour and brightness with the standard image packages.
package vision

import (
	"context"
	"fmt"
	"image"
	_ "image/gif"  // decoders for image.Decode
	_ "image/jpeg" //
	_ "image/png"  //
	"math"
	"os"

	"github.com/pyoco/pyoco/engine"
)

// Version is the plug-in's version, shown by `pyoco plugins list`.
const Version = "0.1.0"

func init() {
	engine.RegisterPlugin(engine.Plugin{Name: "vision", Version: Version, Register: Register})
}

// Register adds the plug-in's tasks to r. It is what init passes to
// engine.RegisterPlugin; tests may call it on a registry of their own.
func Register(r *engine.Registry) error {
	return r.Task("image_classify", engine.Typed("vision/image_classify", classify),
		engine.WithSummary("Classify an image (PNG, JPEG, GIF) by dominant colour and brightness."),
		engine.WithTags("image", "vision", "colour"),
		engine.WithCategory("vision"),
		engine.WithInputs(
			engine.Param{Name: "image", Type: "string", Required: true, Description: "Path of the image file."},
		),
		engine.WithOutputs(
			engine.Param{Name: "width", Type: "integer", Description: "Width in pixels."},
			engine.Param{Name: "height", Type: "integer", Description: "Height in pixels."},
			engine.Param{Name: "dominant_color", Type: "string", Description: "Most common colour name: red, orange, yellow, green, cyan, blue, purple, pink, white, gray or black."},
			engine.Param{Name: "dominant_share", Type: "number", Description: "Share of the pixels with the dominant colour, 0 to 1."},
			engine.Param{Name: "average_rgb", Type: "string", Description: "Mean colour as #rrggbb."},
			engine.Param{Name: "brightness", Type: "number", Description: "Mean luma (Rec. 601), 0 to 1."},
			engine.Param{Name: "brightness_class", Type: "string", Description: "dark (< 0.33), medium, or bright (>= 0.66)."},
			engine.Param{Name: "label", Type: "string", Description: "A short description, e.g. \"medium orange image\"."},
		),
	)
}

type classifyInputs struct {
	Image string `json:"image"`
}

// Result is the output of vision/image_classify.
type Result struct {
	Width           int     `json:"width"`
	Height          int     `json:"height"`
	DominantColor   string  `json:"dominant_color"`
	DominantShare   float64 `json:"dominant_share"`
	AverageRGB      string  `json:"average_rgb"`
	Brightness      float64 `json:"brightness"`
	BrightnessClass string  `json:"brightness_class"`
	Label           string  `json:"label"`
}

func classify(ctx context.Context, tc *engine.TaskContext, in classifyInputs) (any, error) {
	if in.Image == "" {
		return nil, &engine.InputError{Task: "vision/image_classify", Input: "image", Msg: "required input is missing"}
	}
	f, err := os.Open(in.Image)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	img, format, err := image.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", in.Image, err)
	}
	res, err := Classify(ctx, img)
	if err != nil {
		return nil, err
	}
	if tc != nil && tc.Logger != nil {
		tc.Logger.InfoContext(ctx, "classified image", "file", in.Image, "format", format, "label", res.Label)
	}
	return res, nil
}

// Classify computes the dominant colour and brightness of img. It checks
// ctx between rows, so that a huge image can be cancelled.
func Classify(ctx context.Context, img image.Image) (Result, error) {
	b := img.Bounds()
	res := Result{Width: b.Dx(), Height: b.Dy()}
	n := b.Dx() * b.Dy()
	if n == 0 {
		return res, fmt.Errorf("image is empty")
	}
	counts := make(map[string]int)
	var sr, sg, sb, luma float64
	for y := b.Min.Y; y < b.Max.Y; y++ {
		if err := ctx.Err(); err != nil {
			return res, context.Cause(ctx)
		}
		for x := b.Min.X; x < b.Max.X; x++ {
			r16, g16, b16, _ := img.At(x, y).RGBA()
			r, g, bl := float64(r16)/0xffff, float64(g16)/0xffff, float64(b16)/0xffff
			sr, sg, sb = sr+r, sg+g, sb+bl
			luma += 0.299*r + 0.587*g + 0.114*bl
			counts[colorName(r, g, bl)]++
		}
	}
	best := ""
	for name, c := range counts {
		if c > counts[best] || (c == counts[best] && name < best) {
			best = name
		}
	}
	fn := float64(n)
	res.DominantColor = best
	res.DominantShare = round(float64(counts[best])/fn, 3)
	res.AverageRGB = fmt.Sprintf("#%02x%02x%02x", int(sr/fn*255+0.5), int(sg/fn*255+0.5), int(sb/fn*255+0.5))
	res.Brightness = round(luma/fn, 3)
	switch {
	case res.Brightness < 0.33:
		res.BrightnessClass = "dark"
	case res.Brightness < 0.66:
		res.BrightnessClass = "medium"
	default:
		res.BrightnessClass = "bright"
	}
	res.Label = fmt.Sprintf("%s %s image", res.BrightnessClass, res.DominantColor)
	return res, nil
}

// colorName names the colour r, g, b (each 0 to 1) by its hue, or by its
// value when it is nearly grey.
func colorName(r, g, b float64) string {
	mx, mn := math.Max(r, math.Max(g, b)), math.Min(r, math.Min(g, b))
	if mx < 0.15 {
		return "black"
	}
	if mx == 0 || (mx-mn)/mx < 0.2 {
		switch {
		case mx > 0.85:
			return "white"
		case mx < 0.25:
			return "black"
		}
		return "gray"
	}
	var h float64
	d := mx - mn
	switch mx {
	case r:
		h = math.Mod((g-b)/d, 6)
	case g:
		h = (b-r)/d + 2
	default:
		h = (r-g)/d + 4
	}
	h *= 60
	if h < 0 {
		h += 360
	}
	switch {
	case h < 15 || h >= 345:
		return "red"
	case h < 45:
		return "orange"
	case h < 70:
		return "yellow"
	case h < 165:
		return "green"
	case h < 195:
		return "cyan"
	case h < 255:
		return "blue"
	case h < 290:
		return "purple"
	}
	return "pink"
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}
