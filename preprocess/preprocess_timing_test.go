package preprocess

import (
	"fmt"
	"image"
	"image/color"
	"math"
	"testing"

	"github.com/inferd/inferd/internal/cputime"
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
// share of Process is decoding on the Go path (PNGs, CMYK JPEGs, and
// every JPEG under -tags nojpegturbo).
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

// Images per second per core for whole Process calls on camera-like JPEGs
// (photoLike, quality 90, 4:2:0 as the std encoder writes), float32 NCHW
// 224 from Resize 256: run with -cpu 1 so that one core does the work.
// Sub-benchmarks, side by side:
//
//   - go: image/jpeg, then the package's resampler (the path before
//     libjpeg-turbo, and the one -tags nojpegturbo builds);
//   - turbo: libjpeg-turbo at full scale (the default: rows identical to
//     PIL's);
//   - turbo-scaled-any-Mof8: libjpeg-turbo with DCT scaling by M/8, the
//     smallest of all factors 1/8..7/8 that keeps the shorter side >=
//     Resize; turbo-scaled-simd-Mof8: Config.JPEGDCTScaling, the same
//     among 2/8 and 4/8 only (SIMD IDCTs; see New). At 500x375 "any"
//     picks 6/8, plain C and slower than full scale; "simd" has no factor
//     that fits and decodes at full scale.
//
// images/cpu-s (images per CPU-second of the process) is the per-core
// figure to compare: it hardly moves when other work shares the machine,
// where images/s (wall time) does.
//
// The floor the issue quotes, image/jpeg + x/image/draw.BiLinear through
// image.Image, is in floorbench/ (its own module, so that this one does
// not depend on golang.org/x/image).
func BenchmarkImagesPerSecond(b *testing.B) {
	for _, sz := range []image.Point{{500, 375}, {800, 600}} {
		img := encodeJPEG(b, photoLike(sz.X, sz.Y), 90)
		name := fmt.Sprintf("%dx%d", sz.X, sz.Y)
		b.Run(name+"/go", func(b *testing.B) {
			p := mustNew(b, Config{})
			dst := make([]byte, p.RowBytes())
			imagesPerSecond(b, func() error {
				m, err := p.decode(img)
				if err != nil {
					return err
				}
				p.processImage(m, dst)
				return nil
			})
		})
		if !turboJPEG {
			continue
		}
		b.Run(name+"/turbo", func(b *testing.B) {
			p := mustNew(b, Config{})
			dst := make([]byte, p.RowBytes())
			imagesPerSecond(b, func() error { return p.Process(img, dst) })
		})
		b.Run(name+"/turbo-resample-float", func(b *testing.B) {
			p := mustNew(b, Config{Resample: ResampleFloat})
			dst := make([]byte, p.RowBytes())
			imagesPerSecond(b, func() error { return p.Process(img, dst) })
		})
		for _, variant := range []string{"any", "simd"} {
			p := mustNew(b, Config{JPEGDCTScaling: true}) // 2/8, 4/8
			if variant == "any" {
				for m := 1; m < 8; m++ {
					p.jpegScales[m] = true
				}
			}
			m := p.jpegScale(sz.X, sz.Y)
			b.Run(fmt.Sprintf("%s/turbo-scaled-%s-%dof8", name, variant, m), func(b *testing.B) {
				dst := make([]byte, p.RowBytes())
				imagesPerSecond(b, func() error { return p.Process(img, dst) })
			})
		}
	}
}

// imagesPerSecond runs f in a benchmark loop and reports images/s (wall
// time) and images/cpu-s (CPU time of the whole process, GC included).
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

// BenchmarkDecodeOnlyTurbo is libjpeg-turbo's share of Process at full
// scale (BenchmarkDecodeOnlyJPEG640x480 is image/jpeg's).
func BenchmarkDecodeOnlyTurbo(b *testing.B) {
	if !turboJPEG {
		b.Skip("built without libjpeg-turbo")
	}
	for _, sz := range []image.Point{{500, 375}, {640, 480}, {800, 600}} {
		img := encodeJPEG(b, photoLike(sz.X, sz.Y), 90)
		b.Run(fmt.Sprintf("%dx%d", sz.X, sz.Y), func(b *testing.B) {
			d := getTJ()
			defer putTJ(d)
			buf := make([]byte, 3*sz.X*sz.Y)
			imagesPerSecond(b, func() error {
				if !decodeTurbo(d, img, buf, sz.X, sz.Y, 8) {
					return fmt.Errorf("libjpeg-turbo refused the image")
				}
				return nil
			})
		})
	}
}

// BenchmarkPlanarDecode is the choice behind planarMinPixels: decoding a
// 4:2:0 JPEG to planes halves the decode buffer but moves chroma
// upsampling and colour conversion from libjpeg-turbo's SIMD code to the
// row source, which costs CPU (on an AMD EPYC, -cpu 1, images/cpu-s:
// 500x375 ~510 packed vs ~430 planar, 2000x1500 ~46 vs ~35). So only
// images too large for the pooled buffer, which would allocate 3 bytes a
// pixel afresh, take planes.
func BenchmarkPlanarDecode(b *testing.B) {
	if !turboJPEG {
		b.Skip("built without libjpeg-turbo")
	}
	for _, sz := range []image.Point{{500, 375}, {2000, 1500}} {
		img := encodeJPEG(b, photoLike(sz.X, sz.Y), 90)
		for _, planes := range []bool{false, true} {
			b.Run(fmt.Sprintf("%dx%d/planes=%v", sz.X, sz.Y, planes), func(b *testing.B) {
				p := mustNew(b, Config{})
				p.planesMin = math.MaxInt64
				if planes {
					p.planesMin = 0
				}
				dst := make([]byte, p.RowBytes())
				imagesPerSecond(b, func() error { return p.Process(img, dst) })
			})
		}
	}
}

// BenchmarkProcessMemory is the price of the bound a server asks for
// before every Process: header parsing only (for JPEGs a walk over the
// markers of the whole file, for PNGs over the chunk headers).
func BenchmarkProcessMemory(b *testing.B) {
	m := photoLike(2000, 1500)
	for _, tc := range []struct {
		name string
		img  []byte
	}{
		{"jpeg-2000x1500", encodeJPEG(b, m, 90)},
		{"png-2000x1500", encodePNG(b, m)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			p := mustNew(b, Config{})
			b.SetBytes(int64(len(tc.img)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.ProcessMemory(tc.img); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
