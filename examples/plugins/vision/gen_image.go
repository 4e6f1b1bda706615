//go:build ignore

// gen_image writes images/sunset.png, the sample image of the example:
// an orange sky fading to red over a dark blue sea.
//
//	go run gen_image.go
package main

import (
	"image"
	"image/color"
	"image/png"
	"log"
	"os"
)

func main() {
	const w, h = 48, 32
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			var c color.NRGBA
			if y < 24 {
				// Sky: orange, slightly redder towards the horizon.
				c = color.NRGBA{R: 255, G: uint8(150 - 2*y), B: uint8(20 + y/2), A: 255}
			} else {
				c = color.NRGBA{R: 20, G: 30, B: uint8(90 + x/4), A: 255}
			}
			img.SetNRGBA(x, y, c)
		}
	}
	f, err := os.Create("images/sunset.png")
	if err != nil {
		log.Fatal(err)
	}
	if err := png.Encode(f, img); err != nil {
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
}
