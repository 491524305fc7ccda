package preprocess

import (
	"encoding/binary"
	"image"
	"math"
	"net/http"
	"sync"

	"github.com/inferd/inferd/httperr"
)

// Preprocessor turns encoded images into model input rows. It is safe for
// concurrent use; create one per model and share it between handlers.
type Preprocessor struct {
	cfg      Config
	rowBytes int
	// lut maps a pixel value to the little-endian float32 bits of
	// (v/255 - mean)/std per channel, computed in float32 the way
	// torchvision's ToTensor + Normalize compute it.
	lut     [3][256]uint32
	weights weightCache
	scratch sync.Pool // *scratch
	// jpegScales[m] allows libjpeg-turbo's DCT scaling by m/8 (m in
	// 1..7) when the scaled shorter side still reaches Resize.
	jpegScales [8]bool
	// planesMin is the pixel count from which JPEGs are decoded to
	// planes (planes.go): planarMinPixels; tests lower it.
	planesMin int64
}

// scratch holds the per-call buffers; pooled so steady-state calls only
// allocate what the image decoders allocate.
type scratch struct {
	row []byte  // one source row as RGB, the horizontal span only
	tmp []byte  // horizontally resampled rows, Size*3 bytes each
	acc []int32 // vertical accumulators, Size*3
	out []byte  // one output row as RGB
	dec []byte  // libjpeg-turbo's output: packed RGB, or planes

	// Row sources for planar decodes, here so that they cost no
	// allocation.
	yccRows  ycbcrRows
	grayRows grayRows

	// ResampleFloat's counterparts of tmp and out.
	tmpF, outF []float32
}

// maxPooledDecode bounds the decode buffer a pooled scratch keeps: larger
// images (rare, up to MaxPixels) get a buffer of their own.
const maxPooledDecode = 3 * 4096 * 4096

// New validates cfg, fills in its defaults and returns a Preprocessor.
// Errors name the offending field and wrap ErrConfig.
func New(cfg Config) (*Preprocessor, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	p := &Preprocessor{cfg: cfg, planesMin: planarMinPixels}
	elem := 4
	if cfg.DType == DTypeUint8 {
		elem = 1
	}
	p.rowBytes = 3 * cfg.Size * cfg.Size * elem
	for c := range 3 {
		for v := range 256 {
			x := float32(v) / 255
			x = (x - cfg.Mean[c]) / cfg.Std[c]
			p.lut[c][v] = math.Float32bits(x)
		}
	}
	p.scratch.New = func() any { return new(scratch) }
	if cfg.JPEGDCTScaling {
		// The factors libjpeg-turbo has SIMD IDCTs for: on x86-64 the
		// others (3/8, 5/8, 6/8, 7/8) run in plain C and are slower than a
		// full-scale decode (BenchmarkImagesPerSecond: 6/8 at 500x375).
		// Not 1/8 either: it keeps only each block's average, a box filter
		// that the bilinear resize then hardly smooths when the result is
		// close to Resize (2800x2100 at 1/8: 263 rows, mean error 2.2
		// levels, max 25; at 2/8: TestJPEGDCTScaling).
		p.jpegScales[2], p.jpegScales[4] = true, true
	}
	return p, nil
}

// Config returns the configuration with defaults filled in.
func (p *Preprocessor) Config() Config { return p.cfg }

// RowBytes returns the size of one row: 3*Size*Size*4 for float32,
// 3*Size*Size for uint8.
func (p *Preprocessor) RowBytes() int { return p.rowBytes }

// Shape returns the shape of one row, without the batch dimension:
// [3, Size, Size] for NCHW, [Size, Size, 3] for NHWC. The slice is the
// caller's.
func (p *Preprocessor) Shape() []int64 {
	s := int64(p.cfg.Size)
	if p.cfg.Layout == LayoutNHWC {
		return []int64{s, s, 3}
	}
	return []int64{3, s, s}
}

func grow[T any](b []T, n int) []T {
	if cap(b) < n {
		return make([]T, n)
	}
	return b[:n]
}

// Process decodes a JPEG or PNG image, converts it to RGB, resizes its
// shorter side to Resize with PIL's antialiasing bilinear filter, crops
// the Size x Size centre and writes the row into dst (len(dst) must be
// RowBytes) in the configured layout and dtype, little-endian.
//
// Errors are *httperr.Error: 415 wrapping ErrNotImage or ErrTooLarge for images
// it cannot take, 500 wrapping ErrDst for a wrong dst.
func (p *Preprocessor) Process(img []byte, dst []byte) error {
	if len(dst) != p.rowBytes {
		return httperr.Errorf(http.StatusInternalServerError, "%w: dst has %d bytes, RowBytes is %d", ErrDst, len(dst), p.rowBytes)
	}
	if turboJPEG && isJPEG(img) {
		if done, err := p.processTurbo(img, dst); done {
			return err
		}
	}
	m, err := p.decode(img)
	if err != nil {
		return err
	}
	p.processImage(m, dst)
	return nil
}

// processTurbo decodes a JPEG with libjpeg-turbo straight to packed RGB,
// or for large YCbCr and grey ones to planes (planes.go), and resamples
// that. done is false when libjpeg-turbo is unavailable or refuses the
// file (CMYK, YCCK, anything corrupt): Process then takes the Go decoder,
// which accepts or rejects it with the usual error.
func (p *Preprocessor) processTurbo(img, dst []byte) (done bool, err error) {
	d := getTJ()
	if d == nil {
		return false, nil
	}
	defer putTJ(d)
	w, h, samp, ok := tjHeader(d, img)
	if !ok {
		return false, nil
	}
	if err := p.checkPixels(w, h); err != nil {
		return true, err
	}
	m := p.jpegScale(w, h)
	s := p.scratch.Get().(*scratch)
	defer p.scratch.Put(s)
	if l, ok := p.usePlanes(w, h, samp, m); ok {
		buf := s.decodeBuffer(l.size())
		if !decodeTurboPlanes(d, img, buf, &l, w, h) {
			return false, nil
		}
		p.resample(l.rows(buf, w, h, s), nil, w, h, w, h, s, dst)
		// The pooled scratch must not keep a buffer of its own alive.
		s.yccRows, s.grayRows = ycbcrRows{}, grayRows{}
		return true, nil
	}
	sw, sh := tjScaled(w, m), tjScaled(h, m)
	buf := s.decodeBuffer(3 * sw * sh)
	if !decodeTurbo(d, img, buf, w, h, m) {
		return false, nil
	}
	p.resample(nil, buf, sw, sh, w, h, s, dst)
	return true, nil
}

// decodeBuffer returns an n-byte buffer for libjpeg-turbo's output: the
// pooled one when it fits or n is at most maxPooledDecode, else one of
// its own.
func (s *scratch) decodeBuffer(n int) []byte {
	if cap(s.dec) >= n {
		return s.dec[:n]
	}
	buf := make([]byte, n)
	if n <= maxPooledDecode {
		s.dec = buf
	}
	return buf
}

func isJPEG(b []byte) bool { return len(b) >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff }

// tjScaled is TJSCALED: the size of a side of dim pixels decoded at m/8.
func tjScaled(dim, m int) int { return (dim*m + 7) / 8 }

// jpegScale picks the DCT scaling m/8 for a w x h JPEG: the smallest
// allowed m whose scaled shorter side is still at least Resize, 8 (no
// scaling) when none is.
func (p *Preprocessor) jpegScale(w, h int) int {
	short := min(w, h)
	for m := 1; m < 8; m++ {
		if p.jpegScales[m] && tjScaled(short, m) >= p.cfg.Resize {
			return m
		}
	}
	return 8
}

// processImage converts, resizes, crops and writes a decoded image.
func (p *Preprocessor) processImage(m image.Image, dst []byte) {
	b := m.Bounds()
	s := p.scratch.Get().(*scratch)
	defer p.scratch.Put(s)
	p.resample(newRowSource(m), nil, b.Dx(), b.Dy(), b.Dx(), b.Dy(), s, dst)
}

// resample resizes, crops and writes an sw x sh image that stands for a
// w x h one (smaller when the JPEG decoder scaled it down): the output
// geometry, Resize and the centre crop, follows w x h, and the filter maps
// the sw x sh pixels onto it. The pixels come from src or, when src is
// nil, from pix, packed RGB rows of 3*sw bytes.
func (p *Preprocessor) resample(src rowSource, pix []byte, sw, sh, w, h int, s *scratch, dst []byte) {
	size := p.cfg.Size
	ow, oh := resizedSize(w, h, p.cfg.Resize)
	hw := p.weights.get(sw, ow, cropOffset(ow-size), size)
	vw := p.weights.get(sh, oh, cropOffset(oh-size), size)
	x0, x1 := hw.span()
	y0, y1 := vw.span()

	stride := 3 * size
	s.row = grow(s.row, 3*(x1-x0))
	if p.cfg.Resample == ResampleFloat {
		p.resampleFloat(src, pix, sw, hw, vw, s, dst)
		return
	}
	s.tmp = grow(s.tmp, (y1-y0)*stride)
	s.acc = grow(s.acc, stride)
	s.out = grow(s.out, stride)

	for y := y0; y < y1; y++ {
		hw.resampleRow(s.tmp[(y-y0)*stride:], sourceRow(src, pix, sw, y, x0, x1, s.row), x0)
	}
	for i := range size {
		vw.resampleColumn(s.out, s.tmp, stride, y0, i, s.acc)
		p.emitRow(dst, i, s.out)
	}
}

// sourceRow returns input row y, columns x0..x1-1, as packed RGB: a slice
// of pix when src is nil, else src's pixels converted into buf.
func sourceRow(src rowSource, pix []byte, sw, y, x0, x1 int, buf []byte) []byte {
	if src == nil {
		return pix[3*(y*sw+x0) : 3*(y*sw+x1)]
	}
	src.row(y, x0, x1, buf)
	return buf
}

// resampleFloat is resample's second half for ResampleFloat.
func (p *Preprocessor) resampleFloat(src rowSource, pix []byte, sw int, hw, vw *axisWeights, s *scratch, dst []byte) {
	size := p.cfg.Size
	stride := 3 * size
	x0, x1 := hw.span()
	y0, y1 := vw.span()
	s.tmpF = grow(s.tmpF, (y1-y0)*stride)
	s.outF = grow(s.outF, stride)
	for y := y0; y < y1; y++ {
		hw.resampleRowFloat(s.tmpF[(y-y0)*stride:], sourceRow(src, pix, sw, y, x0, x1, s.row), x0)
	}
	for i := range size {
		vw.resampleColumnFloat(s.outF, s.tmpF, stride, y0, i)
		p.emitRowFloat(dst, i, s.outF)
	}
}

// emitRowFloat writes output row i (RGB float32 on the 0..255 scale) into
// dst as float32, computing (v/255 - mean)/std in float32 like the lookup
// table of emitRow does.
func (p *Preprocessor) emitRowFloat(dst []byte, i int, rgb []float32) {
	size := p.cfg.Size
	plane := size * size
	var mean, std [3]float32 = p.cfg.Mean, p.cfg.Std
	if p.cfg.Layout == LayoutNHWC {
		d := dst[i*12*size : (i+1)*12*size]
		for x := range size {
			for c := range 3 {
				binary.LittleEndian.PutUint32(d[12*x+4*c:], math.Float32bits((rgb[3*x+c]/255-mean[c])/std[c]))
			}
		}
		return
	}
	for c := range 3 {
		d := dst[4*(c*plane+i*size) : 4*(c*plane+(i+1)*size)]
		m, sd := mean[c], std[c]
		for x := range size {
			binary.LittleEndian.PutUint32(d[4*x:], math.Float32bits((rgb[3*x+c]/255-m)/sd))
		}
	}
}

// emitRow writes output row i (RGB bytes) into dst in the configured
// layout and dtype.
func (p *Preprocessor) emitRow(dst []byte, i int, rgb []byte) {
	size := p.cfg.Size
	plane := size * size
	nhwc := p.cfg.Layout == LayoutNHWC
	if p.cfg.DType == DTypeUint8 {
		if nhwc {
			copy(dst[i*3*size:], rgb)
			return
		}
		r := dst[i*size : (i+1)*size]
		g := dst[plane+i*size : plane+(i+1)*size]
		bl := dst[2*plane+i*size : 2*plane+(i+1)*size]
		for x := range size {
			r[x], g[x], bl[x] = rgb[3*x], rgb[3*x+1], rgb[3*x+2]
		}
		return
	}
	lr, lg, lb := &p.lut[0], &p.lut[1], &p.lut[2]
	if nhwc {
		d := dst[i*12*size : (i+1)*12*size]
		for x := range size {
			binary.LittleEndian.PutUint32(d[12*x:], lr[rgb[3*x]])
			binary.LittleEndian.PutUint32(d[12*x+4:], lg[rgb[3*x+1]])
			binary.LittleEndian.PutUint32(d[12*x+8:], lb[rgb[3*x+2]])
		}
		return
	}
	r := dst[4*i*size : 4*(i+1)*size]
	g := dst[4*(plane+i*size) : 4*(plane+(i+1)*size)]
	bl := dst[4*(2*plane+i*size) : 4*(2*plane+(i+1)*size)]
	for x := range size {
		binary.LittleEndian.PutUint32(r[4*x:], lr[rgb[3*x]])
		binary.LittleEndian.PutUint32(g[4*x:], lg[rgb[3*x+1]])
		binary.LittleEndian.PutUint32(bl[4*x:], lb[rgb[3*x+2]])
	}
}
