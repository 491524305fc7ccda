//go:build !race

package preprocess

import (
	"image"
	"testing"
)

// TestAllocationBudget fails when the hot path starts allocating: past
// the decoder, Process may allocate one small object (the row source).
// Scratch buffers come from the pool and weights from the cache.
func TestAllocationBudget(t *testing.T) {
	for _, tc := range []struct {
		name string
		img  []byte
	}{
		{"jpeg 640x480", encodeJPEG(t, photoLike(640, 480), 90)},
		{"png 224x224", encodePNG(t, photoLike(224, 224))},
		{"png gray 300x200", encodePNG(t, image.NewGray(image.Rect(0, 0, 300, 200)))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := mustNew(t, Config{})
			dst := make([]byte, p.RowBytes())
			decodeAllocs := testing.AllocsPerRun(20, func() {
				if _, err := p.decode(tc.img); err != nil {
					t.Fatal(err)
				}
			})
			total := testing.AllocsPerRun(20, func() {
				if err := p.Process(tc.img, dst); err != nil {
					t.Fatal(err)
				}
			})
			if own := total - decodeAllocs; own > 1 {
				t.Errorf("Process allocates %.0f times beyond the decoder's %.0f, budget 1", own, decodeAllocs)
			}
		})
	}
}

// TestTurboAllocationFree: with libjpeg-turbo, a JPEG costs no Go
// allocations at all in steady state (pooled handle, decode buffer,
// scratch and planar row source; libjpeg-turbo's own working memory is
// its business).
func TestTurboAllocationFree(t *testing.T) {
	if !turboJPEG {
		t.Skip("built without libjpeg-turbo")
	}
	img := encodeJPEG(t, photoLike(500, 375), 90)
	for _, tc := range []struct {
		cfg    Config
		planar bool // decoded to planes, as JPEGs above planarMinPixels are
	}{{Config{}, false}, {Config{JPEGDCTScaling: true}, false}, {Config{Resample: ResampleFloat}, false}, {Config{}, true}} {
		p := mustNew(t, tc.cfg)
		if tc.planar {
			p.planesMin = 0
		}
		dst := make([]byte, p.RowBytes())
		if n := testing.AllocsPerRun(20, func() {
			if err := p.Process(img, dst); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%+v (planar %v): Process allocates %.0f times per JPEG, want 0", tc.cfg, tc.planar, n)
		}
	}
}
