package preprocess

import (
	"image"
	"image/color"
	"math"
	"testing"
)

// photoLike draws smooth gradients with texture, so the encoders produce
// files the size of real photos rather than of flat fills.
func photoLike(w, h int) *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			r := 128 + 100*math.Sin(float64(x)/7)*math.Cos(float64(y)/11)
			g := 255 * float64(x) / float64(w)
			b := 255 * float64(y) / float64(h)
			n := float64((x*7919+y*104729)%37) - 18
			m.SetNRGBA(x, y, color.NRGBA{uint8(r + n), uint8(g + n/2), uint8(b - n/2), 200})
		}
	}
	return m
}

func benchProcess(b *testing.B, img []byte, cfg Config) {
	p := mustNew(b, cfg)
	dst := make([]byte, p.RowBytes())
	if err := p.Process(img, dst); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(img)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := p.Process(img, dst); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProcessJPEG640x480 is the common case: a camera-sized 4:2:0
// JPEG, downscaled to 341x256 and cropped to 224x224, float32 NCHW.
func BenchmarkProcessJPEG640x480(b *testing.B) {
	benchProcess(b, encodeJPEG(b, photoLike(640, 480), 90), Config{})
}

// BenchmarkProcessPNG224 is a 224x224 RGBA PNG like the real-model test
// images: upscaled to 256x256, cropped back to 224x224.
func BenchmarkProcessPNG224(b *testing.B) {
	benchProcess(b, encodePNG(b, photoLike(224, 224)), Config{})
}

// BenchmarkProcessJPEG640x480Parallel shows how the pools and the weight
// cache behave with every core busy, as under load.
func BenchmarkProcessJPEG640x480Parallel(b *testing.B) {
	img := encodeJPEG(b, photoLike(640, 480), 90)
	p := mustNew(b, Config{})
	b.SetBytes(int64(len(img)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		dst := make([]byte, p.RowBytes())
		for pb.Next() {
			if err := p.Process(img, dst); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkDecodeOnlyJPEG640x480 is the std decoder alone, to show what
// share of Process is decoding.
func BenchmarkDecodeOnlyJPEG640x480(b *testing.B) {
	img := encodeJPEG(b, photoLike(640, 480), 90)
	p := mustNew(b, Config{})
	b.SetBytes(int64(len(img)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.decode(img); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkResampleJPEG640x480 is Process without the decoder: colour
// conversion, resize, crop, normalisation; the part this package owns.
func BenchmarkResampleJPEG640x480(b *testing.B) {
	img := encodeJPEG(b, photoLike(640, 480), 90)
	p := mustNew(b, Config{})
	m, err := p.decode(img)
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]byte, p.RowBytes())
	b.ReportAllocs()
	for b.Loop() {
		p.processImage(m, dst)
	}
}
