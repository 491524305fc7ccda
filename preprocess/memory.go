package preprocess

import (
	"bytes"
	"encoding/binary"
	"math"
)

// ProcessMemory returns an upper bound on the bytes that Process(img, dst)
// holds at once for img, read from the image header alone: a caller with
// a memory budget reserves that much before calling Process, and answers
// without decoding when the reservation fails. It parses markers and
// chunk headers, never pixel data, and allocates a few kilobytes.
//
// The bound follows the path Process will take and counts what that path
// allocates:
//
//   - JPEGs that libjpeg-turbo decodes: its output buffer, packed RGB (3
//     bytes per pixel of the decoded size, after DCT scaling) or, above
//     16.7 megapixels, the component planes (1.5 bytes per pixel for
//     4:2:0, 2 for 4:2:2 and 4:4:0, 1 for grey); and libjpeg-turbo's own
//     C memory: for progressive JPEGs (and sequential ones coded in
//     several scans) its whole-image coefficient buffer, 2 bytes per
//     pixel per full-resolution component, plus row buffers of a few
//     dozen bytes per column. libjpeg-turbo refuses a corrupt file only
//     after decoding it, and Process then decodes it again with
//     image/jpeg while the output buffer is still held, so the bound is
//     the larger of the two attempts: often twice what a good file takes.
//   - JPEGs that image/jpeg decodes (CMYK, YCCK, anything libjpeg-turbo
//     refuses, every JPEG under -tags nojpegturbo): the component planes
//     padded to whole MCUs (1 byte per sample), for progressive JPEGs the
//     coefficients image/jpeg keeps for every block (a [64]int32, 4 bytes
//     per pixel per full-resolution component), and the 4-byte-per-pixel
//     copy it makes of CMYK, YCCK and RGB JPEGs.
//   - PNGs: the image as image/png returns it (1 byte per pixel for grey
//     and paletted, 2 for 16-bit grey, 4 for 8-bit colour or any alpha or
//     tRNS, 8 for 16-bit colour), two rows of filter buffers, and for
//     interlaced PNGs each pass's own image as well (twice the image).
//   - The resize: the horizontally resized rows (3*Size bytes, or
//     12*Size for ResampleFloat, per source row the crop reads) and the
//     filter weights. They are pooled and cached, so a warm Preprocessor
//     often allocates none of them; the bound assumes a cold one.
//   - A fixed allowance for the decoders' state and Go's size classes.
//
// The bytes are the Go heap's (what runtime.MemStats.TotalAlloc grows by
// during the call) and libjpeg-turbo's mallocs, except garbage that is
// never live together with the rest: compress/flate makes new Huffman
// tables for every deflate block of a PNG (a few MB over a large file,
// under 100 KB at a time). That, and garbage from earlier requests,
// is the garbage collector's headroom (GOGC, GOMEMLIMIT), not the
// budget's. Worst cases per pixel are in Config.MaxPixels.
//
// Errors are Process's for the same bytes: an *httperr.Error with status
// 415 wrapping ErrNotImage (empty or unknown format, bad header, zero
// size) or ErrTooLarge (more than MaxPixels), with the same message. A
// nil error does not promise that Process succeeds: a header can be
// followed by corrupt data.
func (p *Preprocessor) ProcessMemory(img []byte) (int64, error) {
	if turboJPEG && isJPEG(img) {
		if n, ok, err := p.turboMemory(img); ok {
			return n, err
		}
	}
	f, cfg, err := p.decodeConfig(bytes.NewReader(img), img)
	if err != nil {
		return 0, err
	}
	return p.stdMemory(img, f, cfg.Width, cfg.Height), nil
}

// Fixed allowances: the decoders' structures (image/jpeg's is 14 KB with
// its Huffman tables, and Process makes two, one for DecodeConfig), zlib's
// window and one deflate block's Huffman tables (under 150 KB), the row
// source, the pooled scratch and decoder handle, and for libjpeg-turbo
// its tables and small pools (~30 KB measured; TestProcessMemoryBound).
// Measured needs are 20-60 KB on the Go side for tiny images.
const (
	stdFixed      = 160 << 10
	turboGoFixed  = 16 << 10
	turboCFixed   = 256 << 10
	pngInflateFix = 256 << 10
)

// turboMemory is ProcessMemory for JPEGs when libjpeg-turbo is built in.
// ok is false when processTurbo would leave the image to decode: not a
// JPEG libjpeg-turbo takes (CMYK, YCCK, a header it cannot read).
func (p *Preprocessor) turboMemory(img []byte) (n int64, ok bool, err error) {
	d := getTJ()
	if d == nil {
		return 0, false, nil
	}
	w, h, samp, ok := tjHeader(d, img)
	putTJ(d)
	if !ok {
		return 0, false, nil
	}
	if err := p.checkPixels(w, h); err != nil {
		return 0, true, err
	}
	m := p.jpegScale(w, h)
	sw, sh := tjScaled(w, m), tjScaled(h, m)
	outBytes := 3 * int64(sw) * int64(sh)
	if l, ok := p.usePlanes(w, h, samp, m); ok {
		outBytes = int64(l.size())
	}
	j, parsed := parseJPEG(img)
	if !parsed || j.width != w || j.height != h || (j.nComp != 1 && j.nComp != 3) {
		// libjpeg-turbo read a header this parser did not: assume the
		// most expensive one libjpeg-turbo decodes at this size.
		j = jpegInfo{sof: 0xc2, width: w, height: h, nComp: 3}
		for i := range 3 {
			j.comp[i] = jpegComp{id: i + 1, h: 1, v: 1}
		}
	}
	out := heapBytes(outBytes)
	turbo := turboCMemory(&j, sw, sh) + p.resampleMemory(sw, sh, w, h) + turboGoFixed
	// libjpeg-turbo's memory is freed before the fallback decodes.
	fallback := p.jpegStdMemory(&j) + p.resampleMemory(w, h, w, h)
	return out + max(turbo, fallback), true, nil
}

// stdMemory is ProcessMemory for the std decoders, for a header that
// decodeConfig accepted as w x h.
func (p *Preprocessor) stdMemory(img []byte, f *stdFormat, w, h int) int64 {
	var n int64
	switch f {
	case jpegFormat:
		j, ok := parseJPEG(img)
		if !ok || j.width != w || j.height != h {
			// image/jpeg read a header this parser did not: assume the
			// most expensive layout, progressive CMYK, padded to the
			// largest MCU (32x16).
			j = jpegInfo{sof: 0xc2, width: w + 31, height: h + 15, nComp: 4}
			for i := range 4 {
				j.comp[i] = jpegComp{id: i + 1, h: 1, v: 1}
			}
		}
		n = p.jpegStdMemory(&j)
	case pngFormat:
		pi, ok := parsePNG(img)
		if !ok || pi.width != w || pi.height != h {
			pi = pngInfo{width: w, height: h, depth: 16, colorType: 6, interlaced: true}
		}
		n = pngMemory(&pi)
	}
	return n + p.resampleMemory(w, h, w, h)
}

// heapBytes is what the Go heap takes for an n-byte allocation: large
// objects get whole 8 KiB pages, small ones a size class at most 1/8
// larger.
func heapBytes(n int64) int64 {
	if n > 32<<10 {
		return (n + 8191) &^ 8191
	}
	return n + n/8 + 16
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// resampleMemory bounds what resample allocates for an sw x sh source
// that stands for a w x h image: the scratch rows and the two axes'
// weights.
func (p *Preprocessor) resampleMemory(sw, sh, w, h int) int64 {
	size := int64(p.cfg.Size)
	ow, oh := resizedSize(w, h, p.cfg.Resize)
	spanX, kx := spanBound(sw, ow, p.cfg.Size)
	spanY, ky := spanBound(sh, oh, p.cfg.Size)
	stride := 3 * size
	n := heapBytes(3*spanX) + weightsBytes(size, kx) + weightsBytes(size, ky)
	if p.cfg.Resample == ResampleFloat {
		return n + heapBytes(4*spanY*stride) + heapBytes(4*stride)
	}
	return n + heapBytes(spanY*stride) + 2*heapBytes(4*stride)
}

// spanBound bounds the input pixels [lo, hi) that computeWeights' n
// output pixels read when in pixels are resized to out, and returns the
// taps per output pixel.
func spanBound(in, out, n int) (span, ksize int64) {
	scale := float64(in) / float64(out)
	ksize = 2*int64(math.Ceil(max(scale, 1))) + 1
	// Windows start within support of their centres, which are scale
	// apart, and windows slid left at the right edge stay ksize long.
	span = int64(math.Ceil(float64(n-1)*scale)) + ksize + 2
	return min(span, int64(in)), ksize
}

// weightsBytes is computeWeights' allocation for n outputs of k taps.
func weightsBytes(n, k int64) int64 {
	return 2*heapBytes(4*n) + 2*heapBytes(4*n*k) + heapBytes(8*k) + 256
}

// jpegComp is one component of a JPEG frame: its identifier and sampling
// factors.
type jpegComp struct{ id, h, v int }

// jpegInfo is what the memory bound needs from a JPEG's markers.
type jpegInfo struct {
	sof           byte // the first SOFn marker: 0xc0 baseline, 0xc2 progressive, ...
	width, height int
	nComp         int
	comp          [4]jpegComp
	scanComps     int  // components in the first scan
	jfif          bool // a JFIF APP0 before the first scan
	adobeRGB      bool // an Adobe APP14 with transform 0 (RGB or CMYK), anywhere
	eoi           bool // the walk reached EOI
}

// parseJPEG walks a JPEG's markers the way image/jpeg does (skipping
// bytes that are not markers, fill bytes and RSTn) through the whole
// file, entropy-coded data included, since image/jpeg heeds APP14 markers
// wherever they are. ok is false without a SOF that image/jpeg or
// libjpeg-turbo could take (1, 3 or 4 components, sampling factors 1..4).
func parseJPEG(b []byte) (j jpegInfo, ok bool) {
	sawSOS := false
	i := 2 // past SOI
	for i < len(b) {
		k := bytes.IndexByte(b[i:], 0xff)
		if k < 0 {
			break
		}
		i += k + 1
		for i < len(b) && b[i] == 0xff {
			i++
		}
		if i >= len(b) {
			break
		}
		m := b[i]
		i++
		switch {
		case m == 0x00, 0xd0 <= m && m <= 0xd7, m == 0x01, m == 0xd8:
			// A stuffed 0xff in entropy-coded data, RSTn, TEM, SOI: no
			// length follows.
			continue
		case m == 0xd9:
			j.eoi = true
			return j, j.nComp > 0
		}
		if i+2 > len(b) {
			break
		}
		n := int(b[i])<<8 | int(b[i+1])
		if n < 2 {
			break
		}
		seg := b[i+2 : min(i+n, len(b))]
		i += n
		switch m {
		case 0xc0, 0xc1, 0xc2, 0xc3, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb, 0xcd, 0xce, 0xcf:
			// The first SOF counts: both decoders refuse a second one.
			if j.nComp == 0 && !j.parseSOF(m, seg) {
				return j, false
			}
		case 0xda: // SOS
			if !sawSOS && len(seg) > 0 {
				j.scanComps = int(seg[0])
			}
			sawSOS = true
		case 0xe0: // APP0
			if !sawSOS && len(seg) >= 5 && string(seg[:5]) == "JFIF\x00" {
				j.jfif = true
			}
		case 0xee: // APP14
			if len(seg) >= 12 && string(seg[:5]) == "Adobe" && seg[11] == 0 {
				j.adobeRGB = true
			}
		}
	}
	return j, j.nComp > 0
}

func (j *jpegInfo) parseSOF(m byte, seg []byte) bool {
	if len(seg) < 6 {
		return false
	}
	nf := int(seg[5])
	if nf != 1 && nf != 3 && nf != 4 || len(seg) < 6+3*nf {
		return false
	}
	j.sof = m
	j.height = int(binary.BigEndian.Uint16(seg[1:]))
	j.width = int(binary.BigEndian.Uint16(seg[3:]))
	for i := range nf {
		c := seg[6+3*i:]
		h, v := int(c[1]>>4), int(c[1]&15)
		if h < 1 || h > 4 || v < 1 || v > 4 {
			return false
		}
		j.comp[i] = jpegComp{id: int(c[0]), h: h, v: v}
	}
	j.nComp = nf
	return true
}

// rgbCopy reports whether image/jpeg may convert the image into a new
// 4-byte-per-pixel one: CMYK and YCCK always, three components when they
// may be RGB (no JFIF APP0, and an Adobe transform 0 or components named
// R, G, B; or a walk that lost its way).
func (j *jpegInfo) rgbCopy() bool {
	if j.nComp == 4 {
		return true
	}
	if j.nComp != 3 || j.jfif {
		return false
	}
	c := &j.comp
	return j.adobeRGB || !j.eoi || c[0].id == 'R' && c[1].id == 'G' && c[2].id == 'B'
}

// jpegStdMemory bounds what image/jpeg allocates for j (see decoder.makeImg
// and processSOS in image/jpeg), plus Process's fixed costs.
func (p *Preprocessor) jpegStdMemory(j *jpegInfo) int64 {
	if j.sof != 0xc0 && j.sof != 0xc1 && j.sof != 0xc2 {
		return stdFixed // image/jpeg stops at the SOF marker
	}
	w, h := int64(j.width), int64(j.height)
	prog := j.sof == 0xc2
	n := int64(stdFixed)
	if j.nComp == 1 {
		// One component is decoded as 1x1 sampled whatever it says.
		blocks := ceilDiv(w, 8) * ceilDiv(h, 8)
		n += heapBytes(64 * blocks)
		if prog {
			n += heapBytes(256 * blocks)
		}
		return n
	}
	h0, v0 := int64(j.comp[0].h), int64(j.comp[0].v)
	mxx, myy := ceilDiv(w, 8*h0), ceilDiv(h, 8*v0)
	yw, yh := 8*h0*mxx, 8*v0*myy
	hr, vr := ratio(j.comp[0].h, j.comp[1].h), ratio(j.comp[0].v, j.comp[1].v)
	n += heapBytes(yw*yh) + 2*heapBytes(ceilDiv(yw, hr)*ceilDiv(yh, vr))
	if j.nComp == 4 {
		n += heapBytes(64 * int64(j.comp[3].h*j.comp[3].v) * mxx * myy)
	}
	if prog {
		for _, c := range j.comp[:j.nComp] {
			n += heapBytes(256 * int64(c.h*c.v) * mxx * myy)
		}
	}
	if j.rgbCopy() {
		n += heapBytes(4 * w * h)
	}
	return n
}

// ratio is a luma to chroma sampling ratio, 1 where image/jpeg refuses
// the pair (the largest chroma planes).
func ratio(luma, chroma int) int64 {
	if chroma < 1 || luma%chroma != 0 {
		return 1
	}
	return int64(luma / chroma)
}

// turboCMemory bounds what libjpeg-turbo 2.1 mallocs while tjDecompress2
// decodes j to sw x sh packed RGB: the whole-image coefficient buffer for
// multi-scan files (jdcoefct.c), the main and upsampling row buffers
// (jdmainct.c, jdsample.c; at most 16 rows per sampling factor at any
// DCT scale), the row pointers (turbojpeg.c), tables and pools.
func turboCMemory(j *jpegInfo, sw, sh int) int64 {
	maxH, maxV := 1, 1
	for _, c := range j.comp[:j.nComp] {
		maxH, maxV = max(maxH, c.h), max(maxV, c.v)
	}
	w, h := int64(j.width), int64(j.height)
	multiScan := j.sof == 0xc2 || j.sof == 0xca || j.scanComps < j.nComp
	pad32 := func(n int64) int64 { return (n + 31) &^ 31 }
	n := int64(turboCFixed) + 8*int64(sh)
	for _, c := range j.comp[:j.nComp] {
		ch, cv := int64(c.h), int64(c.v)
		wib := ceilDiv(w*ch, int64(maxH)*8)
		hib := ceilDiv(h*cv, int64(maxV)*8)
		n += pad32(8*wib) * 16 * cv
		n += pad32(ceilDiv(int64(sw), int64(maxH))*int64(maxH)) * int64(maxV)
		if multiScan {
			n += ceilDiv(wib, ch) * ch * ceilDiv(hib, cv) * cv * 128
		}
	}
	return n
}

// pngInfo is what the memory bound needs from a PNG's chunks.
type pngInfo struct {
	width, height    int
	depth, colorType byte
	interlaced       bool
	trns             bool // a tRNS chunk before the first IDAT
}

// parsePNG reads IHDR and the chunk headers up to the first IDAT. ok is
// false without an IHDR.
func parsePNG(b []byte) (pi pngInfo, ok bool) {
	const ihdrEnd = 8 + 8 + 13
	if len(b) < ihdrEnd || string(b[12:16]) != "IHDR" || binary.BigEndian.Uint32(b[8:]) != 13 {
		return pi, false
	}
	d := b[16:ihdrEnd]
	pi.width = int(binary.BigEndian.Uint32(d[0:]))
	pi.height = int(binary.BigEndian.Uint32(d[4:]))
	pi.depth, pi.colorType, pi.interlaced = d[8], d[9], d[12] == 1
	for i := int64(ihdrEnd + 4); i+8 <= int64(len(b)); {
		n := int64(binary.BigEndian.Uint32(b[i:]))
		switch string(b[i+4 : i+8]) {
		case "IDAT":
			return pi, true
		case "tRNS":
			pi.trns = true
		}
		i += 12 + n
	}
	return pi, true
}

// layout returns the bytes per pixel of the image image/png returns and
// the bits per pixel of its filtered rows.
func (pi *pngInfo) layout() (bpp, bits int64) {
	d := int64(pi.depth)
	wide := d == 16
	switch pi.colorType {
	case 0: // grey: Gray, Gray16, or NRGBA(64) with tRNS
		switch {
		case pi.trns && wide:
			return 8, d
		case pi.trns:
			return 4, d
		case wide:
			return 2, d
		}
		return 1, d
	case 2: // RGB: RGBA(64), or NRGBA(64) with tRNS
		if wide {
			return 8, 3 * d
		}
		return 4, 3 * d
	case 3: // paletted
		return 1, d
	case 4: // grey + alpha: NRGBA(64)
		if wide {
			return 8, 2 * d
		}
		return 4, 2 * d
	case 6: // RGBA: NRGBA(64)
		if wide {
			return 8, 4 * d
		}
		return 4, 4 * d
	}
	return 8, 64
}

// adam7 is the PNG interlace passes' offsets and steps.
var adam7 = [7]struct{ x0, y0, dx, dy int64 }{
	{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4}, {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2},
}

// pngMemory bounds what image/png allocates for pi (readImagePass), plus
// Process's fixed costs.
func pngMemory(pi *pngInfo) int64 {
	bpp, bits := pi.layout()
	w, h := int64(pi.width), int64(pi.height)
	rows := func(w int64) int64 { return 2 * heapBytes(1+(bits*w+7)/8) }
	n := int64(stdFixed+pngInflateFix) + heapBytes(bpp*w*h)
	if !pi.interlaced {
		return n + rows(w)
	}
	for _, a := range adam7 {
		pw, ph := ceilDiv(w-a.x0, a.dx), ceilDiv(h-a.y0, a.dy)
		if pw > 0 && ph > 0 {
			n += heapBytes(bpp*pw*ph) + rows(pw)
		}
	}
	return n
}
