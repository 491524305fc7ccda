package preprocess

import "image"

// Large JPEGs are decoded by libjpeg-turbo into their component planes,
// before chroma upsampling and colour conversion, which the row source
// then does for the rows the resize reads, with libjpeg's arithmetic
// (jpegcolor.go): the rows are the same bytes as from libjpeg-turbo's
// packed RGB, and the decode buffer shrinks from 3 bytes per pixel to 1.5
// for 4:2:0 (2 for 4:2:2 and 4:4:0, 1 for grey). Smaller JPEGs keep the
// packed RGB decode, where libjpeg-turbo's SIMD conversion is faster
// than the row source's and the buffer comes from the pool anyway.

// Chroma subsampling as TurboJPEG reports it (TJSAMP_*), and tjSampRGB
// for JPEGs whose components are not YCbCr or grey, which only the packed
// RGB decode takes.
const (
	tjSampRGB  = -1
	tjSamp444  = 0
	tjSamp422  = 1
	tjSamp420  = 2
	tjSampGray = 3
	tjSamp440  = 4
	tjSamp411  = 5
)

// tjMCU is TurboJPEG's tjMCUWidth and tjMCUHeight per subsampling.
var tjMCU = [6]struct{ w, h int }{{8, 8}, {16, 8}, {16, 16}, {8, 8}, {8, 16}, {32, 8}}

// planarMinPixels is the size from which JPEGs are decoded to planes:
// the largest decode buffer the scratch pool keeps (maxPooledDecode), so
// images that allocate a buffer of their own allocate the small one.
const planarMinPixels = maxPooledDecode / 3

// planeLayout is where a planar decode puts its planes in one buffer:
// luma (or grey) yw x yh, then for YCbCr two chroma planes cw x ch, each
// row after row with no padding. The sizes are TurboJPEG's
// (tjPlaneWidth, tjPlaneHeight): luma padded to whole chroma samples.
type planeLayout struct {
	samp   int
	yw, yh int
	cw, ch int
}

// usePlanes reports whether Process decodes a w x h JPEG of subsampling
// samp at scale m/8 to planes, and how they are laid out. Not 4:4:4,
// whose planes are no smaller than packed RGB, and not with DCT scaling,
// where libjpeg-turbo upsamples chroma in the IDCT instead.
func (p *Preprocessor) usePlanes(w, h, samp, m int) (planeLayout, bool) {
	if m != 8 || samp == tjSampRGB || samp == tjSamp444 || samp >= len(tjMCU) || int64(w)*int64(h) < p.planesMin {
		return planeLayout{}, false
	}
	mcu := tjMCU[samp]
	hf, vf := mcu.w/8, mcu.h/8 // luma samples per chroma sample
	l := planeLayout{samp: samp, yw: (w + hf - 1) / hf * hf, yh: (h + vf - 1) / vf * vf}
	if samp != tjSampGray {
		l.cw, l.ch = l.yw/hf, l.yh/vf
	}
	return l, true
}

// size is the buffer the planes take.
func (l *planeLayout) size() int { return l.yw*l.yh + 2*l.cw*l.ch }

// split returns the planes in buf; u and v are nil for grey.
func (l *planeLayout) split(buf []byte) (y, u, v []byte) {
	n, c := l.yw*l.yh, l.cw*l.ch
	y = buf[:n:n]
	if c > 0 {
		u, v = buf[n:n+c:n+c], buf[n+c:n+2*c]
	}
	return y, u, v
}

// rows returns a row source for a w x h image decoded into buf, kept in
// s so that the call does not allocate.
func (l *planeLayout) rows(buf []byte, w, h int, s *scratch) rowSource {
	y, u, v := l.split(buf)
	if l.samp == tjSampGray {
		s.grayRows = grayRows{pix: y, stride: l.yw}
		return &s.grayRows
	}
	var ratio image.YCbCrSubsampleRatio
	switch l.samp {
	case tjSamp422:
		ratio = image.YCbCrSubsampleRatio422
	case tjSamp420:
		ratio = image.YCbCrSubsampleRatio420
	case tjSamp440:
		ratio = image.YCbCrSubsampleRatio440
	case tjSamp411:
		ratio = image.YCbCrSubsampleRatio411
	}
	s.yccRows.init(y, u, v, l.yw, l.cw, w, h, ratio)
	return &s.yccRows
}
