package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/inferd/inferd/internal/testbed"
)

// ortErr is why ONNX Runtime is unavailable to the tests (nil when it is).
var ortErr error

// modelDir holds the models the tests generate, shared between tests.
var modelDir string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "inferd-model-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	modelDir = dir

	lib := testbed.ORTLibrary()
	if lib == "" {
		ortErr = errORTUnset
	} else {
		ort.SetSharedLibraryPath(lib)
		if err := ort.InitializeEnvironment(); err != nil {
			// Set but broken: the ORT tests fail rather than skip.
			ortErr = fmt.Errorf("initialize onnx runtime from %s: %w", lib, err)
		} else {
			defer ort.DestroyEnvironment()
		}
	}
	return m.Run()
}

var errORTUnset = fmt.Errorf("no ONNX Runtime ($INFERD_ORT_LIB, .deps/ort): run make setup")

// needORT skips the test without ONNX Runtime (fails it under make test) and
// fails it when ONNX Runtime could not be loaded.
func needORT(t testing.TB) {
	t.Helper()
	switch {
	case ortErr == errORTUnset:
		testbed.Missing(t, "skipping ONNX Runtime test: %v", ortErr)
	case ortErr != nil:
		t.Fatal(ortErr)
	}
}

// session is a loaded model.
type session struct {
	s *ort.DynamicAdvancedSession
}

func openSession(t testing.TB, path string) *session {
	t.Helper()
	opts, err := ort.NewSessionOptions()
	if err != nil {
		t.Fatal(err)
	}
	defer opts.Destroy()
	if err := opts.SetIntraOpNumThreads(2); err != nil {
		t.Fatal(err)
	}
	s, err := ort.NewDynamicAdvancedSession(path, []string{InputName}, []string{OutputName}, opts)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	t.Cleanup(func() { s.Destroy() })
	return &session{s: s}
}

// run feeds a batch of images (float32 NCHW or uint8 NHWC, per spec) and
// returns the [n,1000] output.
func (s *session) run(t testing.TB, in images, uint8Input bool, lo, hi int) [][]float32 {
	t.Helper()
	n := hi - lo
	var input ort.Value
	var err error
	if uint8Input {
		per := ImageSize * ImageSize * 3
		input, err = ort.NewTensor(ort.NewShape(int64(n), ImageSize, ImageSize, 3), in.pixels[lo*per:hi*per])
	} else {
		per := 3 * ImageSize * ImageSize
		input, err = ort.NewTensor(ort.NewShape(int64(n), 3, ImageSize, ImageSize), in.normalised[lo*per:hi*per])
	}
	if err != nil {
		t.Fatal(err)
	}
	defer input.Destroy()
	outputs := []ort.Value{nil} // allocated by ONNX Runtime, so its shape is checked
	if err := s.s.Run([]ort.Value{input}, outputs); err != nil {
		t.Fatalf("run batch of %d: %v", n, err)
	}
	defer outputs[0].Destroy()
	out, ok := outputs[0].(*ort.Tensor[float32])
	if !ok {
		t.Fatalf("output is %T, want *ort.Tensor[float32]", outputs[0])
	}
	if got, want := out.GetShape(), ort.NewShape(int64(n), NumClasses); !slices.Equal(got, want) {
		t.Fatalf("output shape %v, want %v", got, want)
	}
	data := out.GetData()
	rows := make([][]float32, n)
	for i := range rows {
		rows[i] = append([]float32(nil), data[i*NumClasses:(i+1)*NumClasses]...)
	}
	return rows
}

// images is a batch of synthetic photographs: raw uint8 NHWC pixels and the
// same pixels normalised in Go to float32 NCHW.
type images struct {
	n          int
	pixels     []uint8
	normalised []float32
}

// testImages makes n images that differ the way photographs do: each has its
// own colour cast, brightness gradient, a bright rectangle and noise.
func testImages(n int, seed uint64) images {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	const hw = ImageSize * ImageSize
	im := images{n: n, pixels: make([]uint8, n*hw*3), normalised: make([]float32, n*3*hw)}
	for i := range n {
		var base, grad [3]float64
		for c := range 3 {
			base[c] = 40 + 180*r.Float64()
			grad[c] = 120 * (r.Float64() - 0.5)
		}
		angle := 2 * math.Pi * r.Float64()
		gx, gy := math.Cos(angle), math.Sin(angle)
		x0, y0 := r.IntN(ImageSize/2), r.IntN(ImageSize/2)
		x1, y1 := x0+20+r.IntN(ImageSize/2), y0+20+r.IntN(ImageSize/2)
		patch := 120 * (r.Float64() - 0.5)
		noise := 5 + 30*r.Float64()
		for y := range ImageSize {
			for x := range ImageSize {
				t := (gx*float64(x) + gy*float64(y)) / ImageSize
				for c := range 3 {
					v := base[c] + grad[c]*t + noise*r.NormFloat64()
					if x >= x0 && x < x1 && y >= y0 && y < y1 {
						v += patch
					}
					p := uint8(math.Round(math.Max(0, math.Min(255, v))))
					im.pixels[((i*ImageSize+y)*ImageSize+x)*3+c] = p
					im.normalised[((i*3+c)*ImageSize+y)*ImageSize+x] = (float32(p)/255 - Mean[c]) / Std[c]
				}
			}
		}
	}
	return im
}
