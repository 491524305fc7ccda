// Package preprocess turns an encoded image (JPEG or PNG bytes from a
// request) into one model input row, the way torchvision's classic
// ImageNet pipeline does on PIL images:
//
//	Resize(256, BILINEAR) → CenterCrop(224) → ToTensor → Normalize(mean, std)
//
// JPEGs are decoded with libjpeg-turbo through cgo (the TurboJPEG API,
// Debian's libturbojpeg0-dev), as PIL decodes them, straight to RGB (to
// planes, converted with libjpeg's arithmetic, above 16.7 megapixels); PNGs,
// and JPEGs libjpeg-turbo refuses (CMYK, YCCK, corrupt files), take the
// standard library, whose colour conversion follows PIL's convert("RGB")
// (alpha dropped, not composited) and libjpeg's chroma upsampling. The
// resize reproduces Pillow's antialiasing bilinear resampling bit for bit,
// so rows match PIL's exactly for PNG and libjpeg-turbo's JPEGs, and within
// the IDCT's rounding for JPEGs the Go decoder reads. Build with
// -tags nojpegturbo (or CGO_ENABLED=0) for a pure-Go package without the
// library. Config.JPEGDCTScaling trades that exactness for speed on large
// JPEGs. Config.Resample "float" computes the same filter in float32
// without PIL's roundings to uint8, as torchvision does on float tensors
// (within one level of 255 of PIL's rows, about 0.85x the speed).
//
// Decoding costs memory in proportion to the pixels, from 1 to 24 bytes a
// pixel by format (see Config.MaxPixels). ProcessMemory bounds what
// Process will take for an image from its header, so that a server can
// reserve it from a budget before decoding.
//
// The package knows nothing of HTTP servers: errors carry the status a
// server should answer with (see Error).
package preprocess
