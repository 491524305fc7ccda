package model

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	ort "github.com/yalue/onnxruntime_go"
)

// batchSize images are run as one batch and one at a time.
const batchSize = 8

var (
	testBatch     = sync.OnceValue(func() images { return testImages(batchSize, 1) })
	resultsMu     sync.Mutex
	resultsBySpec = map[string]*runResult{}
)

// runResult is a model's output for the test images.
type runResult struct {
	path   string
	batch  [][]float32 // the batch run at once
	single [][]float32 // the images run one by one
}

// results generates (once) the model for s, runs the test images through ONNX
// Runtime as one batch and one by one, and returns the outputs.
func results(t *testing.T, s Spec) *runResult {
	t.Helper()
	needORT(t)
	resultsMu.Lock()
	defer resultsMu.Unlock()
	if r, ok := resultsBySpec[s.Name()]; ok {
		return r
	}
	path, err := Ensure(modelDir, s)
	if err != nil {
		t.Fatal(err)
	}
	sess := openSession(t, path)
	im := testBatch()
	u8 := s.Input == Uint8
	r := &runResult{path: path, batch: sess.run(t, im, u8, 0, batchSize)}
	for i := range batchSize {
		r.single = append(r.single, sess.run(t, im, u8, i, i+1)...)
	}
	resultsBySpec[s.Name()] = r
	return r
}

// ortSpecs is every variant of tiny and, unless -short, of resnet50.
func ortSpecs(t *testing.T) []Spec {
	specs := allSpecs(ArchTiny)
	if testing.Short() {
		t.Log("-short: skipping the resnet50 variants (about 10 s of CPU inference each)")
	} else {
		specs = append(specs, allSpecs(ArchResNet50)...)
	}
	return specs
}

// TestORTMetadata checks inputs and outputs as ONNX Runtime reads them.
func TestORTMetadata(t *testing.T) {
	needORT(t)
	for _, s := range ortSpecs(t) {
		t.Run(s.Name(), func(t *testing.T) {
			path, err := Ensure(modelDir, s)
			if err != nil {
				t.Fatal(err)
			}
			ins, outs, err := ort.GetInputOutputInfo(path)
			if err != nil {
				t.Fatal(err)
			}
			wantIn := ort.InputOutputInfo{Name: "input", OrtValueType: ort.ONNXTypeTensor,
				Dimensions: ort.NewShape(-1, 3, 224, 224), DataType: ort.TensorElementDataTypeFloat}
			if s.Input == Uint8 {
				wantIn.Dimensions = ort.NewShape(-1, 224, 224, 3)
				wantIn.DataType = ort.TensorElementDataTypeUint8
			}
			wantOut := ort.InputOutputInfo{Name: "output", OrtValueType: ort.ONNXTypeTensor,
				Dimensions: ort.NewShape(-1, 1000), DataType: ort.TensorElementDataTypeFloat}
			if len(ins) != 1 || !sameInfo(ins[0], wantIn) {
				t.Errorf("inputs %v, want [%v]", ins, &wantIn)
			}
			if len(outs) != 1 || !sameInfo(outs[0], wantOut) {
				t.Errorf("outputs %v, want [%v]", outs, &wantOut)
			}
			md, err := ort.GetModelMetadata(path)
			if err != nil {
				t.Fatal(err)
			}
			defer md.Destroy()
			producer, _ := md.GetProducerName()
			name, ok, err := md.LookupCustomMetadataMap("inferd.name")
			if producer != "inferd-modelgen" || !ok || err != nil || name != s.Name() {
				t.Errorf("producer %q, inferd.name %q (%v, %v)", producer, name, ok, err)
			}
		})
	}
}

func sameInfo(a, b ort.InputOutputInfo) bool {
	return a.Name == b.Name && a.OrtValueType == b.OrtValueType && a.DataType == b.DataType &&
		slices.Equal(a.Dimensions, b.Dimensions)
}

// TestORTRun runs every variant: outputs are [N,1000], batching does not
// change them, probabilities sum to one and are neither uniform nor one-hot,
// and different images get different outputs.
func TestORTRun(t *testing.T) {
	for _, s := range ortSpecs(t) {
		t.Run(s.Name(), func(t *testing.T) {
			r := results(t, s)
			tol := 1e-5
			if s.DType == Float16 {
				tol = 1e-2
			}
			var worst float64
			for i := range batchSize {
				d := maxAbsDiff(r.batch[i], r.single[i])
				if !(d <= tol) {
					t.Errorf("image %d: batch of %d and single run differ by %g (tolerance %g)", i, batchSize, d, tol)
				}
				worst = max(worst, d)
			}
			t.Logf("batch and single runs differ by up to %.2g", worst)
			for i, row := range r.batch {
				for j, v := range row {
					if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
						t.Fatalf("row %d class %d: %v", i, j, v)
					}
				}
				for j := range i {
					if d := maxAbsDiff(row, r.batch[j]); d < 1e-4 {
						t.Errorf("images %d and %d: outputs differ by only %g", j, i, d)
					}
				}
			}
			if s.Logits {
				// The server may apply the softmax itself: it must match the
				// probabilities model's.
				p := results(t, Spec{Arch: s.Arch, DType: s.DType, Input: s.Input, Seed: s.Seed})
				for i, row := range r.batch {
					if d := maxAbsDiff(softmax(row), p.batch[i]); d > 1e-5 {
						t.Errorf("image %d: softmax of logits differs from probabilities by %g", i, d)
					}
				}
				return
			}
			for i, row := range r.batch {
				var sum float64
				for _, v := range row {
					sum += float64(v)
				}
				mx := slices.Max(row)
				if math.Abs(sum-1) > 1e-4 || mx < 0.002 || mx > 0.9 || slices.Min(row) < 0 {
					t.Errorf("image %d: probabilities sum to %v, max %v, min %v", i, sum, mx, slices.Min(row))
				}
			}
			t.Logf("max probabilities %v", mapRows(r.batch, func(row []float32) string { return fmt.Sprintf("%.3f", slices.Max(row)) }))
		})
	}
}

// TestORTUint8MatchesFloat32 checks the in-graph cast, transpose and
// normalisation: the uint8 model on raw pixels equals the float32 model on
// the same pixels normalised in Go.
func TestORTUint8MatchesFloat32(t *testing.T) {
	cases := []struct {
		s   Spec
		tol float64
	}{
		{Spec{Arch: ArchTiny}, 1e-4},
		{Spec{Arch: ArchTiny, DType: Float16}, 1e-3},
	}
	if !testing.Short() {
		cases = append(cases, struct {
			s   Spec
			tol float64
		}{Spec{}, 1e-4})
	}
	for _, c := range cases {
		f := results(t, c.s)
		u := c.s
		u.Input = Uint8
		ur := results(t, u)
		var worst float64
		for i := range batchSize {
			d := maxAbsDiff(f.batch[i], ur.batch[i])
			if !(d <= c.tol) {
				t.Errorf("%s image %d: uint8 and float32 inputs differ by %g (tolerance %g)", c.s.Name(), i, d, c.tol)
			}
			worst = max(worst, d)
		}
		t.Logf("%s: uint8 and float32 inputs differ by up to %.2g", c.s.Name(), worst)
	}
}

// TestORTFloat16MatchesFloat32 checks that the float16 models compute the
// same function as the float32 ones, up to float16 precision.
func TestORTFloat16MatchesFloat32(t *testing.T) {
	// Float16 weights and activations (relative precision 2⁻¹¹) through 50
	// layers move resnet50's larger probabilities by a few hundredths.
	tols := map[string]float64{ArchTiny: 5e-3, ArchResNet50: 5e-2}
	specs := []Spec{{Arch: ArchTiny}}
	if !testing.Short() {
		specs = append(specs, Spec{Arch: ArchResNet50})
	}
	for _, s := range specs {
		f := results(t, s)
		h := s
		h.DType = Float16
		hr := results(t, h)
		var worst float64
		for i := range batchSize {
			worst = max(worst, maxAbsDiff(f.batch[i], hr.batch[i]))
		}
		if tol := tols[s.Arch]; !(worst <= tol) {
			t.Errorf("%s: float16 and float32 probabilities differ by up to %g (tolerance %g)", s.Name(), worst, tol)
		}
		t.Logf("%s: float16 and float32 probabilities differ by up to %.2g", s.Name(), worst)
	}
}

func maxAbsDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	var d float64
	for i := range a {
		d = max(d, math.Abs(float64(a[i])-float64(b[i])))
	}
	return d
}

func softmax(logits []float32) []float32 {
	mx := float64(slices.Max(logits))
	out := make([]float32, len(logits))
	var sum float64
	for i, v := range logits {
		e := math.Exp(float64(v) - mx)
		sum += e
		out[i] = float32(e)
	}
	for i := range out {
		out[i] = float32(float64(out[i]) / sum)
	}
	return out
}

func mapRows(rows [][]float32, f func([]float32) string) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = f(r)
	}
	return out
}

// TestORTActivationRange checks that resnet50's activations stay far inside
// the float16 range (65504) on the test images, so that float16 inference on
// a GPU, which computes in float16 rather than upcasting as the CPU may, does
// not overflow. It exposes every ReLU and Add output as a graph output.
func TestORTActivationRange(t *testing.T) {
	needORT(t)
	if testing.Short() {
		t.Skip("-short: skipping a resnet50 run")
	}
	b, err := build(Spec{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range b.g.nodes {
		if n.opType != "Relu" && n.opType != "Add" {
			continue
		}
		vi := valueInfo{name: n.outputs[0], dtype: typeFloat, dims: []dim{{param: "N"}}}
		for _, d := range b.shapes[n.outputs[0]] {
			vi.dims = append(vi.dims, dim{value: d})
		}
		b.g.outputs = append(b.g.outputs, vi)
		names = append(names, vi.name)
	}
	path := filepath.Join(t.TempDir(), "activations.onnx")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := encodeModel(&b.g).writeTo(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	sess, err := ort.NewDynamicAdvancedSession(path, []string{InputName}, names, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Destroy()
	im := testBatch()
	const n = 2
	input, err := ort.NewTensor(ort.NewShape(n, 3, ImageSize, ImageSize), im.normalised[:n*3*ImageSize*ImageSize])
	if err != nil {
		t.Fatal(err)
	}
	defer input.Destroy()
	outs := make([]ort.Value, len(names))
	if err := sess.Run([]ort.Value{input}, outs); err != nil {
		t.Fatal(err)
	}
	var peak float64
	var where string
	for i, o := range outs {
		var m float64
		for _, v := range o.(*ort.Tensor[float32]).GetData() {
			m = max(m, math.Abs(float64(v)))
		}
		o.Destroy()
		if m > peak {
			peak, where = m, names[i]
		}
	}
	t.Logf("largest activation %.3g, at %s", peak, where)
	if !(peak < 1000) {
		t.Errorf("largest activation %g at %s: too close to the float16 limit", peak, where)
	}
}

// BenchmarkORT measures inference of a batch of 8 on the CPU, per model.
func BenchmarkORT(b *testing.B) {
	needORT(b)
	im := testBatch()
	for _, s := range []Spec{{Arch: ArchTiny}, {}, {DType: Float16}} {
		b.Run(s.Name(), func(b *testing.B) {
			path, err := Ensure(modelDir, s)
			if err != nil {
				b.Fatal(err)
			}
			sess := openSession(b, path)
			sess.run(b, im, false, 0, batchSize) // warm up
			b.ResetTimer()
			for b.Loop() {
				sess.run(b, im, false, 0, batchSize)
			}
			b.ReportMetric(float64(b.N*batchSize)/b.Elapsed().Seconds(), "images/s")
		})
	}
}

// BenchmarkGenerate measures writing the model to memory.
func BenchmarkGenerate(b *testing.B) {
	for _, s := range []Spec{{Arch: ArchTiny}, {}, {DType: Float16}} {
		b.Run(s.Name(), func(b *testing.B) {
			for b.Loop() {
				if _, err := Bytes(s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
