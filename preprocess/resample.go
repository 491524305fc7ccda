package preprocess

import (
	"math"
	"sync"
)

// The resampling below reproduces Pillow's ImagingResample for 8-bit
// images with the BILINEAR filter (libImaging/Resample.c), which is what
// torchvision's Resize does on PIL images: a triangle filter whose support
// grows with the downscale factor (so downscaling antialiases), weights
// computed in double precision, normalised, converted to 22-bit fixed
// point, a horizontal pass rounded to uint8, then a vertical pass. Only the
// output pixels inside the centre crop are computed; each output pixel
// depends on its own weights alone, so the result is bit-identical to
// resizing the whole image and cropping afterwards.

// precisionBits is Pillow's PRECISION_BITS for 8-bit resampling.
const precisionBits = 32 - 8 - 2

// axisWeights holds the fixed-point filter taps for n consecutive output
// pixels along one axis.
type axisWeights struct {
	ksize int     // taps stored per output pixel
	first []int32 // first input pixel each output pixel reads
	count []int32 // number of input pixels each output pixel reads
	coef  []int32 // ksize coefficients per output pixel
	// fcoef holds the same taps as float32, normalised but not rounded to
	// fixed point, for ResampleFloat.
	fcoef []float32
}

// span returns the input pixels [lo, hi) that the weights read.
func (w *axisWeights) span() (lo, hi int) {
	n := len(w.first)
	return int(w.first[0]), int(w.first[n-1] + w.count[n-1])
}

func bilinearFilter(x float64) float64 {
	if x < 0 {
		x = -x
	}
	if x < 1 {
		return 1 - x
	}
	return 0
}

// computeWeights follows Pillow's precompute_coeffs and
// normalize_coeffs_8bpc for a resize from in to out pixels, keeping output
// pixels off..off+n-1. The order of the floating-point operations matters:
// it is Pillow's, so the rounded coefficients are Pillow's too.
func computeWeights(in, out, off, n int) *axisWeights {
	scale := float64(in) / float64(out)
	filterscale := scale
	if filterscale < 1 {
		filterscale = 1
	}
	support := 1.0 * filterscale // BILINEAR support is 1
	ksize := int(math.Ceil(support))*2 + 1
	w := &axisWeights{
		ksize: ksize,
		first: make([]int32, n),
		count: make([]int32, n),
		coef:  make([]int32, n*ksize),
		fcoef: make([]float32, n*ksize),
	}
	pre := make([]float64, ksize)
	ss := 1.0 / filterscale
	for i := range n {
		xx := off + i
		center := (float64(xx) + 0.5) * scale
		xmin := int(center - support + 0.5)
		if xmin < 0 {
			xmin = 0
		}
		xmax := int(center + support + 0.5)
		if xmax > in {
			xmax = in
		}
		xmax -= xmin
		ww := 0.0
		for x := range xmax {
			v := bilinearFilter((float64(x+xmin) - center + 0.5) * ss)
			pre[x] = v
			ww += v
		}
		k := w.coef[i*ksize : (i+1)*ksize]
		fk := w.fcoef[i*ksize : (i+1)*ksize]
		for x := range xmax {
			v := pre[x]
			if ww != 0 {
				v /= ww
			}
			// (int)(0.5 + v * (1 << PRECISION_BITS)); bilinear weights are
			// never negative, so Pillow's negative branch is not needed.
			k[x] = int32(0.5 + float64(v*(1<<precisionBits)))
			fk[x] = float32(v)
		}
		// Give every output pixel a window of exactly ksize taps when the
		// input is wide enough: windows at the right edge slide left and
		// get leading zero coefficients. Zero taps add nothing, so the
		// sums are unchanged, and the hot loop can be unrolled per ksize.
		if in >= ksize {
			nf := min(xmin, in-ksize)
			if sh := xmin - nf; sh > 0 {
				copy(k[sh:], k[:xmax])
				clear(k[:sh])
				copy(fk[sh:], fk[:xmax])
				clear(fk[:sh])
			}
			xmin, xmax = nf, ksize
		}
		w.first[i] = int32(xmin)
		w.count[i] = int32(xmax)
	}
	return w
}

// clip8 converts a fixed-point accumulator to a pixel like Pillow's clip8.
func clip8(v int32) byte {
	v >>= precisionBits
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return byte(v)
}

// resampleRow runs the horizontal pass for one row: src holds RGB pixels
// starting at input column x0, dst receives len(w.first) RGB pixels.
func (w *axisWeights) resampleRow(dst, src []byte, x0 int) {
	n := len(w.first)
	dst = dst[:3*n]
	const half = 1 << (precisionBits - 1)
	switch {
	// Unrolled for the window sizes of upscaling (3 taps) and downscaling
	// by up to 2x (5) or 3x (7): constant-length slices, no bounds checks
	// and no loop in the sums.
	case w.ksize == 3 && w.fixed():
		for i := range n {
			s := src[(int(w.first[i])-x0)*3:][:9]
			k := w.coef[i*3:][:3]
			k0, k1, k2 := k[0], k[1], k[2]
			d := dst[3*i:][:3]
			d[0] = clip8(half + int32(s[0])*k0 + int32(s[3])*k1 + int32(s[6])*k2)
			d[1] = clip8(half + int32(s[1])*k0 + int32(s[4])*k1 + int32(s[7])*k2)
			d[2] = clip8(half + int32(s[2])*k0 + int32(s[5])*k1 + int32(s[8])*k2)
		}
	case w.ksize == 5 && w.fixed():
		for i := range n {
			s := src[(int(w.first[i])-x0)*3:][:15]
			k := w.coef[i*5:][:5]
			k0, k1, k2, k3, k4 := k[0], k[1], k[2], k[3], k[4]
			d := dst[3*i:][:3]
			d[0] = clip8(half + int32(s[0])*k0 + int32(s[3])*k1 + int32(s[6])*k2 + int32(s[9])*k3 + int32(s[12])*k4)
			d[1] = clip8(half + int32(s[1])*k0 + int32(s[4])*k1 + int32(s[7])*k2 + int32(s[10])*k3 + int32(s[13])*k4)
			d[2] = clip8(half + int32(s[2])*k0 + int32(s[5])*k1 + int32(s[8])*k2 + int32(s[11])*k3 + int32(s[14])*k4)
		}
	case w.ksize == 7 && w.fixed():
		for i := range n {
			s := src[(int(w.first[i])-x0)*3:][:21]
			k := w.coef[i*7:][:7]
			k0, k1, k2, k3, k4, k5, k6 := k[0], k[1], k[2], k[3], k[4], k[5], k[6]
			d := dst[3*i:][:3]
			d[0] = clip8(half + int32(s[0])*k0 + int32(s[3])*k1 + int32(s[6])*k2 + int32(s[9])*k3 + int32(s[12])*k4 + int32(s[15])*k5 + int32(s[18])*k6)
			d[1] = clip8(half + int32(s[1])*k0 + int32(s[4])*k1 + int32(s[7])*k2 + int32(s[10])*k3 + int32(s[13])*k4 + int32(s[16])*k5 + int32(s[19])*k6)
			d[2] = clip8(half + int32(s[2])*k0 + int32(s[5])*k1 + int32(s[8])*k2 + int32(s[11])*k3 + int32(s[14])*k4 + int32(s[17])*k5 + int32(s[20])*k6)
		}
	default:
		ks := w.ksize
		for i := range n {
			f := (int(w.first[i]) - x0) * 3
			c := int(w.count[i])
			k := w.coef[i*ks : i*ks+c]
			s := src[f : f+3*c]
			r, g, b := int32(half), int32(half), int32(half)
			// Reslicing instead of indexing drops the bounds checks.
			for len(k) > 0 && len(s) >= 3 {
				kj := k[0]
				r += int32(s[0]) * kj
				g += int32(s[1]) * kj
				b += int32(s[2]) * kj
				k, s = k[1:], s[3:]
			}
			d := dst[3*i : 3*i+3]
			d[0], d[1], d[2] = clip8(r), clip8(g), clip8(b)
		}
	}
}

// fixed reports whether every output pixel has a full window of ksize
// taps (see computeWeights).
func (w *axisWeights) fixed() bool { return w.count[0] == int32(w.ksize) }

// resampleColumn runs the vertical pass for output row i: rows holds the
// horizontally resampled rows, stride bytes apart, starting at input row
// y0; dst receives one row of stride bytes. acc is scratch of stride
// elements.
func (w *axisWeights) resampleColumn(dst, rows []byte, stride, y0, i int, acc []int32) {
	const half = 1 << (precisionBits - 1)
	f := int(w.first[i]) - y0
	// Unrolled like resampleRow for full windows of 3, 5 or 7 taps: each
	// output byte is summed in a register, in the same order as the
	// general loop below (integer sums: the result is the same anyway).
	if w.fixed() {
		k := w.coef[i*w.ksize : (i+1)*w.ksize]
		dst = dst[:stride]
		switch w.ksize {
		case 3:
			r0 := rows[f*stride:][:stride]
			r1 := rows[(f+1)*stride:][:stride]
			r2 := rows[(f+2)*stride:][:stride]
			k0, k1, k2 := k[0], k[1], k[2]
			for j := range dst {
				dst[j] = clip8(half + int32(r0[j])*k0 + int32(r1[j])*k1 + int32(r2[j])*k2)
			}
			return
		case 5:
			r0 := rows[f*stride:][:stride]
			r1 := rows[(f+1)*stride:][:stride]
			r2 := rows[(f+2)*stride:][:stride]
			r3 := rows[(f+3)*stride:][:stride]
			r4 := rows[(f+4)*stride:][:stride]
			k0, k1, k2, k3, k4 := k[0], k[1], k[2], k[3], k[4]
			for j := range dst {
				dst[j] = clip8(half + int32(r0[j])*k0 + int32(r1[j])*k1 + int32(r2[j])*k2 + int32(r3[j])*k3 + int32(r4[j])*k4)
			}
			return
		case 7:
			r0 := rows[f*stride:][:stride]
			r1 := rows[(f+1)*stride:][:stride]
			r2 := rows[(f+2)*stride:][:stride]
			r3 := rows[(f+3)*stride:][:stride]
			r4 := rows[(f+4)*stride:][:stride]
			r5 := rows[(f+5)*stride:][:stride]
			r6 := rows[(f+6)*stride:][:stride]
			k0, k1, k2, k3, k4, k5, k6 := k[0], k[1], k[2], k[3], k[4], k[5], k[6]
			for j := range dst {
				dst[j] = clip8(half + int32(r0[j])*k0 + int32(r1[j])*k1 + int32(r2[j])*k2 + int32(r3[j])*k3 + int32(r4[j])*k4 + int32(r5[j])*k5 + int32(r6[j])*k6)
			}
			return
		}
	}
	acc = acc[:stride]
	for j := range acc {
		acc[j] = half
	}
	c := int(w.count[i])
	for t, kt := range w.coef[i*w.ksize : i*w.ksize+c] {
		if kt == 0 {
			continue // padding tap (see computeWeights)
		}
		row := rows[(f+t)*stride : (f+t+1)*stride]
		for j, p := range row {
			acc[j] += int32(p) * kt
		}
	}
	dst = dst[:stride]
	for j, a := range acc {
		dst[j] = clip8(a)
	}
}

// resampleRowFloat is resampleRow for ResampleFloat: float32 taps and
// sums, no rounding. dst receives len(w.first) RGB pixels as float32 on
// the 0..255 scale.
func (w *axisWeights) resampleRowFloat(dst []float32, src []byte, x0 int) {
	n := len(w.first)
	dst = dst[:3*n]
	ks := w.ksize
	if ks == 3 && w.fixed() {
		for i := range n {
			s := src[(int(w.first[i])-x0)*3:][:9]
			k := w.fcoef[i*3:][:3]
			k0, k1, k2 := k[0], k[1], k[2]
			d := dst[3*i:][:3]
			d[0] = float32(s[0])*k0 + float32(s[3])*k1 + float32(s[6])*k2
			d[1] = float32(s[1])*k0 + float32(s[4])*k1 + float32(s[7])*k2
			d[2] = float32(s[2])*k0 + float32(s[5])*k1 + float32(s[8])*k2
		}
		return
	}
	for i := range n {
		f := (int(w.first[i]) - x0) * 3
		c := int(w.count[i])
		k := w.fcoef[i*ks : i*ks+c]
		s := src[f : f+3*c]
		var r, g, b float32
		for len(k) > 0 && len(s) >= 3 {
			kj := k[0]
			r += float32(s[0]) * kj
			g += float32(s[1]) * kj
			b += float32(s[2]) * kj
			k, s = k[1:], s[3:]
		}
		d := dst[3*i : 3*i+3]
		d[0], d[1], d[2] = r, g, b
	}
}

// resampleColumnFloat is resampleColumn for ResampleFloat: rows holds
// float32 rows from resampleRowFloat, stride elements apart.
func (w *axisWeights) resampleColumnFloat(dst, rows []float32, stride, y0, i int) {
	f := int(w.first[i]) - y0
	dst = dst[:stride]
	c := int(w.count[i])
	k := w.fcoef[i*w.ksize : i*w.ksize+c]
	if len(k) == 3 {
		r0 := rows[f*stride:][:stride]
		r1 := rows[(f+1)*stride:][:stride]
		r2 := rows[(f+2)*stride:][:stride]
		k0, k1, k2 := k[0], k[1], k[2]
		for j := range dst {
			dst[j] = r0[j]*k0 + r1[j]*k1 + r2[j]*k2
		}
		return
	}
	clear(dst)
	for t, kt := range k {
		if kt == 0 {
			continue // padding tap (see computeWeights)
		}
		row := rows[(f+t)*stride : (f+t+1)*stride]
		for j, p := range row {
			dst[j] += p * kt
		}
	}
}

// maxCachedWeights bounds the weight cache: images of arbitrary sizes come
// from the network, and each size pair costs a few kilobytes.
const maxCachedWeights = 512

type weightKey struct{ in, out, off, n int }

// weightCache memoises axisWeights per (in, out) size pair. When it is full
// it is emptied and refilled by the sizes in use.
type weightCache struct {
	mu sync.RWMutex
	m  map[weightKey]*axisWeights
}

func (c *weightCache) get(in, out, off, n int) *axisWeights {
	key := weightKey{in, out, off, n}
	c.mu.RLock()
	w := c.m[key]
	c.mu.RUnlock()
	if w != nil {
		return w
	}
	w = computeWeights(in, out, off, n)
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCachedWeights {
		c.m = make(map[weightKey]*axisWeights)
	}
	c.m[key] = w
	c.mu.Unlock()
	return w
}

// resizedSize returns the size torchvision's Resize(resize) gives an image
// of w x h: the shorter side becomes resize, the longer one
// int(resize*long/short).
func resizedSize(w, h, resize int) (int, int) {
	if w <= h {
		return resize, int(int64(resize) * int64(h) / int64(w))
	}
	return int(int64(resize) * int64(w) / int64(h)), resize
}

// cropOffset returns torchvision's CenterCrop offset int(round(d/2.0)) for
// d surplus pixels; Python rounds halves to even.
func cropOffset(d int) int {
	q := d / 2
	if d%2 == 1 && q%2 == 1 {
		q++
	}
	return q
}
