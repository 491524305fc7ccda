//go:build !race

package preprocess

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/inferd/inferd/internal/testbed"
)

// TestProcessMemoryBound measures the peak of one Process call per kind of
// image and checks ProcessMemory against it: an upper bound, and not a
// loose one (at most 3x the measured peak plus 8 MiB).
//
// The Go part is the TotalAlloc delta across the call on a fresh
// Preprocessor (cold pools and caches), less the garbage inflate makes
// (inflateChurn). libjpeg-turbo's C part is measured in a child process
// (the test binary again, TestTurboCPeakHelper) that decodes once, into
// a Go buffer touched beforehand, as the growth of peak RSS (VmHWM after
// clear_refs; root only, else the C part is logged as unmeasured) less
// the library code paged in meanwhile. A fresh process has no freed C
// memory for malloc to reuse, so what libjpeg-turbo takes shows in RSS.
//
// Images are made here: the std encoders for photo-like content, and
// flatJPEG for what the std encoder cannot write (4:4:4, progressive,
// CMYK, YCCK, RGB), flat grey with every coefficient but DC zero; the
// memory of both decoders does not depend on the pixels. 2000x1500 by
// default, 500x375 under -short, and a few larger JPEGs for the planar
// decode.
func TestProcessMemoryBound(t *testing.T) {
	w, h := 2000, 1500
	if testing.Short() {
		w, h = 500, 375
	}
	photo := sync.OnceValue(func() *image.NRGBA { return photoLike(w, h) })
	jpeg420 := sync.OnceValue(func() []byte { return encodeJPEG(t, photo(), 90) })
	flat := func(s jpegSpec) func() []byte {
		s.w, s.h = w, h
		return func() []byte { return flatJPEG(s) }
	}
	big := func(s jpegSpec) func() []byte {
		s.w, s.h = 6000, 4000
		if testing.Short() {
			s.w, s.h = 4100, 4100 // still above planarMinPixels
		}
		return func() []byte { return flatJPEG(s) }
	}
	pngOf := func(m func() image.Image) func() []byte {
		return func() []byte { return encodePNGFast(t, m()) }
	}
	raw := func(colorType, depth byte, interlaced bool) func() []byte {
		return func() []byte { return rawPNG(photo(), colorType, depth, interlaced) }
	}
	ycc420 := []jpegComp{{1, 2, 2}, {2, 1, 1}, {3, 1, 1}}
	ycc444 := []jpegComp{{1, 1, 1}, {2, 1, 1}, {3, 1, 1}}
	cmyk := []jpegComp{{1, 1, 1}, {2, 1, 1}, {3, 1, 1}, {4, 1, 1}}
	ycck := []jpegComp{{1, 2, 2}, {2, 1, 1}, {3, 1, 1}, {4, 2, 2}}
	rgb := []jpegComp{{'R', 1, 1}, {'G', 1, 1}, {'B', 1, 1}}
	gray := []jpegComp{{1, 1, 1}}
	for _, tc := range []struct {
		name string
		cfg  Config
		img  func() []byte
	}{
		{"jpeg 4:2:0 baseline (std encoder)", Config{}, jpeg420},
		{"jpeg 4:2:0 baseline, dct scaling", Config{JPEGDCTScaling: true}, jpeg420},
		{"jpeg 4:2:0 baseline, resample float", Config{Resample: ResampleFloat}, jpeg420},
		{"jpeg grey baseline (std encoder)", Config{}, func() []byte { return encodeJPEG(t, grayOf(photo()), 90) }},
		{"jpeg 4:4:4 baseline", Config{}, flat(jpegSpec{comps: ycc444})},
		{"jpeg 4:2:0 progressive", Config{}, flat(jpegSpec{comps: ycc420, progressive: true})},
		{"jpeg 4:4:4 progressive", Config{}, flat(jpegSpec{comps: ycc444, progressive: true})},
		{"jpeg grey progressive", Config{}, flat(jpegSpec{comps: gray, progressive: true})},
		// Components in separate scans: libjpeg-turbo buffers the whole
		// image's coefficients as for progressive.
		{"jpeg 4:2:0 sequential, one scan per component", Config{}, flat(jpegSpec{comps: ycc420, scanPerComp: true})},
		// libjpeg-turbo warns about the stray bytes and refuses the
		// file; image/jpeg skips them, so Process decodes twice.
		{"jpeg 4:2:0 progressive, turbo refuses", Config{}, flat(jpegSpec{comps: ycc420, progressive: true, junk: true})},
		{"jpeg rgb (adobe 0) progressive", Config{}, flat(jpegSpec{comps: rgb, progressive: true, adobe: adobeTransform0})},
		{"jpeg cmyk baseline", Config{}, flat(jpegSpec{comps: cmyk, adobe: adobeTransform0})},
		{"jpeg cmyk progressive", Config{}, flat(jpegSpec{comps: cmyk, progressive: true, adobe: adobeTransform0})},
		{"jpeg ycck 4:2:0 progressive", Config{}, flat(jpegSpec{comps: ycck, progressive: true, adobe: adobeTransform2})},
		// Above planarMinPixels libjpeg-turbo decodes to planes.
		{"jpeg 4:2:0 baseline 6000x4000", Config{}, big(jpegSpec{comps: ycc420})},
		{"jpeg 4:2:0 progressive 6000x4000", Config{}, big(jpegSpec{comps: ycc420, progressive: true})},
		{"jpeg grey baseline 6000x4000", Config{}, big(jpegSpec{comps: gray})},
		{"png rgb 8", Config{}, pngOf(func() image.Image { return opaque(photo()) })},
		{"png rgba 8", Config{}, pngOf(func() image.Image { return photo() })},
		{"png paletted", Config{}, pngOf(func() image.Image { return palettedOf(photo()) })},
		{"png grey 8 + tRNS", Config{}, func() []byte { return withTRNS(t, encodePNGFast(t, grayOf(photo()))) }},
		{"png grey 16", Config{}, raw(0, 16, false)},
		{"png rgb 16", Config{}, raw(2, 16, false)},
		{"png rgba 16", Config{}, raw(6, 16, false)},
		{"png rgb 8 interlaced", Config{}, raw(2, 8, true)},
		{"png rgb 16 interlaced, resample float", Config{Resample: ResampleFloat}, raw(2, 16, true)},
		// A thin image: the resize reads few rows but whole ones.
		{"png grey 8 thin", Config{}, func() []byte { return encodePNGFast(t, grayOf(photoLike(4*w, 40))) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := tc.img()
			p := mustNew(t, tc.cfg)
			est, err := p.ProcessMemory(img)
			if err != nil {
				t.Fatal(err)
			}
			runtime.GC()
			goAlloc, err := processAlloc(p, img)
			if err != nil {
				t.Fatal(err)
			}
			goAlloc -= min(goAlloc, inflateChurn(img))
			path, peak := "image/"+formatName(img), int64(goAlloc)
			if turboJPEG && isJPEG(img) {
				peakOf := func(c turboRun) int64 {
					switch {
					case c.decoded:
						return int64(goAlloc) + c.cPeak
					case c.ok:
						// libjpeg-turbo's memory is gone by the time
						// image/jpeg decodes again.
						return max(int64(goAlloc), c.out+c.cPeak)
					}
					return int64(goAlloc)
				}
				var c turboRun
				c, path = turboPeak(t, p, img, func(c turboRun) bool { return peakOf(c) <= est })
				peak = peakOf(c)
			}
			t.Logf("%-40s %-24s Go %6.1f MB  C %6.1f MB  peak %6.1f MB  estimate %6.1f MB  x%.2f",
				tc.name, path, mb(int64(goAlloc)), mb(peak-int64(goAlloc)), mb(peak), mb(est), float64(est)/float64(peak))
			if est < peak {
				t.Errorf("ProcessMemory = %d, below the measured %d", est, peak)
			}
			if est > 3*peak+8<<20 {
				t.Errorf("ProcessMemory = %d, more than 3x the measured %d + 8 MiB", est, peak)
			}
		})
	}
}

func mb(n int64) float64 { return float64(n) / 1e6 }

func formatName(img []byte) string {
	if isJPEG(img) {
		return "jpeg"
	}
	return "png"
}

// turboRun is what TestTurboCPeakHelper reports.
type turboRun struct {
	ok      bool  // the header was one libjpeg-turbo decodes
	decoded bool  // and it decoded the data (else Process falls back)
	out     int64 // bytes of the Go output buffer
	cPeak   int64 // growth of peak RSS during the decode
}

// turboPeak runs the decode of img in a child process and returns its
// peak C memory and the path Process takes. Now and then (1 run in 40
// here) the Go runtime faults in a 2 MB page of its own meanwhile, which
// only ever adds: a run that does not fit is repeated, twice at most, and
// the least counts.
func turboPeak(t *testing.T, p *Preprocessor, img []byte, fits func(turboRun) bool) (turboRun, string) {
	t.Helper()
	f := t.TempDir() + "/img.jpg"
	if err := os.WriteFile(f, img, 0o600); err != nil {
		t.Fatal(err)
	}
	// The decode Process does: planes or packed RGB, at what scale.
	mode := "rgb"
	d := getTJ()
	w, h, samp, _ := tjHeader(d, img)
	putTJ(d)
	m := p.jpegScale(w, h)
	if _, ok := p.usePlanes(w, h, samp, m); ok {
		mode = "planes"
	}
	var best turboRun
	for i := range 3 {
		r, ok := turboPeakOnce(t, f, mode, m)
		switch {
		case !ok:
			return r, "libjpeg-turbo (C unmeasured)"
		case !r.ok:
			return r, "image/jpeg"
		case i == 0 || r.cPeak < best.cPeak:
			best = r
		}
		if fits(best) {
			break
		}
	}
	if !best.decoded {
		return best, "libjpeg-turbo+image/jpeg"
	}
	return best, "libjpeg-turbo"
}

// turboPeakOnce runs TestTurboCPeakHelper once; ok is false when it could
// not measure.
func turboPeakOnce(t *testing.T, file, mode string, scale int) (r turboRun, ok bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestTurboCPeakHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(),
		"PREPROCESS_CPEAK_IMAGE="+file,
		"PREPROCESS_CPEAK_MODE="+mode,
		"PREPROCESS_CPEAK_SCALE="+strconv.Itoa(scale))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	for line := range strings.Lines(string(out)) {
		if _, err := fmt.Sscanf(line, "cpeak ok=%t decoded=%t out=%d peak=%d", &r.ok, &r.decoded, &r.out, &r.cPeak); err == nil {
			return r, true
		}
		if strings.HasPrefix(line, "cpeak skip") {
			t.Logf("C memory not measured: %s", line)
			return r, false
		}
	}
	t.Fatalf("helper said nothing useful:\n%s", out)
	return r, false
}

// TestTurboCPeakHelper is TestProcessMemoryBound's child process: it
// decodes PREPROCESS_CPEAK_IMAGE with libjpeg-turbo to planes
// (PREPROCESS_CPEAK_MODE=planes) or to packed RGB at the scale
// PREPROCESS_CPEAK_SCALE/8, and prints how far peak RSS rose meanwhile.
func TestTurboCPeakHelper(t *testing.T) {
	f := os.Getenv("PREPROCESS_CPEAK_IMAGE")
	if f == "" {
		t.Skip("a helper process for TestProcessMemoryBound")
	}
	img, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	m, err := strconv.Atoi(os.Getenv("PREPROCESS_CPEAK_SCALE"))
	if err != nil {
		t.Fatal(err)
	}
	d := getTJ()
	w, h, samp, ok := tjHeader(d, img)
	if !ok {
		fmt.Printf("cpeak ok=false decoded=false out=0 peak=0\n")
		return
	}
	sw, sh := tjScaled(w, m), tjScaled(h, m)
	decode := func(buf []byte) bool { return decodeTurbo(d, img, buf, w, h, m) }
	n := 3 * sw * sh
	if os.Getenv("PREPROCESS_CPEAK_MODE") == "planes" {
		l, _ := (&Preprocessor{}).usePlanes(w, h, samp, 8)
		decode = func(buf []byte) bool { return decodeTurboPlanes(d, img, buf, &l, w, h) }
		n = l.size()
	}
	buf := make([]byte, n)
	for i := range buf {
		buf[i] = 1 // resident before the measurement starts
	}
	// No collections, and nothing left for the background scavenger to
	// return: the Go runtime's own page faults are noise here.
	debug.SetGCPercent(-1)
	debug.FreeOSMemory()
	if !testbed.ResetPeakRSS(0) {
		fmt.Printf("cpeak skip: cannot reset peak RSS\n")
		return
	}
	rss, file := procStatus(t, "VmRSS"), procStatus(t, "RssFile")
	decoded := decode(buf)
	hwm := procStatus(t, "VmHWM")
	// libjpeg-turbo's code, paged in on first use, is not its memory.
	hwm -= procStatus(t, "RssFile") - file
	fmt.Printf("cpeak ok=true decoded=%t out=%d peak=%d\n", decoded, len(buf), hwm-rss)
}

// procStatus returns a field of /proc/self/status in bytes.
func procStatus(t *testing.T, key string) int64 {
	n := testbed.ProcStatus(0, key)
	if n == 0 {
		t.Fatalf("no %s in /proc/self/status", key)
	}
	return n
}

func encodePNGFast(t testing.TB, m image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func opaque(m *image.NRGBA) *image.RGBA {
	o := image.NewRGBA(m.Rect)
	for i := 0; i < len(m.Pix); i += 4 {
		copy(o.Pix[i:i+3], m.Pix[i:i+3])
		o.Pix[i+3] = 255
	}
	return o
}

func palettedOf(m *image.NRGBA) *image.Paletted {
	pal := make(color.Palette, 256)
	for i := range pal {
		pal[i] = color.RGBA{uint8(i), uint8(255 - i), uint8(i * 7), 255}
	}
	o := image.NewPaletted(m.Rect, pal)
	for i := range o.Pix {
		o.Pix[i] = m.Pix[4*i] ^ m.Pix[4*i+2]
	}
	return o
}

// withTRNS inserts a tRNS chunk after IHDR, which makes image/png return
// grey as NRGBA: 4 bytes a pixel instead of 1.
func withTRNS(t testing.TB, img []byte) []byte {
	t.Helper()
	const ihdrEnd = 8 + 8 + 13 + 4
	if img[25] != 0 {
		t.Fatal("withTRNS takes grey PNGs")
	}
	out := append([]byte(nil), img[:ihdrEnd]...)
	out = append(out, pngChunk("tRNS", []byte{0, 7})...)
	return append(out, img[ihdrEnd:]...)
}

func pngChunk(kind string, data []byte) []byte {
	c := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
	c = append(c, kind...)
	c = append(c, data...)
	return binary.BigEndian.AppendUint32(c, crc32.ChecksumIEEE(c[4:]))
}

// rawPNG writes m's pixels as a PNG of the given colour type (0 grey, 2
// RGB, 6 RGBA) and bit depth (8, 16; the low byte of a 16-bit sample is
// the high byte flipped), unfiltered, Adam7-interlaced if asked: the std
// encoder cannot interlace, and is slow for 16-bit images.
func rawPNG(m *image.NRGBA, colorType, depth byte, interlaced bool) []byte {
	channels := map[byte][]int{0: {1}, 2: {0, 1, 2}, 6: {0, 1, 2, 3}}[colorType]
	w, h := m.Rect.Dx(), m.Rect.Dy()
	passes := adam7[:]
	if !interlaced {
		passes = []struct{ x0, y0, dx, dy int64 }{{0, 0, 1, 1}}
	}
	var z bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&z, zlib.BestSpeed)
	var row []byte
	for _, a := range passes {
		for y := int(a.y0); y < h; y += int(a.dy) {
			if int(a.x0) >= w {
				break
			}
			row = append(row[:0], 0) // filter type None
			for x := int(a.x0); x < w; x += int(a.dx) {
				px := m.Pix[y*m.Stride+4*x:]
				for _, c := range channels {
					row = append(row, px[c])
					if depth == 16 {
						row = append(row, px[c]^0x5a)
					}
				}
			}
			zw.Write(row)
		}
	}
	zw.Close()
	ihdr := binary.BigEndian.AppendUint32(nil, uint32(w))
	ihdr = binary.BigEndian.AppendUint32(ihdr, uint32(h))
	il := byte(0)
	if interlaced {
		il = 1
	}
	ihdr = append(ihdr, depth, colorType, 0, 0, il)
	out := []byte(pngMagic)
	out = append(out, pngChunk("IHDR", ihdr)...)
	out = append(out, pngChunk("IDAT", z.Bytes())...)
	return append(out, pngChunk("IEND", nil)...)
}

// jpegSpec describes a JPEG for flatJPEG.
type jpegSpec struct {
	w, h        int
	comps       []jpegComp // identifiers and sampling factors
	progressive bool       // SOF2: a DC scan, then one AC scan per component
	scanPerComp bool       // sequential, one scan per component
	adobe       int        // noAdobe, or an APP14 Adobe marker with transform 0 or 2
	junk        bool       // stray bytes before EOI
}

// jpegSpec.adobe values. Without an APP14 marker, flatJPEG writes an APP0
// JFIF one.
const (
	noAdobe         = iota
	adobeTransform0 // RGB or CMYK
	adobeTransform2 // YCCK
)

// flatJPEG writes a JPEG of flat grey blocks: DC differences and AC
// coefficients all zero, each coded as a one-bit Huffman code, so that
// any frame layout takes a few lines.
func flatJPEG(s jpegSpec) []byte {
	var b bytes.Buffer
	seg := func(m byte, data []byte) {
		b.Write([]byte{0xff, m, byte((len(data) + 2) >> 8), byte(len(data) + 2)})
		b.Write(data)
	}
	b.Write([]byte{0xff, 0xd8})
	switch s.adobe {
	case noAdobe:
		seg(0xe0, []byte("JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"))
	case adobeTransform0:
		seg(0xee, []byte("Adobe\x00\x64\x00\x00\x00\x00\x00"))
	case adobeTransform2:
		seg(0xee, []byte("Adobe\x00\x64\x00\x00\x00\x00\x02"))
	}
	seg(0xdb, append([]byte{0}, bytes.Repeat([]byte{1}, 64)...))
	sof := []byte{8, byte(s.h >> 8), byte(s.h), byte(s.w >> 8), byte(s.w), byte(len(s.comps))}
	maxH, maxV := 1, 1
	for _, c := range s.comps {
		sof = append(sof, byte(c.id), byte(c.h<<4|c.v), 0)
		maxH, maxV = max(maxH, c.h), max(maxV, c.v)
	}
	if s.progressive {
		seg(0xc2, sof)
	} else {
		seg(0xc0, sof)
	}
	// DC table 0 and AC table 0: one code, "0", for symbol 0 (a zero DC
	// difference; end of block).
	one := append([]byte{1}, make([]byte, 15)...)
	dht := append(append([]byte{0x00}, one...), 0)
	dht = append(append(append(dht, 0x10), one...), 0)
	seg(0xc4, dht)

	// Blocks in a scan: interleaved scans go by MCU, a one-component scan
	// by the component's own blocks.
	own := func(c jpegComp) int { return ceil(ceil(s.w*c.h, maxH), 8) * ceil(ceil(s.h*c.v, maxV), 8) }
	interleaved := own(s.comps[0])
	if len(s.comps) > 1 {
		interleaved = 0
		for _, c := range s.comps {
			interleaved += c.h * c.v * ceil(s.w, 8*maxH) * ceil(s.h, 8*maxV)
		}
	}
	scan := func(comps []jpegComp, ss, se byte, bits int) {
		sos := []byte{byte(len(comps))}
		for _, c := range comps {
			sos = append(sos, byte(c.id), 0x00)
		}
		seg(0xda, append(sos, ss, se, 0))
		data := make([]byte, ceil(bits, 8))
		if r := bits % 8; r != 0 {
			data[len(data)-1] = 0xff >> r // pad with 1 bits
		}
		b.Write(data)
	}
	switch {
	case s.progressive:
		scan(s.comps, 0, 0, interleaved)
		for _, c := range s.comps {
			scan([]jpegComp{c}, 1, 63, own(c))
		}
	case s.scanPerComp:
		for _, c := range s.comps {
			scan([]jpegComp{c}, 0, 63, 2*own(c))
		}
	default:
		scan(s.comps, 0, 63, 2*interleaved)
	}
	if s.junk {
		// More than libjpeg-turbo's bit buffer swallows unseen.
		b.Write(bytes.Repeat([]byte{0x12}, 64))
	}
	b.Write([]byte{0xff, 0xd9})
	return b.Bytes()
}

func ceil(a, b int) int { return (a + b - 1) / b }
