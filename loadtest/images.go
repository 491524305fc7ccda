package loadtest

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	_ "image/png" // -images may name PNGs
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// generatedImages is how many distinct images are generated when no image
// files are given; generatedSide is their side in pixels (a resize and a
// centre crop to 224, like a photo).
const (
	generatedImages = 8
	generatedSide   = 256
)

// loadImages reads path (a file, or the .jpg/.jpeg/.png files of a
// directory), or generates JPEGs when path is empty.
func loadImages(path string) ([][]byte, error) {
	if path == "" {
		return generateImages(generatedImages, generatedSide)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	files := []string{path}
	if fi.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, fmt.Errorf("images: %w", err)
		}
		files = files[:0]
		for _, e := range entries {
			switch strings.ToLower(filepath.Ext(e.Name())) {
			case ".jpg", ".jpeg", ".png":
				files = append(files, filepath.Join(path, e.Name()))
			}
		}
		slices.Sort(files)
		if len(files) == 0 {
			return nil, fmt.Errorf("images: no .jpg, .jpeg or .png files in %s", path)
		}
	}
	var out [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("images: %w", err)
		}
		if _, _, err := image.DecodeConfig(bytes.NewReader(b)); err != nil {
			return nil, fmt.Errorf("images: %s is not a jpeg or png: %w", f, err)
		}
		out = append(out, b)
	}
	return out, nil
}

// generateImages makes n distinct side x side JPEGs: gradients with a
// pseudo-random texture, so each compresses like a photo, not a flat fill.
func generateImages(n, side int) ([][]byte, error) {
	out := make([][]byte, n)
	seed := uint32(1)
	for i := range out {
		img := image.NewRGBA(image.Rect(0, 0, side, side))
		for y := range side {
			for x := range side {
				seed = seed*1664525 + 1013904223
				noise := uint8(seed >> 27)
				img.SetRGBA(x, y, color.RGBA{
					R: uint8(x*255/side) ^ uint8(i*31) + noise,
					G: uint8(y*255/side) + noise,
					B: uint8((x+y)*127/side) + uint8(i*17),
					A: 255,
				})
			}
		}
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90}); err != nil {
			return nil, fmt.Errorf("generating image: %w", err)
		}
		out[i] = buf.Bytes()
	}
	return out, nil
}
