// Package preprocess turns an encoded image (JPEG or PNG bytes from a
// request) into one model input row, the way torchvision's classic
// ImageNet pipeline does on PIL images:
//
//	Resize(256, BILINEAR) → CenterCrop(224) → ToTensor → Normalize(mean, std)
//
// Decoding uses the standard library; the colour conversion follows PIL's
// convert("RGB") (alpha dropped, not composited) and libjpeg's chroma
// upsampling; the resize reproduces Pillow's antialiasing bilinear
// resampling bit for bit, so rows match the reference within the JPEG
// IDCT's rounding and exactly for PNG.
//
// The package knows nothing of HTTP servers: errors carry the status a
// server should answer with (see Error).
package preprocess
