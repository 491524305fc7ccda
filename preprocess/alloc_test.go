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
