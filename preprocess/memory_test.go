package preprocess

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/inferd/inferd/httperr"
)

// TestProcessMemoryErrors: for bytes Process refuses from the header,
// ProcessMemory refuses them too, with the same *httperr.Error, so a server
// can answer from ProcessMemory alone.
func TestProcessMemoryErrors(t *testing.T) {
	valid := encodePNG(t, image.NewGray(image.Rect(0, 0, 30, 30)))
	jpg := encodeJPEG(t, image.NewGray(image.Rect(0, 0, 30, 30)), 90)
	for _, tc := range []struct {
		name string
		img  []byte
		want error
	}{
		{"empty", nil, ErrNotImage},
		{"text", []byte("hello world"), ErrNotImage},
		{"png signature only", []byte(pngMagic), ErrNotImage},
		{"zero width png", pngHeader(0, 5), ErrNotImage},
		{"png bomb", pngHeader(100000, 100000), ErrTooLarge},
		{"png one pixel over", encodePNG(t, image.NewGray(image.Rect(0, 0, 31, 30))), ErrTooLarge},
		{"jpeg magic only", []byte("\xff\xd8\xff"), ErrNotImage},
		{"jpeg one pixel over", encodeJPEG(t, image.NewGray(image.Rect(0, 0, 30, 31)), 90), ErrTooLarge},
		{"jpeg bomb", jpegSOFBomb(jpg), ErrTooLarge},
		{"png at the limit", valid, nil},
		{"jpeg at the limit", jpg, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := mustNew(t, Config{Size: 8, MaxPixels: 900})
			n, err := p.ProcessMemory(tc.img)
			perr := p.Process(tc.img, make([]byte, p.RowBytes()))
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("ProcessMemory: %d, %v; want %v", n, err, tc.want)
			}
			if err == nil {
				if n <= 0 {
					t.Errorf("ProcessMemory = %d for a valid image", n)
				}
				return
			}
			var e *httperr.Error
			if !errors.As(err, &e) || e.Status != 415 {
				t.Errorf("ProcessMemory's error is not a 415 *httperr.Error: %#v", err)
			}
			if perr == nil || perr.Error() != err.Error() {
				t.Errorf("ProcessMemory says %q, Process %v", err, perr)
			}
		})
	}
}

// jpegSOFBomb returns a copy of a baseline JPEG whose SOF claims
// 60000x60000 pixels, a size both decoders read.
func jpegSOFBomb(jpg []byte) []byte {
	b := bytes.Clone(jpg)
	i := bytes.Index(b, []byte{0xff, 0xc0})
	copy(b[i+5:], []byte{0xea, 0x60, 0xea, 0x60})
	return b
}

// TestProcessMemoryReferenceImages runs checkProcessMemory on the PIL
// reference images, real photos of every kind Process takes, under
// FuzzProcess's setups (which run it on the fuzz corpus).
func TestProcessMemoryReferenceImages(t *testing.T) {
	files, err := filepath.Glob("testdata/pil/*.[jp][pn]g")
	if err != nil || len(files) == 0 {
		t.Fatalf("no images in testdata/pil: %v", err)
	}
	for _, f := range files {
		img, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range append(fuzzSetups, fuzzSetup{}) {
			checkProcessMemory(t, f+" "+s.String(), s.new(t), img)
		}
	}
}

// fuzzSetups are FuzzProcess's Preprocessors: small crops and pixel
// limits keep each run fast, and the code paths are the same as with the
// defaults. DCT scaling takes libjpeg-turbo's scaled IDCTs (a JPEG whose
// shorter side is 17 pixels or more decodes at 1/2 or less); planar
// decodes every YCbCr and grey JPEG to planes, as Process does for large
// ones.
var fuzzSetups = []fuzzSetup{
	{cfg: Config{Size: 8, Resize: 9, MaxPixels: 1 << 16}},
	{cfg: Config{Size: 5, DType: DTypeUint8, Layout: LayoutNHWC, MaxPixels: 1 << 16}},
	{cfg: Config{Size: 8, Resize: 9, MaxPixels: 1 << 16, JPEGDCTScaling: true}},
	{cfg: Config{Size: 8, Resize: 9, MaxPixels: 1 << 16, Resample: ResampleFloat}},
	{cfg: Config{Size: 8, Resize: 9, MaxPixels: 1 << 16}, planar: true},
}

type fuzzSetup struct {
	cfg    Config
	planar bool
}

func (s fuzzSetup) new(t testing.TB) *Preprocessor {
	t.Helper()
	p := mustNew(t, s.cfg)
	if s.planar {
		p.planesMin = 0
	}
	return p
}

func (s fuzzSetup) String() string { return fmt.Sprintf("%+v planar=%v", s.cfg, s.planar) }

// checkProcessMemory compares ProcessMemory with a Process call: the same
// header errors, every error a 4xx *httperr.Error, and an allocation within
// the bound, less inflate's garbage (only worked out when it matters: it is
// the slow part). p should be fresh, with cold pools and caches.
func checkProcessMemory(t testing.TB, name string, p *Preprocessor, img []byte) {
	t.Helper()
	n, merr := p.ProcessMemory(img)
	alloc, perr := processAlloc(p, img)
	if perr != nil {
		var e *httperr.Error
		if !errors.As(perr, &e) || e.Status < 400 || e.Status > 499 {
			t.Fatalf("%s: Process's error has no 4xx status: %#v", name, perr)
		}
	}
	switch {
	case merr != nil:
		var e *httperr.Error
		if !errors.As(merr, &e) || e.Status != 415 {
			t.Fatalf("%s: ProcessMemory's error is not a 415 *httperr.Error: %#v", name, merr)
		}
		if perr == nil || perr.Error() != merr.Error() {
			t.Fatalf("%s: ProcessMemory refuses with %q, Process says %v", name, merr, perr)
		}
	case perr != nil && !errors.Is(perr, ErrNotImage):
		t.Fatalf("%s: ProcessMemory accepts, Process refuses with %v", name, perr)
	case int64(alloc) > n && int64(alloc-min(alloc, inflateChurn(img))) > n:
		t.Fatalf("%s: Process allocated %d bytes (%d inflate garbage), ProcessMemory said %d", name, alloc, inflateChurn(img), n)
	}
}

// processAlloc runs p.Process once and returns what it allocated on the
// Go heap: TotalAlloc's growth, which counts garbage too (see
// inflateChurn).
func processAlloc(p *Preprocessor, img []byte) (uint64, error) {
	dst := make([]byte, p.RowBytes())
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err := p.Process(img, dst)
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc, err
}

// inflateChurn returns what inflating a PNG's image data allocates beyond
// what inflating one byte does: the link tables compress/flate builds for
// the long codes of every dynamic Huffman block, garbage as soon as the
// next block starts. At most one block's tables (under 100 KB) are live
// at once, but their sum grows with the file: ~3 MB for a 2000x1500
// 16-bit PNG written by image/png, without bound for a crafted one.
// ProcessMemory leaves them to the garbage collector's headroom.
func inflateChurn(img []byte) uint64 {
	if len(img) < len(pngMagic) || string(img[:len(pngMagic)]) != pngMagic {
		return 0
	}
	var idat []byte
	for i := 8; i+8 <= len(img); {
		n := int(binary.BigEndian.Uint32(img[i:]))
		if n < 0 || n > len(img)-i-8 {
			break
		}
		if string(img[i+4:i+8]) == "IDAT" {
			idat = append(idat, img[i+8:i+8+n]...)
		}
		i += 12 + n
	}
	var one bytes.Buffer
	zw := zlib.NewWriter(&one)
	zw.Write([]byte{0})
	zw.Close()
	all, base := inflateAlloc(idat), inflateAlloc(one.Bytes())
	return all - min(all, base)
}

func inflateAlloc(z []byte) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if r, err := zlib.NewReader(bytes.NewReader(z)); err == nil {
		io.Copy(io.Discard, r)
	}
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
