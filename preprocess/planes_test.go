package preprocess

import (
	"bytes"
	"fmt"
	"image"
	"os"
	"path/filepath"
	"testing"
)

// TestPlanarDecodeMatchesRGB: decoding to planes and converting in the
// row source gives the rows decoding to packed RGB gives (PIL's, see
// TestMatchesPIL), byte for byte: every subsampling PIL and cjpeg wrote
// in testdata/pil, odd sizes whose last chroma sample covers one pixel,
// and tiny images whose chroma is too narrow for fancy upsampling.
func TestPlanarDecodeMatchesRGB(t *testing.T) {
	if !turboJPEG {
		t.Skip("built without libjpeg-turbo")
	}
	type input struct {
		name string
		img  []byte
	}
	var inputs []input
	files, err := filepath.Glob("testdata/pil/*.jpg")
	if err != nil || len(files) == 0 {
		t.Fatalf("no JPEGs in testdata/pil: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, input{filepath.Base(f), b})
	}
	for _, sz := range []image.Point{{1, 1}, {2, 2}, {3, 3}, {5, 3}, {4, 9}, {17, 5}, {641, 479}} {
		m := photoLike(sz.X, sz.Y)
		inputs = append(inputs,
			input{fmt.Sprintf("std 4:2:0 %dx%d", sz.X, sz.Y), encodeJPEG(t, m, 90)},
			input{fmt.Sprintf("std grey %dx%d", sz.X, sz.Y), encodeJPEG(t, grayOf(m), 90)})
	}
	for _, cfg := range []Config{
		{Size: 32, Resize: 40, DType: DTypeUint8, Layout: LayoutNHWC},
		{Size: 8, Resize: 9},
		{Resample: ResampleFloat},
	} {
		packed, planar := mustNew(t, cfg), mustNew(t, cfg)
		planar.planesMin = 0
		for _, in := range inputs {
			d := getTJ()
			w, h, samp, ok := tjHeader(d, in.img)
			putTJ(d)
			if !ok {
				continue // CMYK: image/jpeg's
			}
			_, planes := planar.usePlanes(w, h, samp, planar.jpegScale(w, h))
			if want := samp != tjSamp444 && samp != tjSampRGB; planes != want {
				t.Errorf("%s (subsampling %d): planes %v, want %v", in.name, samp, planes, want)
			}
			want := make([]byte, packed.RowBytes())
			got := make([]byte, planar.RowBytes())
			if err := packed.Process(in.img, want); err != nil {
				t.Fatalf("%s: %v", in.name, err)
			}
			if err := planar.Process(in.img, got); err != nil {
				t.Fatalf("%s: planar: %v", in.name, err)
			}
			if !bytes.Equal(got, want) {
				n := 0
				for i := range got {
					if got[i] != want[i] {
						n++
					}
				}
				t.Errorf("%s %+v: %d of %d bytes differ between planar and packed RGB decoding", in.name, cfg, n, len(got))
			}
		}
	}
}

// grayOf is m's green channel as a grey image.
func grayOf(m *image.NRGBA) *image.Gray {
	g := image.NewGray(m.Rect)
	for i := range g.Pix {
		g.Pix[i] = m.Pix[4*i+1]
	}
	return g
}

// TestTJHeaderStale: libjpeg-turbo reports success for a tables-only
// stream without writing the size, so a pooled handle must not hand on
// the size of the image it read before (which turned "\xff\xd8\xff" after
// a too-large JPEG into ErrTooLarge instead of ErrNotImage).
func TestTJHeaderStale(t *testing.T) {
	if !turboJPEG {
		t.Skip("built without libjpeg-turbo")
	}
	d := getTJ()
	defer putTJ(d)
	if _, _, _, ok := tjHeader(d, encodeJPEG(t, photoLike(40, 30), 90)); !ok {
		t.Fatal("libjpeg-turbo refuses a std-encoded JPEG")
	}
	if w, h, _, ok := tjHeader(d, []byte("\xff\xd8\xff")); ok {
		t.Errorf(`tjHeader("\xff\xd8\xff") = %dx%d, ok`, w, h)
	}
}
