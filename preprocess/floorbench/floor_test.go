// Package floorbench measures the floor the preprocessing issue quotes,
// the standard-library route (image/jpeg, then golang.org/x/image/draw's
// BiLinear through image.Image, then crop and normalise), beside
// preprocess.Process on the same images in the same run. It is a module
// of its own so that inferd does not depend on golang.org/x/image.
//
//	cd preprocess/floorbench && go test -run '^$' -bench . -cpu 1 -count 5
package floorbench

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"math"
	"testing"

	"github.com/inferd/inferd/internal/cputime"
	"github.com/inferd/inferd/preprocess"
	"golang.org/x/image/draw"
)

// photoLike is preprocess's test image: smooth gradients with texture.
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

var (
	mean = [3]float32{0.485, 0.456, 0.406}
	std  = [3]float32{0.229, 0.224, 0.225}
)

// stdlibRow is the floor: decode, scale the shorter side to 256 with
// draw.BiLinear into an RGBA image, crop the 224x224 centre and write
// normalised float32 NCHW.
func stdlibRow(img, dst []byte) error {
	m, err := jpeg.Decode(bytes.NewReader(img))
	if err != nil {
		return err
	}
	b := m.Bounds()
	w, h := b.Dx(), b.Dy()
	ow, oh := 256*w/h, 256
	if w < h {
		ow, oh = 256, 256*h/w
	}
	r := image.NewRGBA(image.Rect(0, 0, ow, oh))
	draw.BiLinear.Scale(r, r.Rect, m, b, draw.Src, nil)
	const size = 224
	x0, y0 := (ow-size)/2, (oh-size)/2
	for y := range size {
		for x := range size {
			p := r.Pix[r.PixOffset(x0+x, y0+y):]
			for c := range 3 {
				v := (float32(p[c])/255 - mean[c]) / std[c]
				binary.LittleEndian.PutUint32(dst[4*(c*size*size+y*size+x):], math.Float32bits(v))
			}
		}
	}
	return nil
}

func BenchmarkImagesPerSecond(b *testing.B) {
	for _, sz := range []image.Point{{500, 375}, {800, 600}} {
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, photoLike(sz.X, sz.Y), &jpeg.Options{Quality: 90}); err != nil {
			b.Fatal(err)
		}
		img := buf.Bytes()
		name := fmt.Sprintf("%dx%d", sz.X, sz.Y)
		dst := make([]byte, 3*224*224*4)
		b.Run(name+"/stdlib-floor", func(b *testing.B) {
			imagesPerSecond(b, func() error { return stdlibRow(img, dst) })
		})
		for _, c := range []struct {
			name string
			cfg  preprocess.Config
		}{{"process", preprocess.Config{}}, {"process-dctscaling", preprocess.Config{JPEGDCTScaling: true}}} {
			p, err := preprocess.New(c.cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.Run(name+"/"+c.name, func(b *testing.B) {
				imagesPerSecond(b, func() error { return p.Process(img, dst) })
			})
		}
	}
}

func imagesPerSecond(b *testing.B, f func() error) {
	if err := f(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	n := 0
	cpu0 := cputime.Process()
	for b.Loop() {
		if err := f(); err != nil {
			b.Fatal(err)
		}
		n++
	}
	cpu := cputime.Process() - cpu0
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "images/s")
	if cpu > 0 {
		// Images per CPU-second: the per-core rate, much steadier than
		// wall time when other work shares the machine.
		b.ReportMetric(float64(n)/cpu.Seconds(), "images/cpu-s")
	}
}
