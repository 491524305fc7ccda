package preprocess

import (
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

// TestJPEGScalePick checks which DCT scaling factor a JPEG gets.
func TestJPEGScalePick(t *testing.T) {
	off := mustNew(t, Config{})
	on := mustNew(t, Config{JPEGDCTScaling: true})
	for _, tc := range []struct{ w, h, off, on int }{
		{500, 375, 8, 8}, // 4/8 would give 188 < 256
		{375, 500, 8, 8},
		{800, 600, 8, 4},  // 300
		{640, 480, 8, 8},  // 240 < 256
		{1024, 512, 8, 4}, // 256: exactly Resize is enough
		{1024, 511, 8, 4}, // ceil(511/2) = 256
		{1024, 510, 8, 8},
		{4000, 3000, 8, 2}, // 750: 1/8 is not used
		{200, 100, 8, 8},   // upscaled anyway
	} {
		if got := off.jpegScale(tc.w, tc.h); got != tc.off {
			t.Errorf("%dx%d without scaling: m = %d, want %d", tc.w, tc.h, got, tc.off)
		}
		if got := on.jpegScale(tc.w, tc.h); got != tc.on {
			t.Errorf("%dx%d with JPEGDCTScaling: m = %d, want %d", tc.w, tc.h, got, tc.on)
		}
	}
}

// TestJPEGDCTScaling measures what DCT scaling costs in accuracy: rows
// from scaled decoding against full-scale rows, which are PIL's
// (TestMatchesPIL), in 0..255 levels of the 224x224 crop.
func TestJPEGDCTScaling(t *testing.T) {
	if !turboJPEG {
		t.Skip("built without libjpeg-turbo: no DCT scaling")
	}
	full := mustNew(t, Config{DType: DTypeUint8})
	scaled := mustNew(t, Config{DType: DTypeUint8, JPEGDCTScaling: true})
	imgs := map[string][]byte{}
	for _, sz := range []image.Point{{800, 600}, {600, 800}, {1024, 768}, {1600, 1200}, {2800, 2100}} {
		imgs[fmt.Sprintf("photoLike %dx%d", sz.X, sz.Y)] = encodeJPEG(t, photoLike(sz.X, sz.Y), 90)
	}
	// Sharp edges: a real photo (the zebra, stripes) enlarged 3x by pixel
	// replication, so that it is large enough to be scaled.
	if dir := os.Getenv("INFERD_REALMODEL_DIR"); dir != "" {
		f, err := os.Open(filepath.Join(dir, "images", "glow_zebra_340.png"))
		if err != nil {
			t.Fatal(err)
		}
		m, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		b := m.Bounds()
		big := image.NewRGBA(image.Rect(0, 0, 3*b.Dx(), 3*b.Dy()))
		for y := range big.Rect.Dy() {
			for x := range big.Rect.Dx() {
				big.Set(x, y, m.At(b.Min.X+x/3, b.Min.Y+y/3))
			}
		}
		imgs["zebra 3x 672x672"] = encodeJPEG(t, big, 90)
	}
	for name, img := range imgs {
		a, b := make([]byte, full.RowBytes()), make([]byte, scaled.RowBytes())
		if err := full.Process(img, a); err != nil {
			t.Fatal(err)
		}
		if err := scaled.Process(img, b); err != nil {
			t.Fatal(err)
		}
		maxDiff, mean := diffStats(a, b)
		t.Logf("%s: scaled vs full: max |diff| %d, mean %.3f levels", name, maxDiff, mean)
		if mean > 3 {
			t.Errorf("%s: DCT scaling moves rows by %.2f levels on average, want <= 3", name, mean)
		}
	}

	// Against PIL itself: the one PIL reference large enough to be scaled
	// at Resize 40 (300x200, decoded at 2/8, 75x50).
	p := mustNew(t, Config{Size: 32, Resize: 40, DType: DTypeUint8, Layout: LayoutNHWC, JPEGDCTScaling: true})
	img, err := os.ReadFile("testdata/pil/jpeg420_big.jpg")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/pil/jpeg420_big.rgb")
	if err != nil {
		t.Fatal(err)
	}
	if m := p.jpegScale(300, 200); m != 2 {
		t.Fatalf("jpeg420_big: m = %d, want 2", m)
	}
	got := make([]byte, p.RowBytes())
	if err := p.Process(img, got); err != nil {
		t.Fatal(err)
	}
	maxDiff, mean := diffStats(got, want)
	t.Logf("jpeg420_big at 2/8 vs PIL: max |diff| %d, mean %.3f levels", maxDiff, mean)
	if mean > 3 {
		t.Errorf("jpeg420_big: DCT scaling moves rows by %.2f levels on average, want <= 3", mean)
	}
}

func diffStats(a, b []byte) (maxDiff int, mean float64) {
	sum := 0
	for i := range a {
		d := int(a[i]) - int(b[i])
		if d < 0 {
			d = -d
		}
		sum += d
		maxDiff = max(maxDiff, d)
	}
	return maxDiff, float64(sum) / float64(len(a))
}
