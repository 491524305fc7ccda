package model

import (
	"fmt"
	"slices"
)

// dataType is an ONNX TensorProto.DataType.
type dataType int32

const (
	typeFloat   dataType = 1
	typeUint8   dataType = 2
	typeInt64   dataType = 7
	typeFloat16 dataType = 10
)

// size is the width of one element in bytes.
func (d dataType) size() int64 {
	switch d {
	case typeUint8:
		return 1
	case typeFloat16:
		return 2
	case typeFloat:
		return 4
	case typeInt64:
		return 8
	}
	panic(fmt.Sprintf("model: no size for data type %d", d))
}

// attribute is one NodeProto attribute; kind is an AttributeType.
type attribute struct {
	name string
	kind int
	f    float32
	i    int64
	s    string
	ints []int64
}

func intAttr(name string, v int64) attribute {
	return attribute{name: name, kind: attrTypeInt, i: v}
}

func intsAttr(name string, v ...int64) attribute {
	return attribute{name: name, kind: attrTypeInts, ints: v}
}

// node is one NodeProto of the default domain.
type node struct {
	name, opType    string
	inputs, outputs []string
	attrs           []attribute
}

// tensor is an initializer. Its payload is produced on demand by fill, which
// writes exactly rawSize little-endian bytes.
type tensor struct {
	name  string
	dtype dataType
	dims  []int64
	param bool // a learned weight (counted by Stats), not a constant
	fill  func(dst []byte)
}

func (t *tensor) numel() int64 {
	n := int64(1)
	for _, d := range t.dims {
		n *= d
	}
	return n
}

func (t *tensor) rawSize() int64 { return t.numel() * t.dtype.size() }

// dim is one dimension of a graph input or output: symbolic when param is set.
type dim struct {
	param string
	value int64
}

// valueInfo describes a tensor-typed graph input or output.
type valueInfo struct {
	name  string
	dtype dataType
	dims  []dim
}

// graph is everything needed to write a model.
type graph struct {
	name, doc       string
	modelDoc        string
	nodes           []node
	inits           []tensor
	inputs, outputs []valueInfo
	metadata        [][2]string
}

// builder assembles a graph, tracking the per-image shape (without the batch
// dimension) of every value so that it can count parameters and MACs.
type builder struct {
	g       graph
	seed    uint64
	compute dataType // element type of weights and activations
	shapes  map[string][]int64
	used    map[string]bool // node and value names (never iterated)
	params  int64
	macs    int64
	err     error
}

func newBuilder(seed uint64, compute dataType) *builder {
	return &builder{
		seed:    seed,
		compute: compute,
		shapes:  make(map[string][]int64),
		used:    make(map[string]bool),
	}
}

func (b *builder) fail(format string, args ...any) {
	if b.err == nil {
		b.err = fmt.Errorf(format, args...)
	}
}

func (b *builder) claim(name string) {
	if b.used[name] {
		b.fail("duplicate name %q", name)
	}
	b.used[name] = true
}

func (b *builder) shape(v string) []int64 {
	s, ok := b.shapes[v]
	if !ok {
		b.fail("unknown value %q", v)
		return []int64{0, 0, 0}
	}
	return s
}

// input declares a graph input with a symbolic batch dimension "N" followed
// by the per-image dims.
func (b *builder) input(name string, dtype dataType, dims ...int64) string {
	b.claim(name)
	vi := valueInfo{name: name, dtype: dtype, dims: []dim{{param: "N"}}}
	for _, d := range dims {
		vi.dims = append(vi.dims, dim{value: d})
	}
	b.g.inputs = append(b.g.inputs, vi)
	b.shapes[name] = dims
	return name
}

// output renames the value produced by the last node to name and declares it
// as a graph output with a symbolic batch dimension.
func (b *builder) output(name string, dtype dataType) {
	last := &b.g.nodes[len(b.g.nodes)-1]
	dims := b.shape(last.outputs[0])
	b.claim(name)
	b.shapes[name] = dims
	last.outputs[0] = name
	vi := valueInfo{name: name, dtype: dtype, dims: []dim{{param: "N"}}}
	for _, d := range dims {
		vi.dims = append(vi.dims, dim{value: d})
	}
	b.g.outputs = append(b.g.outputs, vi)
}

// op appends a node whose single output value shares the node's name and has
// the given per-image shape.
func (b *builder) op(opType, name string, shape []int64, inputs []string, attrs ...attribute) string {
	b.claim(name)
	b.g.nodes = append(b.g.nodes, node{
		name:    name,
		opType:  opType,
		inputs:  inputs,
		outputs: []string{name},
		attrs:   attrs,
	})
	b.shapes[name] = shape
	return name
}

// initializer adds a tensor of the compute type (or an explicit type).
func (b *builder) initializer(t tensor) string {
	b.claim(t.name)
	b.g.inits = append(b.g.inits, t)
	if t.param {
		b.params += t.numel()
	}
	return t.name
}

// weight adds a learned tensor of the compute type drawn from N(0, std²);
// centred rows (the last dimension) have their mean subtracted.
func (b *builder) weight(name string, dims []int64, std float64, centred bool) string {
	t := tensor{name: name, dtype: b.compute, dims: dims, param: true}
	row := dims[len(dims)-1]
	if !centred {
		row = 0
	}
	seed, dtype := b.seed, b.compute
	t.fill = func(dst []byte) {
		vals := normals(seed, name, int(t.numel()), std)
		if row > 0 {
			centreRows(vals, int(row))
		}
		encodeFloats(dst, vals, dtype)
	}
	return b.initializer(t)
}

// constant adds a float32 constant tensor (not counted as a parameter).
func (b *builder) constant(name string, dims []int64, vals []float32) string {
	vals = slices.Clone(vals)
	return b.initializer(tensor{name: name, dtype: typeFloat, dims: dims, fill: func(dst []byte) {
		encodeFloats(dst, vals, typeFloat)
	}})
}

// conv adds a Conv with bias (batch norm folded in), "same"-style padding
// (k-1)/2, and He-normal weights scaled by gain.
func (b *builder) conv(name, x string, cout, k, stride int, gain float64) string {
	in := b.shape(x)
	if len(in) != 3 {
		b.fail("conv %s: input %s has shape %v, want [C,H,W]", name, x, in)
		return name
	}
	cin, h, w := in[0], in[1], in[2]
	pad := int64((k - 1) / 2)
	kk, s := int64(k), int64(stride)
	oh := (h+2*pad-kk)/s + 1
	ow := (w+2*pad-kk)/s + 1
	fanIn := cin * kk * kk
	std := gain * sqrt(2/float64(fanIn))
	wName := b.weight(name+".weight", []int64{int64(cout), cin, kk, kk}, std, false)
	bName := b.weight(name+".bias", []int64{int64(cout)}, biasStd, false)
	b.macs += int64(cout) * oh * ow * fanIn
	return b.op("Conv", name, []int64{int64(cout), oh, ow}, []string{x, wName, bName},
		intsAttr("kernel_shape", kk, kk),
		intsAttr("pads", pad, pad, pad, pad),
		intsAttr("strides", s, s),
	)
}

func (b *builder) relu(name, x string) string {
	return b.op("Relu", name, b.shape(x), []string{x})
}

func (b *builder) add(name, x, y string) string {
	if !slices.Equal(b.shape(x), b.shape(y)) {
		b.fail("add %s: shapes %v and %v differ", name, b.shape(x), b.shape(y))
	}
	return b.op("Add", name, b.shape(x), []string{x, y})
}

func (b *builder) maxPool(name, x string, k, stride, pad int64) string {
	in := b.shape(x)
	oh := (in[1]+2*pad-k)/stride + 1
	ow := (in[2]+2*pad-k)/stride + 1
	return b.op("MaxPool", name, []int64{in[0], oh, ow}, []string{x},
		intsAttr("kernel_shape", k, k),
		intsAttr("pads", pad, pad, pad, pad),
		intsAttr("strides", stride, stride),
	)
}

func (b *builder) globalAveragePool(name, x string) string {
	return b.op("GlobalAveragePool", name, []int64{b.shape(x)[0], 1, 1}, []string{x})
}

func (b *builder) flatten(name, x string) string {
	n := int64(1)
	for _, d := range b.shape(x) {
		n *= d
	}
	return b.op("Flatten", name, []int64{n}, []string{x}, intAttr("axis", 1))
}

// gemm adds a fully connected layer y = x·Wᵀ + c with W [out, in] drawn from
// N(0, std²) with centred rows, so a feature common to all inputs adds the
// same amount to every class.
func (b *builder) gemm(name, x string, out int64, std float64) string {
	in := b.shape(x)
	if len(in) != 1 {
		b.fail("gemm %s: input %s has shape %v, want [F]", name, x, in)
		return name
	}
	wName := b.weight(name+".weight", []int64{out, in[0]}, std, true)
	bName := b.weight(name+".bias", []int64{out}, biasStd, false)
	b.macs += out * in[0]
	return b.op("Gemm", name, []int64{out}, []string{x, wName, bName}, intAttr("transB", 1))
}

func (b *builder) cast(name, x string, to dataType) string {
	return b.op("Cast", name, b.shape(x), []string{x}, intAttr("to", int64(to)))
}

func (b *builder) softmax(name, x string) string {
	return b.op("Softmax", name, b.shape(x), []string{x}, intAttr("axis", 1))
}

func (b *builder) transpose(name, x string, perm ...int64) string {
	if perm[0] != 0 {
		b.fail("transpose %s: perm %v moves the batch axis", name, perm)
		return name
	}
	in := b.shape(x)
	out := make([]int64, len(in))
	for i, p := range perm[1:] { // perm[0] is the batch axis, which stays put
		out[i] = in[p-1]
	}
	return b.op("Transpose", name, out, []string{x}, intsAttr("perm", perm...))
}

// binary adds an elementwise op (Sub, Div, ...) whose second operand
// broadcasts to the first.
func (b *builder) binary(opType, name, x, y string) string {
	return b.op(opType, name, b.shape(x), []string{x, y})
}
