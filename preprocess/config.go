package preprocess

import (
	"fmt"
	"math"
)

// Defaults applied by New to zero-valued Config fields.
const (
	DefaultSize      = 224
	DefaultMaxPixels = 40_000_000
	// MaxSize bounds Config.Size and Config.Resize so that a typo in a
	// config file cannot ask for gigabyte-sized rows.
	MaxSize = 8192
)

// Layouts and data types accepted in Config.
const (
	LayoutNCHW   = "NCHW"
	LayoutNHWC   = "NHWC"
	DTypeFloat32 = "float32"
	DTypeUint8   = "uint8"

	// ResamplePIL is Pillow's 8-bit resampling: fixed-point weights and
	// each pass rounded to uint8, as torchvision does on PIL images.
	ResamplePIL = "pil"
	// ResampleFloat is the same antialiasing bilinear filter in float32
	// with no rounding, as torchvision does on float tensors.
	ResampleFloat = "float"
)

var (
	imageNetMean = [3]float32{0.485, 0.456, 0.406}
	imageNetStd  = [3]float32{0.229, 0.224, 0.225}
)

// Config describes the preprocessing a model expects. Zero values mean
// defaults; New fills them in and validates the result.
type Config struct {
	// Size is the side of the square centre crop fed to the model.
	// Default 224.
	Size int

	// Resize is the length the shorter image side is resized to before the
	// centre crop (torchvision's Resize(256) + CenterCrop(224)). Default:
	// Size*256/224 rounded, i.e. 256 for Size 224. It must be >= Size.
	Resize int

	// Mean is subtracted per RGB channel after scaling pixels to [0,1].
	// Default ImageNet's (0.485, 0.456, 0.406). Mean and Std default
	// together: when both are all zero the ImageNet values are used. The
	// trap: an all-zero Mean with a non-zero Std is taken literally, so
	// {Std: [3]float32{1, 1, 1}} gives plain [0,1] scaling.
	Mean [3]float32

	// Std divides each channel after Mean is subtracted. Default ImageNet's
	// (0.229, 0.224, 0.225); every element must be > 0.
	Std [3]float32

	// Layout is "NCHW" (default, planar: all R, then all G, then all B) or
	// "NHWC" (interleaved RGB).
	Layout string

	// DType is "float32" (default: scaled to [0,1], then (x-Mean)/Std) or
	// "uint8" (raw 0..255 pixels, Mean and Std ignored: for models that
	// normalise inside the graph).
	DType string

	// MaxPixels bounds width*height of an image, checked from the header
	// before anything is decoded, so a small file claiming a huge image
	// (a decompression bomb) costs nothing. Default 40,000,000. Larger
	// images get 415.
	//
	// The trap: it bounds pixels, not bytes, and what a pixel costs while
	// Process decodes depends on the format, by up to 24x. Bytes per
	// pixel at the most (ProcessMemory gives the bound for one image):
	//
	//   - PNG: 1 grey or paletted, 2 16-bit grey, 4 8-bit colour or any
	//     alpha or tRNS, 8 16-bit colour; twice that interlaced (16:
	//     640 MB at the default).
	//   - JPEG with libjpeg-turbo (YCbCr, grey, RGB): 3 for the decoded
	//     RGB (above 16.7 megapixels 1.5 for 4:2:0, 1 for grey) plus, if
	//     progressive, 2 per full-resolution component (4:2:0: 3, 4:4:4:
	//     6). A file it refuses after decoding is decoded again by
	//     image/jpeg with its buffer still held: up to 22 (progressive
	//     4:4:4 RGB).
	//   - JPEG with image/jpeg (CMYK and YCCK always, every JPEG under
	//     -tags nojpegturbo): 1 per component sample (4:2:0: 1.5, CMYK:
	//     4), plus 4 per full-resolution component if progressive, plus a
	//     4-byte copy for CMYK, YCCK and RGB: progressive CMYK takes 24
	//     (960 MB at the default), baseline CMYK 8, progressive 4:2:0
	//     7.5.
	//
	// Several requests decode at once, so budget with ProcessMemory, or
	// size MaxPixels for the worst format times the concurrency.
	MaxPixels int

	// JPEGDCTScaling lets libjpeg-turbo decode a large JPEG at 1/2 or 1/4
	// scale inside the IDCT, the smaller of these whose shorter side
	// still reaches Resize (an 800x600 photo is decoded at 400x300
	// for Resize 256), before the usual resize. It is about 1.5x faster
	// on 800x600 photos, and does nothing for images whose shorter side is
	// under 2*Resize, such as 500x375. The price is accuracy: rows are no
	// longer PIL's (decoding at full scale gives PIL's rows exactly):
	// they differ by 0.3-0.7 level of 255 on average on smooth photos,
	// about 2 on sharp-edged ones, up to ~30 at single pixels on hard
	// edges (see TestJPEGDCTScaling). Off by default; ignored without
	// libjpeg-turbo (-tags nojpegturbo).
	JPEGDCTScaling bool

	// Resample is how the resize computes: ResamplePIL (default) gives
	// rows byte-identical to PIL's, which is how most ImageNet models were
	// evaluated (torchvision's transforms on PIL images); ResampleFloat
	// keeps the resized pixels in float32 until they are normalised, as
	// torchvision's transforms on float tensors do. The two differ by
	// under one level of 255 per pixel, which can move a quantised model's
	// probabilities by a few points: the ONNX model zoo's MobileNetV2 int8
	// gives the README's 68% for its cat photo only with "float".
	// ResampleFloat takes DType float32 only.
	Resample string
}

// withDefaults returns cfg with zero values replaced by defaults, or an
// error naming the first bad field.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Size == 0 {
		cfg.Size = DefaultSize
	}
	if cfg.Size < 0 || cfg.Size > MaxSize {
		return cfg, fmt.Errorf("%w: size %d out of range: expected 1..%d", ErrConfig, cfg.Size, MaxSize)
	}
	if cfg.Resize == 0 {
		cfg.Resize = (cfg.Size*256 + 112) / 224
	}
	if cfg.Resize < cfg.Size || cfg.Resize > MaxSize {
		return cfg, fmt.Errorf("%w: resize %d out of range: expected %d (size) .. %d", ErrConfig, cfg.Resize, cfg.Size, MaxSize)
	}
	if cfg.Mean == [3]float32{} && cfg.Std == [3]float32{} {
		cfg.Mean, cfg.Std = imageNetMean, imageNetStd
	}
	for c := range 3 {
		m, s := float64(cfg.Mean[c]), float64(cfg.Std[c])
		if math.IsNaN(m) || math.IsInf(m, 0) {
			return cfg, fmt.Errorf("%w: mean[%d] is %v: expected a finite number", ErrConfig, c, m)
		}
		if !(s > 0) || math.IsInf(s, 0) {
			return cfg, fmt.Errorf("%w: std[%d] is %v: expected a finite number > 0 (set all three, or leave mean and std both zero for ImageNet's)", ErrConfig, c, s)
		}
	}
	switch cfg.Layout {
	case "":
		cfg.Layout = LayoutNCHW
	case LayoutNCHW, LayoutNHWC:
	default:
		return cfg, fmt.Errorf("%w: layout %q: expected %q or %q", ErrConfig, cfg.Layout, LayoutNCHW, LayoutNHWC)
	}
	switch cfg.DType {
	case "":
		cfg.DType = DTypeFloat32
	case DTypeFloat32, DTypeUint8:
	default:
		return cfg, fmt.Errorf("%w: dtype %q: expected %q or %q", ErrConfig, cfg.DType, DTypeFloat32, DTypeUint8)
	}
	switch cfg.Resample {
	case "":
		cfg.Resample = ResamplePIL
	case ResamplePIL:
	case ResampleFloat:
		if cfg.DType != DTypeFloat32 {
			return cfg, fmt.Errorf("%w: resample %q takes dtype %q, not %q", ErrConfig, cfg.Resample, DTypeFloat32, cfg.DType)
		}
	default:
		return cfg, fmt.Errorf("%w: resample %q: expected %q or %q", ErrConfig, cfg.Resample, ResamplePIL, ResampleFloat)
	}
	if cfg.MaxPixels == 0 {
		cfg.MaxPixels = DefaultMaxPixels
	}
	if cfg.MaxPixels < 0 {
		return cfg, fmt.Errorf("%w: max_pixels %d: expected a positive number (0 for the default %d)", ErrConfig, cfg.MaxPixels, DefaultMaxPixels)
	}
	return cfg, nil
}
