package model

import (
	"bytes"
	"encoding/binary"
	"math"
	"slices"
	"strings"
	"testing"
)

// allSpecs lists every variant of arch: {float32,float16} × {float32,uint8}
// input, plus the float32 logits model.
func allSpecs(arch string) []Spec {
	var out []Spec
	for _, dt := range []string{Float32, Float16} {
		for _, in := range []string{Float32, Uint8} {
			out = append(out, Spec{Arch: arch, DType: dt, Input: in})
		}
	}
	return append(out, Spec{Arch: arch, Logits: true})
}

func TestName(t *testing.T) {
	for _, c := range []struct {
		s    Spec
		want string
	}{
		{Spec{}, "resnet50"},
		{Spec{Arch: "resnet50", DType: "float32", Input: "float32", Seed: 1}, "resnet50"},
		{Spec{DType: "float16"}, "resnet50-fp16"},
		{Spec{Input: "uint8"}, "resnet50-uint8"},
		{Spec{Arch: "tiny", DType: "float16", Input: "uint8", Seed: 7}, "tiny-fp16-uint8-seed7"},
		{Spec{Arch: "tiny", Logits: true}, "tiny-logits"},
		{Spec{Arch: "tiny", DType: "float16", Input: "uint8", Logits: true, Seed: 2}, "tiny-fp16-uint8-logits-seed2"},
	} {
		if got := c.s.Name(); got != c.want {
			t.Errorf("%+v.Name() = %q, want %q", c.s, got, c.want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, s := range []Spec{{Arch: "vgg"}, {DType: "int8"}, {Input: "float16"}} {
		err := s.Validate()
		if err == nil {
			t.Errorf("%+v: no error", s)
			continue
		}
		if _, err := Bytes(s); err == nil {
			t.Errorf("Bytes(%+v): no error", s)
		}
		if _, _, err := Stats(s); err == nil {
			t.Errorf("Stats(%+v): no error", s)
		}
		if _, err := Ensure(t.TempDir(), s); err == nil {
			t.Errorf("Ensure(%+v): no error", s)
		}
	}
	for _, s := range append(allSpecs(ArchTiny), Spec{}) {
		if err := s.Validate(); err != nil {
			t.Errorf("%+v: %v", s, err)
		}
	}
}

// TestStructure decodes every variant and checks the ONNX it contains.
func TestStructure(t *testing.T) {
	specs := allSpecs(ArchTiny)
	specs = append(specs, Spec{}, Spec{DType: Float16, Input: Uint8})
	for _, s := range specs {
		t.Run(s.Name(), func(t *testing.T) {
			b, err := Bytes(s)
			if err != nil {
				t.Fatal(err)
			}
			if size, err := Size(s); err != nil || size != int64(len(b)) {
				t.Errorf("Size = %d, %v; wrote %d bytes", size, err, len(b))
			}
			m, err := decodeModel(b)
			if err != nil {
				t.Fatal(err)
			}
			checkStructure(t, s.withDefaults(), m)
		})
	}
}

func checkStructure(t *testing.T, s Spec, m *decodedModel) {
	if m.irVersion != 8 || m.producerName != "inferd-modelgen" {
		t.Errorf("ir_version %d, producer %q", m.irVersion, m.producerName)
	}
	if len(m.opsets) != 1 || m.opsets[""] != 17 {
		t.Errorf("opsets %v, want only \"\": 17", m.opsets)
	}
	if m.metadata["inferd.name"] != s.Name() || m.graph.name != s.Name() {
		t.Errorf("metadata %v, graph name %q", m.metadata, m.graph.name)
	}
	g := m.graph

	wantIn := decodedValueInfo{name: "input", elemType: 1, dims: []string{"N", "3", "224", "224"}}
	if s.Input == Uint8 {
		wantIn = decodedValueInfo{name: "input", elemType: 2, dims: []string{"N", "224", "224", "3"}}
	}
	wantOut := decodedValueInfo{name: "output", elemType: 1, dims: []string{"N", "1000"}}
	if len(g.inputs) != 1 || !sameValueInfo(g.inputs[0], wantIn) {
		t.Errorf("inputs %+v, want [%+v]", g.inputs, wantIn)
	}
	if len(g.outputs) != 1 || !sameValueInfo(g.outputs[0], wantOut) {
		t.Errorf("outputs %+v, want [%+v]", g.outputs, wantOut)
	}

	// Initializers: unique names, payload sizes match, finite values, the
	// compute type for learned weights.
	defined := map[string]bool{"input": true}
	compute := int64(typeFloat)
	if s.DType == Float16 {
		compute = int64(typeFloat16)
	}
	for _, ti := range g.inits {
		if defined[ti.name] {
			t.Errorf("initializer %q defined twice", ti.name)
		}
		defined[ti.name] = true
		n := int64(1)
		for _, d := range ti.dims {
			n *= d
		}
		want := compute
		if strings.HasPrefix(ti.name, "preprocess.") {
			want = int64(typeFloat)
		}
		if ti.dataType != want {
			t.Errorf("initializer %s has data type %d, want %d", ti.name, ti.dataType, want)
			continue
		}
		if int64(len(ti.raw)) != n*dataType(ti.dataType).size() {
			t.Errorf("initializer %s: %d bytes for dims %v", ti.name, len(ti.raw), ti.dims)
			continue
		}
		for i := range n {
			var v float32
			if ti.dataType == int64(typeFloat16) {
				v = float16ToFloat32(binary.LittleEndian.Uint16(ti.raw[2*i:]))
			} else {
				v = math.Float32frombits(binary.LittleEndian.Uint32(ti.raw[4*i:]))
			}
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) || math.Abs(float64(v)) > 1000 {
				t.Errorf("initializer %s[%d] = %v", ti.name, i, v)
				break
			}
		}
	}

	// Nodes: topologically sorted, every value defined once, readable names.
	names := map[string]bool{}
	ops := map[string]int{}
	for _, n := range g.nodes {
		if n.name == "" || names[n.name] {
			t.Errorf("node name %q empty or repeated", n.name)
		}
		names[n.name] = true
		ops[n.opType]++
		for _, in := range n.inputs {
			if !defined[in] {
				t.Errorf("node %s reads %q before it is defined", n.name, in)
			}
		}
		for _, out := range n.outputs {
			if defined[out] {
				t.Errorf("node %s redefines %q", n.name, out)
			}
			defined[out] = true
		}
	}
	if last := g.nodes[len(g.nodes)-1]; !slices.Equal(last.outputs, []string{"output"}) {
		t.Errorf("last node %s writes %v, want [output]", last.name, last.outputs)
	}

	want := map[string]int{"Relu": 2, "Conv": 2, "GlobalAveragePool": 1, "Flatten": 1, "Gemm": 1}
	if s.Arch == ArchResNet50 {
		want = map[string]int{"Relu": 49, "Conv": 53, "Add": 16, "MaxPool": 1, "GlobalAveragePool": 1, "Flatten": 1, "Gemm": 1}
	}
	if !s.Logits {
		want["Softmax"] = 1
	}
	if s.Input == Uint8 {
		want["Transpose"], want["Cast"], want["Sub"], want["Div"] = 1, 1, 1, 1
	}
	if s.DType == Float16 {
		want["Cast"] += 2
	}
	for op, n := range want {
		if ops[op] != n {
			t.Errorf("%d %s nodes, want %d", ops[op], op, n)
		}
	}
	if len(ops) != len(want) {
		t.Errorf("op counts %v, want %v", ops, want)
	}
}

func sameValueInfo(a, b decodedValueInfo) bool {
	return a.name == b.name && a.elemType == b.elemType && slices.Equal(a.dims, b.dims)
}

// TestStats checks Stats against the parameters and MACs counted from the
// written graph, and ResNet-50's against torchvision's figures.
func TestStats(t *testing.T) {
	for _, s := range []Spec{{}, {Arch: ArchTiny}, {DType: Float16, Input: Uint8}} {
		b, err := Bytes(s)
		if err != nil {
			t.Fatal(err)
		}
		m, err := decodeModel(b)
		if err != nil {
			t.Fatal(err)
		}
		params, macs, biases, err := graphStats(m.graph)
		if err != nil {
			t.Fatal(err)
		}
		sp, sm, err := Stats(s)
		if err != nil {
			t.Fatal(err)
		}
		if sp != params || sm != macs {
			t.Errorf("%s: Stats = %d params, %d MACs; the graph has %d, %d", s.Name(), sp, sm, params, macs)
		}
		t.Logf("%s: %d parameters (%d conv biases), %d MACs per image, %d bytes", s.Name(), params, biases, macs, len(b))
		if s.withDefaults().Arch != ArchResNet50 {
			continue
		}
		// torchvision's resnet50 has 25,557,032 parameters, counting two per
		// batch-norm channel (γ, β); folding leaves one bias per conv channel.
		const torchvision = 25_557_032
		if params+biases != torchvision {
			t.Errorf("%d params + %d folded batch-norm channels = %d, want torchvision's %d", params, biases, params+biases, torchvision)
		}
		if math.Abs(float64(params)/25.5e6-1) > 0.01 {
			t.Errorf("%d params, not within 1%% of 25.5 M", params)
		}
		if math.Abs(float64(macs)/4.1e9-1) > 0.01 {
			t.Errorf("%d MACs, not within 1%% of 4.1 G", macs)
		}
	}
}

func TestDeterministic(t *testing.T) {
	specs := allSpecs(ArchTiny)
	if !testing.Short() {
		specs = append(specs, Spec{})
	}
	for _, s := range specs {
		a, err := Bytes(s)
		if err != nil {
			t.Fatal(err)
		}
		b, err := Bytes(s)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s: two generations differ", s.Name())
		}
		var w bytes.Buffer
		if err := Write(&w, s); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, w.Bytes()) {
			t.Errorf("%s: Write and Bytes differ", s.Name())
		}
		s1 := s
		s1.Seed = 0 // the default, 1
		if c, _ := Bytes(s1); !bytes.Equal(a, c) {
			t.Errorf("%s: seed 0 differs from seed 1", s.Name())
		}
		s2 := s
		s2.Seed = 2
		c, err := Bytes(s2)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(a, c) {
			t.Errorf("%s: seeds 1 and 2 give the same model", s.Name())
		}
		ma, _ := decodeModel(a)
		mc, err := decodeModel(c)
		if err != nil {
			t.Fatal(err)
		}
		for i, ti := range ma.graph.inits {
			if strings.HasSuffix(ti.name, ".weight") && bytes.Equal(ti.raw, mc.graph.inits[i].raw) {
				t.Errorf("%s: %s is the same with seeds 1 and 2", s.Name(), ti.name)
			}
		}
	}
}

// TestWeightsShared checks that a seed gives the same weights in every
// variant: float16 ones are the float32 ones rounded.
func TestWeightsShared(t *testing.T) {
	get := func(s Spec) map[string]decodedTensor {
		b, err := Bytes(s)
		if err != nil {
			t.Fatal(err)
		}
		m, err := decodeModel(b)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]decodedTensor{}
		for _, ti := range m.graph.inits {
			out[ti.name] = ti
		}
		return out
	}
	f32 := get(Spec{Arch: ArchTiny})
	u8 := get(Spec{Arch: ArchTiny, Input: Uint8, Logits: true})
	f16 := get(Spec{Arch: ArchTiny, DType: Float16})
	for name, w := range f32 {
		if !bytes.Equal(w.raw, u8[name].raw) {
			t.Errorf("%s differs between float32 and uint8-input logits models", name)
		}
		h := f16[name]
		for i := range len(w.raw) / 4 {
			v := math.Float32frombits(binary.LittleEndian.Uint32(w.raw[4*i:]))
			if got := binary.LittleEndian.Uint16(h.raw[2*i:]); got != float16Bits(v) {
				t.Errorf("%s[%d]: float16 %#04x, want %#04x (%v)", name, i, got, float16Bits(v), v)
				break
			}
		}
	}
}

func TestFloat16Bits(t *testing.T) {
	for _, c := range []struct {
		f    float32
		want uint16
	}{
		{0, 0}, {float32(math.Copysign(0, -1)), 0x8000}, {1, 0x3c00}, {-2, 0xc000}, {0.1, 0x2e66},
		{1.0 / 3, 0x3555}, {65504, 0x7bff}, {65519, 0x7bff}, {65520, 0x7c00}, {1e6, 0x7c00},
		{-1e6, 0xfc00}, {float32(math.Inf(1)), 0x7c00}, {0x1p-24, 0x0001}, {0x1p-25, 0},
		{0x1.8p-25, 0x0001}, {0x1p-14, 0x0400}, {1e-10, 0},
	} {
		if got := float16Bits(c.f); got != c.want {
			t.Errorf("float16Bits(%v) = %#04x, want %#04x", c.f, got, c.want)
		}
	}
	if got := float16Bits(float32(math.NaN())); got&0x7c00 != 0x7c00 || got&0x3ff == 0 {
		t.Errorf("float16Bits(NaN) = %#04x", got)
	}
	for h := range 0x10000 {
		f := float16ToFloat32(uint16(h))
		if math.IsNaN(float64(f)) {
			continue
		}
		if got := float16Bits(f); got != uint16(h) {
			t.Fatalf("round trip of %#04x (%v) gives %#04x", h, f, got)
		}
		if h&0x7fff >= 0x7bff {
			continue // no finite successor
		}
		// Halfway to the next value rounds to the even one; either side of
		// halfway rounds to the nearer.
		next := float16ToFloat32(uint16(h + 1))
		mid := float32((float64(f) + float64(next)) / 2)
		even := uint16(h)
		if h&1 == 1 {
			even = uint16(h + 1)
		}
		if got := float16Bits(mid); got != even {
			t.Fatalf("float16Bits(%v) halfway between %#04x and %#04x = %#04x, want %#04x", mid, h, h+1, got, even)
		}
		if got := float16Bits(math.Nextafter32(mid, f)); got != uint16(h) {
			t.Fatalf("just below halfway above %#04x: got %#04x", h, got)
		}
		if got := float16Bits(math.Nextafter32(mid, next)); got != uint16(h+1) {
			t.Fatalf("just above halfway above %#04x: got %#04x", h, got)
		}
	}
}
