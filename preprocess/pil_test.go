package preprocess

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMatchesPIL compares Process against rows PIL made from the same
// files (testdata/pil/gen.py: torchvision's Resize + CenterCrop on PIL
// 9.4 with libjpeg-turbo 2.1). PNGs must match bit for bit: decoding is
// lossless and the resize reproduces Pillow's fixed-point arithmetic.
// JPEGs decoded with libjpeg-turbo (the default build) must match bit
// for bit too; with the Go decoder (-tags nojpegturbo, and CMYK) they
// differ only where Go's IDCT rounds differently from libjpeg's.
func TestMatchesPIL(t *testing.T) {
	p, err := New(Config{Size: 32, Resize: 40, DType: DTypeUint8, Layout: LayoutNHWC})
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("testdata/pil/*.rgb")
	if err != nil || len(files) == 0 {
		t.Fatalf("no reference rows in testdata/pil: %v", err)
	}
	for _, ref := range files {
		name := strings.TrimSuffix(filepath.Base(ref), ".rgb")
		t.Run(name, func(t *testing.T) {
			want, err := os.ReadFile(ref)
			if err != nil {
				t.Fatal(err)
			}
			src, isJPEG := "testdata/pil/"+name+".png", false
			if _, err := os.Stat(src); err != nil {
				src, isJPEG = "testdata/pil/"+name+".jpg", true
			}
			img, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]byte, p.RowBytes())
			if err := p.Process(img, got); err != nil {
				t.Fatal(err)
			}
			maxDiff, sum, diffs := 0, 0, 0
			for i := range want {
				d := int(got[i]) - int(want[i])
				if d < 0 {
					d = -d
				}
				if d > 0 {
					diffs++
				}
				sum += d
				maxDiff = max(maxDiff, d)
			}
			mean := float64(sum) / float64(len(want))
			t.Logf("%s: max |diff| %d, mean %.4f, %d of %d values differ", name, maxDiff, mean, diffs, len(want))
			if !isJPEG {
				if maxDiff != 0 {
					t.Errorf("PNG differs from PIL: max |diff| %d, %d values", maxDiff, diffs)
				}
				return
			}
			// libjpeg-turbo is PIL's decoder: its rows must be PIL's, bar
			// CMYK, which takes the Go decoder either way.
			if turboJPEG && name != "jpeg_cmyk" {
				if maxDiff != 0 {
					t.Errorf("libjpeg-turbo row differs from PIL: max |diff| %d, %d values", maxDiff, diffs)
				}
				return
			}
			// Go's IDCT is not libjpeg's islow: a level or two at a few
			// pixels (seen: max 2, mean <= 0.05), nothing systematic. Go's
			// own chroma replication and colour conversion would give
			// max 25, mean 1.3 on the 4:2:0 files.
			if maxDiff > 3 || mean > 0.1 {
				t.Errorf("JPEG too far from PIL: max |diff| %d (want <= 3), mean %.3f (want <= 0.1)", maxDiff, mean)
			}
		})
	}
}

// TestMatchesTorchNormalize checks the float32 path bit for bit against
// numpy's float32 (x/255 - mean)/std of PIL's pixels, laid out NCHW.
func TestMatchesTorchNormalize(t *testing.T) {
	p, err := New(Config{Size: 32, Resize: 40})
	if err != nil {
		t.Fatal(err)
	}
	img, err := os.ReadFile("testdata/pil/rgb_land.png")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/pil/rgb_land.f32")
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, p.RowBytes())
	if err := p.Process(img, got); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("row has %d bytes, reference %d", len(got), len(want))
	}
	for i := 0; i < len(want); i += 4 {
		g := binary.LittleEndian.Uint32(got[i:])
		w := binary.LittleEndian.Uint32(want[i:])
		if g != w {
			t.Fatalf("element %d: got %v, want %v", i/4, math.Float32frombits(g), math.Float32frombits(w))
		}
	}
}
