package preprocess

import "image"

// JPEG colour handling that follows libjpeg(-turbo), which PIL decodes
// with, rather than Go's image/color: chroma planes are upsampled with
// libjpeg's default "fancy" (triangle) upsampling instead of being
// replicated, and YCbCr is converted to RGB with libjpeg's fixed-point
// tables (jdcolor.c). What remains different from PIL is the IDCT
// (Go's image/jpeg uses another integer IDCT than libjpeg's islow), which
// moves a few samples by one level.

// yccTables are jdcolor.c's build_ycc_rgb_table for 8-bit samples.
var yccTables = func() (t struct{ crR, cbB, crG, cbG [256]int32 }) {
	fix := func(x float64) int64 { return int64(x*(1<<16) + 0.5) }
	for i := range 256 {
		x := int64(i - 128)
		t.crR[i] = int32((fix(1.40200)*x + 1<<15) >> 16)
		t.cbB[i] = int32((fix(1.77200)*x + 1<<15) >> 16)
		t.crG[i] = int32(-fix(0.71414) * x)
		t.cbG[i] = int32(-fix(0.34414)*x + 1<<15)
	}
	return t
}()

// rangeLimit clamps v to 0..255 as rangeLimit[(v+rangeOff)&1023], like
// libjpeg's range_limit table; the mask keeps the index provably in range
// (YCbCr->RGB sums stay within -256..511).
const rangeOff = 384

var rangeLimit = func() (t [1024]byte) {
	for i := range t {
		t[i] = byte(min(max(i-rangeOff, 0), 255))
	}
	return t
}()

// yccToRGB writes one pixel into d[0:3]; small enough to be inlined.
func yccToRGB(d []byte, y, cb, cr byte) {
	yy := int32(y)
	d = d[:3]
	d[0] = rangeLimit[(yy+yccTables.crR[cr]+rangeOff)&1023]
	d[1] = rangeLimit[(yy+(yccTables.cbG[cb]+yccTables.crG[cr])>>16+rangeOff)&1023]
	d[2] = rangeLimit[(yy+yccTables.cbB[cb]+rangeOff)&1023]
}

// Chroma upsampling methods, as libjpeg's jinit_upsampler picks them.
const (
	upFull    = iota // 4:4:4, no upsampling
	upH2V1           // 4:2:2, h2v1_fancy_upsample
	upH2V2           // 4:2:0, h2v2_fancy_upsample
	upH1V2           // 4:4:0, h1v2_fancy_upsample
	upReplica        // box replication (int_upsample, h2v*_upsample)
)

type ycbcrRows struct {
	y, cb, cr        []byte
	ystride, cstride int
	cw, ch           int // chroma plane size (libjpeg's downsampled size)
	mode             int
	hdiv, vdiv       int // for upReplica
}

// newYCbCrRows returns nil for images not anchored at the origin (the JPEG
// decoder never makes them); the caller then uses the generic path.
func newYCbCrRows(m *image.YCbCr) *ycbcrRows {
	if m.Rect.Min != (image.Point{}) {
		return nil
	}
	s := new(ycbcrRows)
	if !s.init(m.Y, m.Cb, m.Cr, m.YStride, m.CStride, m.Rect.Dx(), m.Rect.Dy(), m.SubsampleRatio) {
		return nil
	}
	return s
}

// init sets s up for a w x h image with planes y, cb and cr; false for a
// subsampling ratio it does not know.
func (s *ycbcrRows) init(y, cb, cr []byte, ystride, cstride, w, h int, ratio image.YCbCrSubsampleRatio) bool {
	*s = ycbcrRows{y: y, cb: cb, cr: cr, ystride: ystride, cstride: cstride, hdiv: 1, vdiv: 1}
	switch ratio {
	case image.YCbCrSubsampleRatio444:
		s.mode = upFull
	case image.YCbCrSubsampleRatio422:
		s.hdiv = 2
		s.mode = upH2V1
	case image.YCbCrSubsampleRatio420:
		s.hdiv, s.vdiv = 2, 2
		s.mode = upH2V2
	case image.YCbCrSubsampleRatio440:
		s.vdiv = 2
		s.mode = upH1V2
	case image.YCbCrSubsampleRatio411:
		s.hdiv = 4
		s.mode = upReplica
	case image.YCbCrSubsampleRatio410:
		s.hdiv, s.vdiv = 4, 2
		s.mode = upReplica
	default:
		return false
	}
	s.cw = (w + s.hdiv - 1) / s.hdiv
	s.ch = (h + s.vdiv - 1) / s.vdiv
	// libjpeg uses the fancy h2 methods only for chroma wider than two
	// samples.
	if (s.mode == upH2V1 || s.mode == upH2V2) && s.cw <= 2 {
		s.mode = upReplica
	}
	return true
}

func (s *ycbcrRows) row(y, x0, x1 int, dst []byte) {
	yrow := s.y[y*s.ystride:]
	dst = dst[:3*(x1-x0)]
	switch s.mode {
	case upFull:
		cb, cr := s.cb[y*s.cstride:], s.cr[y*s.cstride:]
		for x := x0; x < x1; x++ {
			yccToRGB(dst[3*(x-x0):], yrow[x], cb[x], cr[x])
		}
	case upReplica:
		c := (y / s.vdiv) * s.cstride
		cb, cr := s.cb[c:], s.cr[c:]
		for x := x0; x < x1; x++ {
			cx := x / s.hdiv
			yccToRGB(dst[3*(x-x0):], yrow[x], cb[cx], cr[cx])
		}
	case upH2V1:
		cb, cr := s.cb[y*s.cstride:], s.cr[y*s.cstride:]
		last := s.cw - 1
		for x := x0; x < x1; x++ {
			cx := x >> 1
			var nb, bias int
			if x&1 == 0 {
				nb, bias = max(cx-1, 0), 1
			} else {
				nb, bias = min(cx+1, last), 2
			}
			u := (3*int(cb[cx]) + int(cb[nb]) + bias) >> 2
			v := (3*int(cr[cx]) + int(cr[nb]) + bias) >> 2
			yccToRGB(dst[3*(x-x0):], yrow[x], byte(u), byte(v))
		}
	case upH1V2:
		near, far, bias := s.vrows(y)
		cbn, cbf := s.cb[near:], s.cb[far:]
		crn, crf := s.cr[near:], s.cr[far:]
		for x := x0; x < x1; x++ {
			u := (3*int(cbn[x]) + int(cbf[x]) + bias) >> 2
			v := (3*int(crn[x]) + int(crf[x]) + bias) >> 2
			yccToRGB(dst[3*(x-x0):], yrow[x], byte(u), byte(v))
		}
	case upH2V2:
		near, far, _ := s.vrows(y)
		cbn, cbf := s.cb[near:near+s.cw], s.cb[far:far+s.cw]
		crn, crf := s.cr[near:near+s.cw], s.cr[far:far+s.cw]
		last := s.cw - 1
		// Column sums 3*near + far, rolled along so each chroma column is
		// summed once: prev, this and next around chroma column cx.
		cx := x0 >> 1
		p := max(cx-1, 0)
		prevB, prevR := 3*int(cbn[p])+int(cbf[p]), 3*int(crn[p])+int(crf[p])
		thisB, thisR := 3*int(cbn[cx])+int(cbf[cx]), 3*int(crn[cx])+int(crf[cx])
		for x := x0; x < x1; x++ {
			d := dst[3*(x-x0):]
			if x&1 == 0 {
				yccToRGB(d, yrow[x], byte((3*thisB+prevB+8)>>4), byte((3*thisR+prevR+8)>>4))
				continue
			}
			nx := min(cx+1, last)
			nextB, nextR := 3*int(cbn[nx])+int(cbf[nx]), 3*int(crn[nx])+int(crf[nx])
			yccToRGB(d, yrow[x], byte((3*thisB+nextB+7)>>4), byte((3*thisR+nextR+7)>>4))
			prevB, prevR, thisB, thisR = thisB, thisR, nextB, nextR
			cx++
		}
	}
}

// vrows returns the offsets of the nearer and further chroma rows for
// image row y under 2x vertical upsampling (edge rows are replicated, as
// libjpeg's context rows are), and h1v2's rounding bias.
func (s *ycbcrRows) vrows(y int) (near, far, bias int) {
	cy := y >> 1
	f := cy + 1
	bias = 2
	if y&1 == 0 {
		f, bias = cy-1, 1
	}
	f = min(max(f, 0), s.ch-1)
	return cy * s.cstride, f * s.cstride, bias
}
