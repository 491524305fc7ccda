package preprocess

import (
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"math"
	"testing"
)

// ResampleFloat computes the same filter as ResamplePIL without its two
// roundings to uint8: on the 0..255 scale each value stays within one
// level of PIL's (half a level per rounding), in both layouts, upscaling
// and downscaling, and it is not simply PIL's rows again.
func TestResampleFloatWithinOneLevelOfPIL(t *testing.T) {
	for _, sz := range []image.Point{{224, 224}, {120, 90}, {500, 375}, {801, 603}, {64, 300}} {
		img := encodePNG(t, photoLike(sz.X, sz.Y))
		for _, layout := range []string{LayoutNCHW, LayoutNHWC} {
			t.Run(fmt.Sprintf("%dx%d/%s", sz.X, sz.Y, layout), func(t *testing.T) {
				pil := mustNew(t, Config{Layout: layout})
				flt := mustNew(t, Config{Layout: layout, Resample: ResampleFloat})
				a, b := make([]byte, pil.RowBytes()), make([]byte, flt.RowBytes())
				if err := pil.Process(img, a); err != nil {
					t.Fatal(err)
				}
				if err := flt.Process(img, b); err != nil {
					t.Fatal(err)
				}
				size := pil.Config().Size
				var worst, sum float64
				differ := 0
				for i := 0; i < len(a); i += 4 {
					c := (i / 4) / (size * size) // NCHW channel
					if layout == LayoutNHWC {
						c = (i / 4) % 3
					}
					std := float64(pil.Config().Std[c])
					va := float64(math.Float32frombits(binary.LittleEndian.Uint32(a[i:])))
					vb := float64(math.Float32frombits(binary.LittleEndian.Uint32(b[i:])))
					d := math.Abs(va-vb) * std * 255 // levels of 255
					worst = max(worst, d)
					sum += d
					if d > 1e-3 {
						differ++
					}
				}
				n := float64(len(a) / 4)
				if worst > 1.001 {
					t.Errorf("worst difference %.4f levels, want <= 1", worst)
				}
				if differ < int(n/10) {
					t.Errorf("only %d of %.0f values differ from PIL's: the float path is not in use", differ, n)
				}
				t.Logf("mean %.3f, worst %.3f levels; %d of %.0f differ", sum/n, worst, differ, n)
			})
		}
	}
}

// A uniform image comes out as exactly its normalised colour: the float
// taps of every output pixel sum to one.
func TestResampleFloatUniform(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 333, 250))
	for y := range 250 {
		for x := range 333 {
			img.Set(x, y, color.RGBA{200, 100, 50, 255})
		}
	}
	p := mustNew(t, Config{Resample: ResampleFloat})
	dst := make([]byte, p.RowBytes())
	if err := p.Process(encodePNG(t, img), dst); err != nil {
		t.Fatal(err)
	}
	cfg := p.Config()
	plane := cfg.Size * cfg.Size
	for c, v := range []float32{200, 100, 50} {
		want := (v/255 - cfg.Mean[c]) / cfg.Std[c]
		for i := range plane {
			got := math.Float32frombits(binary.LittleEndian.Uint32(dst[4*(c*plane+i):]))
			if math.Abs(float64(got-want)) > 1e-5 {
				t.Fatalf("channel %d pixel %d: %v, want %v", c, i, got, want)
			}
		}
	}
}

func TestResampleConfig(t *testing.T) {
	if _, err := New(Config{Resample: ResampleFloat, DType: DTypeUint8, Layout: LayoutNHWC}); !errors.Is(err, ErrConfig) {
		t.Errorf("float resample with uint8 rows: %v", err)
	}
	if _, err := New(Config{Resample: "bicubic"}); !errors.Is(err, ErrConfig) {
		t.Errorf("resample bicubic: %v", err)
	}
	if p := mustNew(t, Config{}); p.Config().Resample != ResamplePIL {
		t.Errorf("default resample %q, want %q", p.Config().Resample, ResamplePIL)
	}
}
