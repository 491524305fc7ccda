//go:build !cgo || nojpegturbo

package preprocess

// turboJPEG reports whether this build decodes JPEGs with libjpeg-turbo;
// without cgo, or with -tags nojpegturbo, JPEGs take image/jpeg.
const turboJPEG = false

// JPEGDecoder names the JPEG decoder this build uses: "image/jpeg" here,
// "libjpeg-turbo" in cgo builds without -tags nojpegturbo.
func JPEGDecoder() string { return "image/jpeg" }

type tjDecoder struct{}

func getTJ() *tjDecoder { return nil }

func putTJ(*tjDecoder) {}

func tjHeader(*tjDecoder, []byte) (w, h, samp int, ok bool) { return 0, 0, 0, false }

func decodeTurbo(*tjDecoder, []byte, []byte, int, int, int) bool { return false }

func decodeTurboPlanes(*tjDecoder, []byte, []byte, *planeLayout, int, int) bool { return false }
