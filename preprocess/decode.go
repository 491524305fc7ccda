package preprocess

import (
	"bytes"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
)

const pngMagic = "\x89PNG\r\n\x1a\n"

// decode sniffs the format, checks the declared size against MaxPixels
// from the header alone, and only then decodes. The std decoders are
// called directly, so what image.RegisterFormat holds elsewhere in the
// process does not widen what the server accepts.
func (p *Preprocessor) decode(b []byte) (image.Image, error) {
	var (
		name         string
		decodeConfig func(r *bytes.Reader) (image.Config, error)
		decode       func(r *bytes.Reader) (image.Image, error)
	)
	switch {
	case len(b) >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff:
		name = "JPEG"
		decodeConfig = func(r *bytes.Reader) (image.Config, error) { return jpeg.DecodeConfig(r) }
		decode = func(r *bytes.Reader) (image.Image, error) { return jpeg.Decode(r) }
	case len(b) >= len(pngMagic) && string(b[:len(pngMagic)]) == pngMagic:
		name = "PNG"
		decodeConfig = func(r *bytes.Reader) (image.Config, error) { return png.DecodeConfig(r) }
		decode = func(r *bytes.Reader) (image.Image, error) { return png.Decode(r) }
	default:
		if len(b) == 0 {
			return nil, unsupported(fmt.Errorf("%w: empty body", ErrNotImage))
		}
		return nil, unsupported(fmt.Errorf("%w: unknown format starting % x (expected JPEG ff d8 ff or PNG 89 50 4e 47)", ErrNotImage, b[:min(len(b), 8)]))
	}
	r := bytes.NewReader(b)
	cfg, err := decodeConfig(r)
	if err != nil {
		return nil, unsupported(fmt.Errorf("%w: bad %s header: %w", ErrNotImage, name, err))
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, unsupported(fmt.Errorf("%w: %s has zero size %dx%d", ErrNotImage, name, cfg.Width, cfg.Height))
	}
	if int64(cfg.Width)*int64(cfg.Height) > int64(p.cfg.MaxPixels) {
		return nil, unsupported(fmt.Errorf("%w: %dx%d pixels exceeds max_pixels %d", ErrTooLarge, cfg.Width, cfg.Height, p.cfg.MaxPixels))
	}
	r.Reset(b)
	m, err := decode(r)
	if err != nil {
		return nil, unsupported(fmt.Errorf("%w: cannot decode %s: %w", ErrNotImage, name, err))
	}
	if bb := m.Bounds(); bb.Dx() != cfg.Width || bb.Dy() != cfg.Height {
		// Cannot happen with the std decoders; guards the pixel limit.
		return nil, unsupported(fmt.Errorf("%w: %s decoded to %dx%d, header said %dx%d", ErrNotImage, name, bb.Dx(), bb.Dy(), cfg.Width, cfg.Height))
	}
	return m, nil
}
