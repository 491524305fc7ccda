package gpu

import (
	"fmt"
	"os"
	"testing"

	"github.com/inferd/inferd/model"
)

// BenchmarkRun measures raw ONNX Runtime throughput per batch size on the
// device named by INFERD_BENCH_DEVICE (default cpu): the limit every server
// figure is compared against. MODEL picks the model (resnet50 by default).
func BenchmarkRun(b *testing.B) {
	needLibrary(b)
	dev := envOr("INFERD_BENCH_DEVICE", "cpu")
	specs := map[string]model.Spec{
		"resnet50":      {Arch: "resnet50"},
		"resnet50-fp16": {Arch: "resnet50", DType: "float16"},
		"tiny":          {Arch: "tiny"},
	}
	name := envOr("INFERD_BENCH_MODEL", "resnet50")
	spec, ok := specs[name]
	if !ok {
		b.Fatalf("INFERD_BENCH_MODEL %q: want resnet50, resnet50-fp16 or tiny", name)
	}
	sizes := []int{1, 4, 16}
	if dev != "cpu" {
		sizes = []int{1, 8, 32, 64, 128}
	}
	// INFERD_BENCH_PROFILE=PREFIX writes ONNX Runtime's profile, which
	// names the provider every node ran on, to PREFIX_<date>.json when the
	// session closes: the proof that a cuda run ran on the GPU.
	m := open(b, modelPath(b, spec), Options{Device: dev, MaxBatch: sizes[len(sizes)-1], Buckets: sizes,
		ProfilePrefix: os.Getenv("INFERD_BENCH_PROFILE")})
	for _, n := range sizes {
		b.Run(fmt.Sprintf("%s/%s/batch=%d", name, m.Device(), n), func(b *testing.B) {
			l, err := m.Acquire(n)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Release()
			b.ReportAllocs()
			b.SetBytes(int64(n * m.Inputs()[0].RowBytes()))
			for b.Loop() {
				if err := l.Run(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "images/s")
		})
	}
}
