package preprocess

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/inferd/inferd/httperr"
)

func encodePNG(t testing.TB, m image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodeJPEG(t testing.TB, m image.Image, quality int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, m, &jpeg.Options{Quality: quality}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func mustNew(t testing.TB, cfg Config) *Preprocessor {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// fill paints every pixel of m with c.
func fill(m interface {
	image.Image
	Set(x, y int, c color.Color)
}, c color.Color) {
	b := m.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			m.Set(x, y, c)
		}
	}
}

// processUint8 runs p (which must be uint8 NHWC) and returns the pixels.
func processUint8(t *testing.T, p *Preprocessor, img []byte) []byte {
	t.Helper()
	dst := make([]byte, p.RowBytes())
	if err := p.Process(img, dst); err != nil {
		t.Fatalf("Process: %v", err)
	}
	return dst
}

func TestNewDefaults(t *testing.T) {
	p := mustNew(t, Config{})
	cfg := p.Config()
	if cfg.Size != 224 || cfg.Resize != 256 || cfg.Layout != "NCHW" || cfg.DType != "float32" || cfg.MaxPixels != 40_000_000 {
		t.Errorf("defaults: %+v", cfg)
	}
	if cfg.Mean != imageNetMean || cfg.Std != imageNetStd {
		t.Errorf("mean/std defaults: %v %v", cfg.Mean, cfg.Std)
	}
	if got := p.RowBytes(); got != 3*224*224*4 {
		t.Errorf("RowBytes = %d, want %d", got, 3*224*224*4)
	}
	if got := p.Shape(); len(got) != 3 || got[0] != 3 || got[1] != 224 || got[2] != 224 {
		t.Errorf("Shape = %v, want [3 224 224]", got)
	}
	p = mustNew(t, Config{Size: 112, Layout: "NHWC", DType: "uint8"})
	if got := p.Config().Resize; got != 128 {
		t.Errorf("default Resize for Size 112 = %d, want 128", got)
	}
	if got := p.RowBytes(); got != 3*112*112 {
		t.Errorf("uint8 RowBytes = %d", got)
	}
	if got := p.Shape(); got[0] != 112 || got[1] != 112 || got[2] != 3 {
		t.Errorf("NHWC Shape = %v", got)
	}
	// An explicit all-zero mean with a std is taken literally.
	p = mustNew(t, Config{Std: [3]float32{1, 1, 1}})
	if p.Config().Mean != [3]float32{} {
		t.Errorf("zero mean with explicit std replaced: %v", p.Config().Mean)
	}
}

func TestNewRejects(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   Config
		field string // the message must name it
	}{
		{"negative size", Config{Size: -1}, "size -1"},
		{"huge size", Config{Size: MaxSize + 1}, "size"},
		{"resize below size", Config{Size: 224, Resize: 200}, "resize 200"},
		{"zero std with mean", Config{Mean: [3]float32{0.5, 0.5, 0.5}}, "std[0]"},
		{"negative std", Config{Std: [3]float32{1, -1, 1}}, "std[1]"},
		{"NaN mean", Config{Mean: [3]float32{0, 0, float32(math.NaN())}, Std: [3]float32{1, 1, 1}}, "mean[2]"},
		{"bad layout", Config{Layout: "CHW"}, `layout "CHW"`},
		{"bad dtype", Config{DType: "float16"}, `dtype "float16"`},
		{"negative max pixels", Config{MaxPixels: -5}, "max_pixels -5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil {
				t.Fatal("New accepted a bad config")
			}
			if !errors.Is(err, ErrConfig) {
				t.Errorf("error does not wrap ErrConfig: %v", err)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name %q", err, tc.field)
			}
		})
	}
}

// TestImageKinds decodes every kind of image the std decoders produce,
// filled with one colour, and checks the RGB the row starts from: grey is
// replicated, alpha dropped (not composited), palettes looked up, 16-bit
// samples keep their high byte, CMYK converted like PIL.
func TestImageKinds(t *testing.T) {
	rect := image.Rect(0, 0, 40, 30)
	rgb := color.NRGBA{200, 100, 50, 255}
	pil := func(name string) []byte {
		b, err := os.ReadFile("testdata/pil/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	gray := image.NewGray(rect)
	fill(gray, color.Gray{77})
	gray16 := image.NewGray16(rect)
	fill(gray16, color.Gray16{0xC8FF})
	rgba := image.NewRGBA(rect)
	fill(rgba, rgb)
	nrgba := image.NewNRGBA(rect)
	fill(nrgba, color.NRGBA{200, 100, 50, 10}) // nearly transparent: dropped, not composited
	rgba64 := image.NewRGBA64(rect)
	fill(rgba64, color.RGBA64{0xC8FF, 0x6400, 0x3210, 0xFFFF})
	nrgba64 := image.NewNRGBA64(rect)
	fill(nrgba64, color.NRGBA64{0xC8FF, 0x6400, 0x3210, 0x1000})
	pal := image.NewPaletted(rect, color.Palette{color.NRGBA{1, 2, 3, 255}, color.NRGBA{200, 100, 50, 128}})
	fill(pal, color.NRGBA{200, 100, 50, 128})
	jpegGray := image.NewGray(rect)
	fill(jpegGray, color.Gray{77})

	for _, tc := range []struct {
		name     string
		img      []byte
		decoded  string // concrete type the decoder returns
		want     [3]int
		jpegSlop int
	}{
		{"png gray", encodePNG(t, gray), "*image.Gray", [3]int{77, 77, 77}, 0},
		{"png gray16", encodePNG(t, gray16), "*image.Gray16", [3]int{200, 200, 200}, 0},
		{"png rgb", encodePNG(t, rgba), "*image.RGBA", [3]int{200, 100, 50}, 0},
		{"png rgba alpha dropped", encodePNG(t, nrgba), "*image.NRGBA", [3]int{200, 100, 50}, 0},
		{"png rgb16", encodePNG(t, rgba64), "*image.RGBA64", [3]int{200, 100, 50}, 0},
		{"png rgba16 alpha dropped", encodePNG(t, nrgba64), "*image.NRGBA64", [3]int{200, 100, 50}, 0},
		{"png paletted with alpha", encodePNG(t, pal), "*image.Paletted", [3]int{200, 100, 50}, 0},
		{"jpeg ycbcr 4:2:0", encodeJPEG(t, rgba, 100), "*image.YCbCr", [3]int{200, 100, 50}, 2},
		{"jpeg gray", encodeJPEG(t, jpegGray, 100), "*image.Gray", [3]int{77, 77, 77}, 1},
		// The std encoder cannot write CMYK, 4:2:2 or 4:4:4; PIL wrote these
		// (testdata/pil/gen.py). They are not solid, so only the type is
		// checked here; TestMatchesPIL checks their pixels.
		{"jpeg cmyk (PIL)", pil("jpeg_cmyk.jpg"), "*image.CMYK", [3]int{-1, -1, -1}, 0},
		{"jpeg 4:2:2 (PIL)", pil("jpeg422.jpg"), "*image.YCbCr", [3]int{-1, -1, -1}, 0},
		{"jpeg 4:4:4 (PIL)", pil("jpeg444.jpg"), "*image.YCbCr", [3]int{-1, -1, -1}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := mustNew(t, Config{Size: 8, DType: DTypeUint8, Layout: LayoutNHWC})
			m, err := p.decode(tc.img)
			if err != nil {
				t.Fatal(err)
			}
			if got := typeName(m); got != tc.decoded {
				t.Errorf("decoded to %s, want %s", got, tc.decoded)
			}
			if _, slow := newRowSource(m).(*genericRows); slow {
				t.Errorf("%s took the per-pixel At() path", tc.decoded)
			}
			out := processUint8(t, p, tc.img)
			if tc.want[0] < 0 {
				return
			}
			for i, v := range out {
				d := int(v) - tc.want[i%3]
				if d < -tc.jpegSlop || d > tc.jpegSlop {
					t.Fatalf("pixel %d channel %d = %d, want %d±%d", i/3, i%3, v, tc.want[i%3], tc.jpegSlop)
				}
			}
		})
	}
}

func typeName(m image.Image) string {
	switch m.(type) {
	case *image.Gray:
		return "*image.Gray"
	case *image.Gray16:
		return "*image.Gray16"
	case *image.RGBA:
		return "*image.RGBA"
	case *image.NRGBA:
		return "*image.NRGBA"
	case *image.RGBA64:
		return "*image.RGBA64"
	case *image.NRGBA64:
		return "*image.NRGBA64"
	case *image.Paletted:
		return "*image.Paletted"
	case *image.YCbCr:
		return "*image.YCbCr"
	case *image.CMYK:
		return "*image.CMYK"
	}
	return "other"
}

// TestSolidColourValues checks the normalised float32 values exactly:
// the constants are numpy float32 (v/255 - mean)/std for ImageNet's
// mean and std, i.e. what torchvision's ToTensor + Normalize produce.
func TestSolidColourValues(t *testing.T) {
	m := image.NewRGBA(image.Rect(0, 0, 300, 200))
	fill(m, color.RGBA{200, 100, 50, 255})
	img := encodePNG(t, m)
	want := [3]uint32{0x3fa74d4f, 0xbe91ed5a, 0xbf6ed816} // 1.3070468, -0.28501397, -0.9329847

	for _, layout := range []string{LayoutNCHW, LayoutNHWC} {
		t.Run(layout, func(t *testing.T) {
			p := mustNew(t, Config{Layout: layout})
			dst := make([]byte, p.RowBytes())
			if err := p.Process(img, dst); err != nil {
				t.Fatal(err)
			}
			const plane = 224 * 224
			for i := range 3 * plane {
				c := i / plane // NCHW: channel planes
				if layout == LayoutNHWC {
					c = i % 3
				}
				got := binary.LittleEndian.Uint32(dst[4*i:])
				if got != want[c] {
					t.Fatalf("element %d (channel %d) = %v, want %v", i, c, math.Float32frombits(got), math.Float32frombits(want[c]))
				}
			}
		})
	}
	t.Run("uint8 NCHW", func(t *testing.T) {
		p := mustNew(t, Config{DType: DTypeUint8})
		dst := make([]byte, p.RowBytes())
		if err := p.Process(img, dst); err != nil {
			t.Fatal(err)
		}
		for i, v := range dst {
			if w := []byte{200, 100, 50}[i/(224*224)]; v != w {
				t.Fatalf("element %d = %d, want %d", i, v, w)
			}
		}
	})
	t.Run("extremes", func(t *testing.T) {
		m := image.NewRGBA(image.Rect(0, 0, 10, 10))
		fill(m, color.RGBA{0, 255, 128, 255})
		p := mustNew(t, Config{Size: 4, Layout: LayoutNHWC})
		dst := make([]byte, p.RowBytes())
		if err := p.Process(encodePNG(t, m), dst); err != nil {
			t.Fatal(err)
		}
		want := [3]uint32{0xc0078bbd, 0x401b6db7, 0x3eda5d3c} // -2.117904, 2.4285715, 0.42649257
		for i := 0; i < len(dst); i += 4 {
			if got := binary.LittleEndian.Uint32(dst[i:]); got != want[(i/4)%3] {
				t.Fatalf("element %d = %v, want %v", i/4, math.Float32frombits(got), math.Float32frombits(want[(i/4)%3]))
			}
		}
	})
}

// TestResizeHandComputed checks the filter against values worked out on
// paper from Pillow's algorithm.
func TestResizeHandComputed(t *testing.T) {
	for _, tc := range []struct {
		name         string
		cols         []uint8 // every row of the source image
		size, resize int
		want         []uint8 // every row of the output
	}{
		{
			// Downscale 4 -> 2: scale 2, support 2. Output 0 has centre 1.0
			// and reads inputs 0..2 with triangle weights 0.75, 0.75, 0.25,
			// normalised to 3/7, 3/7, 1/7: (3*10+3*20+1*40)/7 = 18.57 -> 19.
			// Output 1 (centre 3.0) reads 1..3 with 1/7, 3/7, 3/7:
			// (20+3*40+3*80)/7 = 54.29 -> 54.
			name: "downscale antialiases", cols: []uint8{10, 20, 40, 80}, size: 2, resize: 2,
			want: []uint8{19, 54},
		},
		{
			// Upscale 2 -> 4: support 1. Centres 0.25, 0.75, 1.25, 1.75 give
			// [p0], [0.75 p0 + 0.25 p1], [0.25 p0 + 0.75 p1], [p1].
			name: "upscale interpolates", cols: []uint8{0, 100}, size: 4, resize: 4,
			want: []uint8{0, 25, 75, 100},
		},
		{
			// Same size: the filter is the identity.
			name: "identity", cols: []uint8{3, 200, 7}, size: 3, resize: 3,
			want: []uint8{3, 200, 7},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := len(tc.cols)
			m := image.NewGray(image.Rect(0, 0, n, n))
			for y := range n {
				copy(m.Pix[y*m.Stride:], tc.cols)
			}
			p := mustNew(t, Config{Size: tc.size, Resize: tc.resize, DType: DTypeUint8, Layout: LayoutNHWC})
			out := processUint8(t, p, encodePNG(t, m))
			for y := range tc.size {
				for x := range tc.size {
					if got := out[3*(y*tc.size+x)]; got != tc.want[x] {
						t.Errorf("pixel (%d,%d) = %d, want %d", x, y, got, tc.want[x])
					}
				}
			}
		})
	}
}

// TestCenterCrop uses images whose halves differ: a correct centre crop
// straddles the boundary evenly.
func TestCenterCrop(t *testing.T) {
	half := func(w, h int, vertical bool) []byte {
		m := image.NewGray(image.Rect(0, 0, w, h))
		for y := range h {
			for x := range w {
				if (!vertical && x >= w/2) || (vertical && y >= h/2) {
					m.Pix[y*m.Stride+x] = 255
				}
			}
		}
		return encodePNG(t, m)
	}
	p := mustNew(t, Config{Size: 4, Resize: 4, DType: DTypeUint8, Layout: LayoutNHWC})

	// 16x4 landscape keeps its size (shorter side is already 4); the crop
	// takes columns 6..9: two black, two white.
	out := processUint8(t, p, half(16, 4, false))
	for y := range 4 {
		row := []byte{out[12*y], out[12*y+3], out[12*y+6], out[12*y+9]}
		if !bytes.Equal(row, []byte{0, 0, 255, 255}) {
			t.Errorf("landscape row %d = %v, want [0 0 255 255]", y, row)
		}
	}
	// 4x16 portrait: rows 6..9, two black rows then two white.
	out = processUint8(t, p, half(4, 16, true))
	for y := range 4 {
		want := byte(0)
		if y >= 2 {
			want = 255
		}
		for x := range 4 {
			if got := out[3*(4*y+x)]; got != want {
				t.Errorf("portrait pixel (%d,%d) = %d, want %d", x, y, got, want)
			}
		}
	}
}

func TestCropOffsetRoundsHalfToEven(t *testing.T) {
	// Python's round(): 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, 58.5 -> 58, 59.5 -> 60.
	for d, want := range map[int]int{0: 0, 1: 0, 2: 1, 3: 2, 4: 2, 5: 2, 7: 4, 117: 58, 119: 60} {
		if got := cropOffset(d); got != want {
			t.Errorf("cropOffset(%d) = %d, want %d", d, got, want)
		}
	}
}

func TestResizedSize(t *testing.T) {
	for _, tc := range []struct{ w, h, resize, ow, oh int }{
		{640, 480, 256, 341, 256}, // int(256*640/480) = int(341.33)
		{480, 640, 256, 256, 341},
		{224, 224, 256, 256, 256},
		{1, 1000, 256, 256, 256000},
	} {
		ow, oh := resizedSize(tc.w, tc.h, tc.resize)
		if ow != tc.ow || oh != tc.oh {
			t.Errorf("resizedSize(%d, %d, %d) = %dx%d, want %dx%d", tc.w, tc.h, tc.resize, ow, oh, tc.ow, tc.oh)
		}
	}
}

// pngHeader returns a PNG signature and IHDR chunk claiming w x h RGB
// pixels, with no pixel data at all.
func pngHeader(w, h uint32) []byte {
	var b bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.NoCompression}
	if err := enc.Encode(&b, image.NewRGBA(image.Rect(0, 0, 1, 1))); err != nil {
		panic(err)
	}
	hdr := append([]byte(nil), b.Bytes()[:8+8+13+4]...) // signature, IHDR
	binary.BigEndian.PutUint32(hdr[16:], w)
	binary.BigEndian.PutUint32(hdr[20:], h)
	crc := crc32.ChecksumIEEE(hdr[12 : 12+4+13])
	binary.BigEndian.PutUint32(hdr[29:], crc)
	return hdr
}

func TestPixelLimitBeforeDecoding(t *testing.T) {
	p := mustNew(t, Config{})
	bomb := pngHeader(100000, 100000) // 41 bytes claiming 10^10 pixels
	dst := make([]byte, p.RowBytes())

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err := p.Process(bomb, dst)
	runtime.ReadMemStats(&after)

	const want = "image too large: 100000x100000 pixels exceeds max_pixels 40000000"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
	if !errors.Is(err, ErrTooLarge) {
		t.Error("error does not wrap ErrTooLarge")
	}
	var sc interface{ StatusCode() int }
	if !errors.As(err, &sc) || sc.StatusCode() != 415 {
		t.Errorf("status = %v, want 415", sc)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("rejecting the bomb allocated %d bytes: it was decoded", n)
	}

	// The limit is the configured one, inclusive.
	small := mustNew(t, Config{Size: 4, MaxPixels: 100})
	ok := encodePNG(t, image.NewGray(image.Rect(0, 0, 10, 10)))
	if err := small.Process(ok, make([]byte, small.RowBytes())); err != nil {
		t.Errorf("10x10 image with max_pixels 100: %v", err)
	}
	big := encodePNG(t, image.NewGray(image.Rect(0, 0, 11, 10)))
	if err := small.Process(big, make([]byte, small.RowBytes())); !errors.Is(err, ErrTooLarge) {
		t.Errorf("11x10 image with max_pixels 100: err = %v, want ErrTooLarge", err)
	}
}

func TestRejectsNonImages(t *testing.T) {
	valid := encodePNG(t, image.NewGray(image.Rect(0, 0, 30, 30)))
	noisy := image.NewGray(image.Rect(0, 0, 64, 64))
	for i := range noisy.Pix {
		noisy.Pix[i] = byte(i * 37 % 251)
	}
	validJPEG := encodeJPEG(t, noisy, 90) // mostly entropy-coded data
	corrupt := append([]byte(nil), valid...)
	for i := 60; i < len(corrupt)-12; i++ {
		corrupt[i] ^= 0x5a
	}
	for _, tc := range []struct {
		name, img, msg string
	}{
		{"empty", "", "not a JPEG or PNG image: empty body"},
		{"text", "hello world", "not a JPEG or PNG image: unknown format starting 68 65 6c 6c 6f 20 77 6f (expected JPEG ff d8 ff or PNG 89 50 4e 47)"},
		{"gif", "GIF89a\x01\x00\x01\x00", "not a JPEG or PNG image: unknown format starting 47 49 46 38 39 61 01 00"},
		{"png signature only", pngMagic, "not a JPEG or PNG image: bad PNG header"},
		{"truncated png", string(valid[:len(valid)/2]), "not a JPEG or PNG image: cannot decode PNG"},
		{"corrupt png", string(corrupt), "not a JPEG or PNG image: cannot decode PNG"},
		{"truncated jpeg", string(validJPEG[:len(validJPEG)*3/4]), "not a JPEG or PNG image: cannot decode JPEG"},
		{"jpeg magic only", "\xff\xd8\xff", "not a JPEG or PNG image: bad JPEG header"},
		{"zero width png", string(pngHeader(0, 5)), "not a JPEG or PNG image: bad PNG header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := mustNew(t, Config{Size: 8})
			err := p.Process([]byte(tc.img), make([]byte, p.RowBytes()))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.HasPrefix(err.Error(), tc.msg) {
				t.Errorf("message %q, want prefix %q", err, tc.msg)
			}
			if !errors.Is(err, ErrNotImage) {
				t.Errorf("does not wrap ErrNotImage: %v", err)
			}
			var sc interface{ StatusCode() int }
			if !errors.As(err, &sc) || sc.StatusCode() != 415 {
				t.Errorf("no 415 status: %v", err)
			}
		})
	}
}

func TestWrongDst(t *testing.T) {
	p := mustNew(t, Config{Size: 8})
	err := p.Process(encodePNG(t, image.NewGray(image.Rect(0, 0, 8, 8))), make([]byte, 10))
	var e *httperr.Error
	if !errors.As(err, &e) || e.StatusCode() != 500 || !errors.Is(err, ErrDst) {
		t.Fatalf("err = %v, want a 500 wrapping ErrDst", err)
	}
	if want := "bad destination buffer: dst has 10 bytes, RowBytes is 768"; err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
}

// TestConcurrent shares one Preprocessor between goroutines with images
// of several sizes, as handlers do; run with -race.
func TestConcurrent(t *testing.T) {
	p := mustNew(t, Config{Size: 16})
	var imgs [][]byte
	var want [][]byte
	for i, sz := range []image.Point{{40, 30}, {30, 40}, {17, 64}, {64, 64}} {
		m := image.NewRGBA(image.Rect(0, 0, sz.X, sz.Y))
		for j := range m.Pix {
			m.Pix[j] = byte(j*7 + i)
		}
		img := encodePNG(t, m)
		imgs = append(imgs, img)
		w := make([]byte, p.RowBytes())
		if err := p.Process(img, w); err != nil {
			t.Fatal(err)
		}
		want = append(want, w)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			dst := make([]byte, p.RowBytes())
			for i := range 20 {
				k := (g + i) % len(imgs)
				if err := p.Process(imgs[k], dst); err != nil {
					t.Error(err)
					return
				}
				if !bytes.Equal(dst, want[k]) {
					t.Errorf("goroutine %d: image %d differs from the serial result", g, k)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestRealImages processes the real photos the end-to-end test classifies
// (set INFERD_REALMODEL_DIR, as .ci/run does when ../shared/realmodel
// exists) and compares each row with the one PIL + numpy produce for the
// zoo's preprocessing (Resize(256), CenterCrop(224), ToTensor, ImageNet
// Normalize, NCHW float32): the images are PNGs, so the rows must be
// identical. The hashes were computed with Pillow 9.4 the way
// testdata/pil/gen.py computes its references.
func TestRealImages(t *testing.T) {
	dir := os.Getenv("INFERD_REALMODEL_DIR")
	if dir == "" {
		t.Skip("INFERD_REALMODEL_DIR is not set: no real images to process (.ci/run sets it when ../shared/realmodel exists)")
	}
	want := map[string]string{
		"glow_cat_285.png":   "dc86912d6106f2fed9ca3dd6753a3b75d8a8a8e95c3c012f36c1041135ab9605",
		"glow_dog_207.png":   "fb34de3ccab29a565a69c1e314fd175b73682d13a5fa8a09ecbf5c43d9816cc3",
		"glow_zebra_340.png": "4f0266bdff57eaef3e7d56d4a9f278046fa35b19242a09be84bca30ccccf025b",
	}
	p := mustNew(t, Config{})
	for name, sum := range want {
		img, err := os.ReadFile(filepath.Join(dir, "images", name))
		if err != nil {
			t.Fatal(err)
		}
		dst := make([]byte, p.RowBytes())
		if err := p.Process(img, dst); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got := fmt.Sprintf("%x", sha256.Sum256(dst)); got != sum {
			t.Errorf("%s: row sha256 %s, PIL's is %s", name, got, sum)
		}
	}
}
