package preprocess

import (
	"image"
	"image/color"
)

// rowSource yields RGB rows of a decoded image, converted the way PIL's
// convert("RGB") does: grey is replicated, alpha is dropped (not
// composited), palettes are looked up, CMYK uses PIL's formula, and 16-bit
// samples keep their high byte.
type rowSource interface {
	// row writes the RGB bytes of pixels [x0, x1) of row y (relative to
	// the image bounds) into dst[:3*(x1-x0)].
	row(y, x0, x1 int, dst []byte)
}

// newRowSource picks a converter for the concrete image type; only types
// the std decoders never produce fall back to per-pixel At calls.
func newRowSource(m image.Image) rowSource {
	switch m := m.(type) {
	case *image.YCbCr:
		if s := newYCbCrRows(m); s != nil {
			return s
		}
	case *image.Gray:
		return &grayRows{pix: m.Pix, stride: m.Stride, base: m.PixOffset(m.Rect.Min.X, m.Rect.Min.Y)}
	case *image.RGBA:
		// The PNG decoder returns *image.RGBA only for opaque images, and
		// the JPEG decoder only for RGB JPEGs, so premultiplication is a
		// no-op here.
		return &rgbaRows{pix: m.Pix, stride: m.Stride, base: m.PixOffset(m.Rect.Min.X, m.Rect.Min.Y)}
	case *image.NRGBA:
		return &rgbaRows{pix: m.Pix, stride: m.Stride, base: m.PixOffset(m.Rect.Min.X, m.Rect.Min.Y)}
	case *image.Gray16:
		return &gray16Rows{pix: m.Pix, stride: m.Stride, base: m.PixOffset(m.Rect.Min.X, m.Rect.Min.Y)}
	case *image.RGBA64:
		return &rgba64Rows{pix: m.Pix, stride: m.Stride, base: m.PixOffset(m.Rect.Min.X, m.Rect.Min.Y)}
	case *image.NRGBA64:
		return &rgba64Rows{pix: m.Pix, stride: m.Stride, base: m.PixOffset(m.Rect.Min.X, m.Rect.Min.Y)}
	case *image.CMYK:
		return &cmykRows{pix: m.Pix, stride: m.Stride, base: m.PixOffset(m.Rect.Min.X, m.Rect.Min.Y)}
	case *image.Paletted:
		s := &palettedRows{pix: m.Pix, stride: m.Stride, base: m.PixOffset(m.Rect.Min.X, m.Rect.Min.Y)}
		for i, c := range m.Palette {
			if i >= len(s.lut) {
				break
			}
			n := color.NRGBAModel.Convert(c).(color.NRGBA)
			s.lut[i] = [3]byte{n.R, n.G, n.B}
		}
		return s
	}
	return &genericRows{m: m}
}

type grayRows struct {
	pix          []byte
	stride, base int
}

func (s *grayRows) row(y, x0, x1 int, dst []byte) {
	src := s.pix[s.base+y*s.stride+x0 : s.base+y*s.stride+x1]
	dst = dst[:3*len(src)]
	for i, v := range src {
		d := dst[3*i : 3*i+3]
		d[0], d[1], d[2] = v, v, v
	}
}

type gray16Rows struct {
	pix          []byte
	stride, base int
}

func (s *gray16Rows) row(y, x0, x1 int, dst []byte) {
	src := s.pix[s.base+y*s.stride+2*x0 : s.base+y*s.stride+2*x1]
	dst = dst[:3*(x1-x0)]
	for i := range x1 - x0 {
		v := src[2*i] // big-endian: high byte first
		d := dst[3*i : 3*i+3]
		d[0], d[1], d[2] = v, v, v
	}
}

// rgbaRows serves *image.RGBA and *image.NRGBA: R, G, B are taken as
// stored and alpha is dropped.
type rgbaRows struct {
	pix          []byte
	stride, base int
}

func (s *rgbaRows) row(y, x0, x1 int, dst []byte) {
	src := s.pix[s.base+y*s.stride+4*x0 : s.base+y*s.stride+4*x1]
	dst = dst[:3*(x1-x0)]
	for i := range x1 - x0 {
		p := src[4*i : 4*i+3]
		d := dst[3*i : 3*i+3]
		d[0], d[1], d[2] = p[0], p[1], p[2]
	}
}

// rgba64Rows serves *image.RGBA64 and *image.NRGBA64, keeping the high
// byte of each big-endian sample (what PIL does for 16-bit RGB PNGs).
type rgba64Rows struct {
	pix          []byte
	stride, base int
}

func (s *rgba64Rows) row(y, x0, x1 int, dst []byte) {
	src := s.pix[s.base+y*s.stride+8*x0 : s.base+y*s.stride+8*x1]
	dst = dst[:3*(x1-x0)]
	for i := range x1 - x0 {
		p := src[8*i : 8*i+5]
		d := dst[3*i : 3*i+3]
		d[0], d[1], d[2] = p[0], p[2], p[4]
	}
}

// cmykRows converts with PIL's cmyk2rgb: nk - nk*c/255, rounded the way
// its MULDIV255 macro rounds.
type cmykRows struct {
	pix          []byte
	stride, base int
}

func mulDiv255(a, b int32) int32 {
	t := a*b + 128
	return ((t >> 8) + t) >> 8
}

func (s *cmykRows) row(y, x0, x1 int, dst []byte) {
	src := s.pix[s.base+y*s.stride+4*x0 : s.base+y*s.stride+4*x1]
	dst = dst[:3*(x1-x0)]
	for i := range x1 - x0 {
		p := src[4*i : 4*i+4]
		nk := 255 - int32(p[3])
		d := dst[3*i : 3*i+3]
		// nk - mulDiv255(c, nk) is within 0..255 for every input.
		d[0] = byte(nk - mulDiv255(int32(p[0]), nk))
		d[1] = byte(nk - mulDiv255(int32(p[1]), nk))
		d[2] = byte(nk - mulDiv255(int32(p[2]), nk))
	}
}

type palettedRows struct {
	pix          []byte
	stride, base int
	lut          [256][3]byte // indices beyond the palette stay black
}

func (s *palettedRows) row(y, x0, x1 int, dst []byte) {
	src := s.pix[s.base+y*s.stride+x0 : s.base+y*s.stride+x1]
	dst = dst[:3*len(src)]
	for i, v := range src {
		c := &s.lut[v]
		d := dst[3*i : 3*i+3]
		d[0], d[1], d[2] = c[0], c[1], c[2]
	}
}

// genericRows is the slow path for image types the std decoders do not
// return; it drops alpha like the others (un-premultiplying first).
type genericRows struct{ m image.Image }

func (s *genericRows) row(y, x0, x1 int, dst []byte) {
	b := s.m.Bounds()
	for x := x0; x < x1; x++ {
		c := color.NRGBAModel.Convert(s.m.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
		i := 3 * (x - x0)
		dst[i], dst[i+1], dst[i+2] = c.R, c.G, c.B
	}
}
