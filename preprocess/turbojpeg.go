//go:build cgo && !nojpegturbo

package preprocess

/*
#cgo LDFLAGS: -lturbojpeg
#include <turbojpeg.h>

// decodePlanes is tjDecompressToYUVPlanes with the plane pointers as
// arguments: cgo may not pass Go memory that holds Go pointers.
static int decodePlanes(tjhandle h, const unsigned char *jpeg, unsigned long size,
		unsigned char *y, unsigned char *u, unsigned char *v,
		int ystride, int cstride, int width, int height, int flags) {
	unsigned char *planes[3] = {y, u, v};
	int strides[3] = {ystride, cstride, cstride};
	return tjDecompressToYUVPlanes(h, jpeg, size, planes, width, strides, height, flags);
}
*/
import "C"

import (
	"runtime"
	"sync"
	"unsafe"
)

// JPEGs are decoded with libjpeg-turbo through its TurboJPEG API: it is
// what PIL decodes with (same islow IDCT, fancy upsampling and colour
// conversion, so full-scale rows match PIL's exactly) and several times
// faster than image/jpeg. Build with -tags nojpegturbo, or CGO_ENABLED=0,
// for the pure-Go decoder (turbojpeg_off.go).

// turboJPEG reports whether this build decodes JPEGs with libjpeg-turbo.
const turboJPEG = true

// JPEGDecoder names the JPEG decoder this build uses, for a startup log
// line: "libjpeg-turbo", or "image/jpeg" in builds without cgo or with
// -tags nojpegturbo (several times slower). CMYK and YCCK JPEGs, and files
// libjpeg-turbo refuses, take image/jpeg either way.
func JPEGDecoder() string { return "libjpeg-turbo" }

// tjDecoder owns one tjhandle. Handles are not safe for concurrent use, so
// they live in a pool, one per goroutine at a time; a cleanup destroys
// the handle when the pool drops its decoder.
type tjDecoder struct {
	h C.tjhandle
	// hdr receives tjDecompressHeader3's outputs: width, height,
	// subsampling, colour space. Out parameters on the stack would escape
	// to the heap on every call, as the address goes to C.
	hdr [4]C.int
}

var tjPool = sync.Pool{New: func() any {
	h := C.tjInitDecompress()
	if h == nil {
		return (*tjDecoder)(nil)
	}
	d := &tjDecoder{h: h}
	runtime.AddCleanup(d, func(h C.tjhandle) { C.tjDestroy(h) }, h)
	return d
}}

// getTJ returns a pooled decoder, nil if libjpeg-turbo cannot make one.
func getTJ() *tjDecoder {
	d, _ := tjPool.Get().(*tjDecoder)
	return d
}

func putTJ(d *tjDecoder) {
	if d != nil {
		tjPool.Put(d)
	}
}

// tjHeader reads the image size, subsampling and colour space from the
// JPEG header. samp is a tjSamp* constant: tjSampRGB for RGB JPEGs, which
// only decodeTurbo takes. ok is false when libjpeg-turbo cannot read the
// header or the image is not one it should decode here (CMYK and YCCK,
// which PIL converts with its own formula): the caller then uses the Go
// decoder, which also words the error for bad files.
func tjHeader(d *tjDecoder, img []byte) (w, h, samp int, ok bool) {
	o := &d.hdr
	// tjDecompressHeader3 succeeds without writing its outputs for a
	// tables-only stream (such as "\xff\xd8\xff"): clear what the last
	// image on this handle left.
	*o = [4]C.int{}
	r := C.tjDecompressHeader3(d.h, (*C.uchar)(unsafe.Pointer(unsafe.SliceData(img))), C.ulong(len(img)), &o[0], &o[1], &o[2], &o[3])
	cw, ch, cs := o[0], o[1], o[3]
	if r != 0 || cw <= 0 || ch <= 0 {
		return 0, 0, 0, false
	}
	switch cs {
	case C.TJCS_RGB:
		return int(cw), int(ch), tjSampRGB, true
	case C.TJCS_YCbCr, C.TJCS_GRAY:
		switch o[2] {
		case C.TJSAMP_444:
			samp = tjSamp444
		case C.TJSAMP_422:
			samp = tjSamp422
		case C.TJSAMP_420:
			samp = tjSamp420
		case C.TJSAMP_GRAY:
			samp = tjSampGray
		case C.TJSAMP_440:
			samp = tjSamp440
		case C.TJSAMP_411:
			samp = tjSamp411
		default:
			samp = tjSampRGB
		}
		return int(cw), int(ch), samp, true
	}
	return 0, 0, 0, false
}

// decodeTurbo decodes a JPEG into packed RGB at the scale m/8 (m in 1..8)
// into dst, which must hold 3*tjScaled(w, m)*tjScaled(h, m) bytes. It
// returns false for anything libjpeg-turbo reports, warnings included
// (corrupt or truncated data), so that the Go decoder decides those
// files as before.
func decodeTurbo(d *tjDecoder, img []byte, dst []byte, w, h, m int) bool {
	sw, sh := tjScaled(w, m), tjScaled(h, m)
	if len(dst) < 3*sw*sh {
		return false
	}
	// Go memory is passed for the duration of the call only; neither
	// buffer holds Go pointers, and libjpeg-turbo keeps neither.
	r := C.tjDecompress2(d.h,
		(*C.uchar)(unsafe.Pointer(unsafe.SliceData(img))), C.ulong(len(img)),
		(*C.uchar)(unsafe.Pointer(unsafe.SliceData(dst))),
		C.int(sw), C.int(3*sw), C.int(sh), C.TJPF_RGB,
		C.TJFLAG_ACCURATEDCT|C.TJFLAG_STOPONWARNING|C.TJFLAG_LIMITSCANS)
	return r == 0
}

// decodeTurboPlanes decodes a w x h JPEG at full scale into the planes
// l lays out in buf (l.size() bytes): the IDCT's output, which
// decodeTurbo would upsample and convert to RGB. Like decodeTurbo, it
// returns false for anything libjpeg-turbo reports.
func decodeTurboPlanes(d *tjDecoder, img, buf []byte, l *planeLayout, w, h int) bool {
	if len(buf) < l.size() {
		return false
	}
	y, u, v := l.split(buf)
	ptr := func(b []byte) *C.uchar {
		if b == nil {
			return nil
		}
		return (*C.uchar)(unsafe.Pointer(unsafe.SliceData(b)))
	}
	r := C.decodePlanes(d.h, ptr(img), C.ulong(len(img)), ptr(y), ptr(u), ptr(v),
		C.int(l.yw), C.int(l.cw), C.int(w), C.int(h),
		C.TJFLAG_ACCURATEDCT|C.TJFLAG_STOPONWARNING|C.TJFLAG_LIMITSCANS)
	return r == 0
}
