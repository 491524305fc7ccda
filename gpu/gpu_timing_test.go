package gpu

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

	"github.com/inferd/inferd/model"
)

// BenchmarkRun measures raw ONNX Runtime throughput per batch size on the
// device named by INFERD_BENCH_DEVICE (default cpu): the limit every server
// figure is compared against. The knobs, all environment variables, as
// bench/gpu/visit.sh sets them:
//
//	INFERD_BENCH_MODEL     any builtin name (default resnet50): resnet50-fp16,
//	                       resnet50-uint8, resnet50-fp16-uint8, tiny, ...
//	INFERD_BENCH_INSTANCES sessions opened (default 1: one timed, one open)
//	INFERD_BENCH_SEED      inputs filled with seeded random data (default 1;
//	                       0 leaves them as allocated, zeros: a pageable copy
//	                       of never-written pages and a GPU computing on
//	                       zeros flatter the figure)
//	INFERD_BENCH_NHWC      1: cuda.prefer_nhwc
//	INFERD_BENCH_SEARCH    cuda.cudnn_conv_algo_search (EXHAUSTIVE, HEURISTIC,
//	                       DEFAULT)
//	INFERD_BENCH_PINNED    cuda.pinned_memory (auto, the default: page-locked
//	                       input and output buffers where the CUDA runtime
//	                       loads; on; off: Go memory, pageable copies)
//	INFERD_BENCH_LOG       1: the session's lifecycle lines (open and
//	                       warm-up times) on stderr
//	INFERD_BENCH_PROFILE   PREFIX: ONNX Runtime's profile, naming the
//	                       provider of every node, to PREFIX_<date>.json
func BenchmarkRun(b *testing.B) {
	needLibrary(b)
	dev := envOr("INFERD_BENCH_DEVICE", "cpu")
	name := envOr("INFERD_BENCH_MODEL", "resnet50")
	spec, err := model.ParseName(name)
	if err != nil {
		b.Fatalf("INFERD_BENCH_MODEL %q: %v", name, err)
	}
	sizes := []int{1, 4, 16}
	if dev != "cpu" {
		sizes = []int{1, 8, 32, 64, 128}
	}
	opts := Options{Device: dev, MaxBatch: sizes[len(sizes)-1], Buckets: sizes,
		Instances: envInt(b, "INFERD_BENCH_INSTANCES", 1), ProfilePrefix: os.Getenv("INFERD_BENCH_PROFILE")}
	opts.CUDA.PreferNHWC = os.Getenv("INFERD_BENCH_NHWC") == "1"
	opts.CUDA.CuDNNConvAlgoSearch = os.Getenv("INFERD_BENCH_SEARCH")
	opts.CUDA.PinnedMemory = os.Getenv("INFERD_BENCH_PINNED")
	if os.Getenv("INFERD_BENCH_LOG") == "1" {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	m := open(b, modelPath(b, spec), opts)
	seed := envInt(b, "INFERD_BENCH_SEED", 1)
	for _, n := range sizes {
		b.Run(fmt.Sprintf("%s/%s/batch=%d", name, m.Device(), n), func(b *testing.B) {
			l, err := m.Acquire(n)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Release()
			if seed != 0 {
				for i, t := range m.Inputs() {
					fillRandom(l.Input(i), t.Datatype, uint64(seed))
				}
			}
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

// fillRandom writes seeded random elements of datatype dt into buf: normal
// floats (as fp32 or fp16 bits) or random bytes.
func fillRandom(buf []byte, dt string, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 0))
	switch dt {
	case "FP32":
		for i := 0; i+4 <= len(buf); i += 4 {
			binary.LittleEndian.PutUint32(buf[i:], math.Float32bits(float32(r.NormFloat64())))
		}
	case "FP16":
		for i := 0; i+2 <= len(buf); i += 2 {
			binary.LittleEndian.PutUint16(buf[i:], halfBits(float32(r.NormFloat64())))
		}
	default:
		for i := range buf {
			buf[i] = byte(r.Uint32())
		}
	}
}

// halfBits is the IEEE half of a normal-range float32 (rounded toward
// zero; enough for benchmark inputs).
func halfBits(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int((b>>23)&0xff) - 127 + 15
	switch {
	case exp <= 0:
		return sign
	case exp >= 31:
		return sign | 0x7bff
	}
	return sign | uint16(exp)<<10 | uint16(b>>13)&0x3ff
}

// envInt is the integer environment variable name, or def when unset.
func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		b.Fatalf("%s %q: want an integer", name, v)
	}
	return n
}
