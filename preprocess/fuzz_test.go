package preprocess

import (
	"errors"
	"testing"
)

// FuzzProcess feeds arbitrary bytes to Process: it must never panic, and
// every error must carry a 4xx status (the bytes are the client's fault,
// never the server's). Seeds in testdata/fuzz/FuzzProcess hold tiny valid
// PNGs and JPEGs of each kind, truncated ones and a size bomb.
func FuzzProcess(f *testing.F) {
	// Small crop and pixel limit keep each run fast; the code paths are
	// the same as with the defaults.
	p, err := New(Config{Size: 8, Resize: 9, MaxPixels: 1 << 16})
	if err != nil {
		f.Fatal(err)
	}
	u, err := New(Config{Size: 5, DType: DTypeUint8, Layout: LayoutNHWC, MaxPixels: 1 << 16})
	if err != nil {
		f.Fatal(err)
	}
	// DCT scaling: libjpeg-turbo's scaled IDCTs (a JPEG whose shorter
	// side is 17 pixels or more decodes at 1/2 or less).
	s, err := New(Config{Size: 8, Resize: 9, MaxPixels: 1 << 16, JPEGDCTScaling: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, img []byte) {
		for _, p := range []*Preprocessor{p, u, s} {
			err := p.Process(img, make([]byte, p.RowBytes()))
			if err == nil {
				continue
			}
			var sc interface{ StatusCode() int }
			if !errors.As(err, &sc) {
				t.Fatalf("error without a status code: %v", err)
			}
			if c := sc.StatusCode(); c < 400 || c > 499 {
				t.Fatalf("status %d for client bytes: %v", c, err)
			}
		}
	})
}
