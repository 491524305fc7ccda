package preprocess

import (
	"bytes"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"io"
)

const pngMagic = "\x89PNG\r\n\x1a\n"

// stdFormat is one of the two std decoders Process takes.
type stdFormat struct {
	name         string
	decodeConfig func(io.Reader) (image.Config, error)
	decode       func(io.Reader) (image.Image, error)
}

var (
	jpegFormat = &stdFormat{"JPEG", jpeg.DecodeConfig, jpeg.Decode}
	pngFormat  = &stdFormat{"PNG", png.DecodeConfig, png.Decode}
)

// decode sniffs the format, checks the declared size against MaxPixels
// from the header alone, and only then decodes. The std decoders are
// called directly, so what image.RegisterFormat holds elsewhere in the
// process does not widen what the server accepts.
func (p *Preprocessor) decode(b []byte) (image.Image, error) {
	r := bytes.NewReader(b)
	f, cfg, err := p.decodeConfig(r, b)
	if err != nil {
		return nil, err
	}
	r.Reset(b)
	m, err := f.decode(r)
	if err != nil {
		return nil, unsupported(fmt.Errorf("%w: cannot decode %s: %w", ErrNotImage, f.name, err))
	}
	if bb := m.Bounds(); bb.Dx() != cfg.Width || bb.Dy() != cfg.Height {
		// Cannot happen with the std decoders; guards the pixel limit.
		return nil, unsupported(fmt.Errorf("%w: %s decoded to %dx%d, header said %dx%d", ErrNotImage, f.name, bb.Dx(), bb.Dy(), cfg.Width, cfg.Height))
	}
	return m, nil
}

// decodeConfig is decode up to the decoding: the format, the header and
// the pixel limit, with decode's errors. ProcessMemory runs it too, so
// that it refuses what decode refuses, with the same error. r reads b.
func (p *Preprocessor) decodeConfig(r *bytes.Reader, b []byte) (*stdFormat, image.Config, error) {
	var f *stdFormat
	switch {
	case isJPEG(b):
		f = jpegFormat
	case len(b) >= len(pngMagic) && string(b[:len(pngMagic)]) == pngMagic:
		f = pngFormat
	default:
		if len(b) == 0 {
			return nil, image.Config{}, unsupported(fmt.Errorf("%w: empty body", ErrNotImage))
		}
		return nil, image.Config{}, unsupported(fmt.Errorf("%w: unknown format starting % x (expected JPEG ff d8 ff or PNG 89 50 4e 47)", ErrNotImage, b[:min(len(b), 8)]))
	}
	cfg, err := f.decodeConfig(r)
	if err != nil {
		return nil, cfg, unsupported(fmt.Errorf("%w: bad %s header: %w", ErrNotImage, f.name, err))
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, cfg, unsupported(fmt.Errorf("%w: %s has zero size %dx%d", ErrNotImage, f.name, cfg.Width, cfg.Height))
	}
	if err := p.checkPixels(cfg.Width, cfg.Height); err != nil {
		return nil, cfg, err
	}
	return f, cfg, nil
}

// checkPixels is the MaxPixels check, the same for both decoders.
func (p *Preprocessor) checkPixels(w, h int) error {
	if int64(w)*int64(h) > int64(p.cfg.MaxPixels) {
		return unsupported(fmt.Errorf("%w: %dx%d pixels exceeds max_pixels %d", ErrTooLarge, w, h, p.cfg.MaxPixels))
	}
	return nil
}
