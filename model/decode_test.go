package model

import (
	"fmt"
	"math"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// This file decodes the models back with protowire, independently of the
// encoder's data structures, so tests can check what was actually written.

type decodedModel struct {
	irVersion    int64
	producerName string
	opsets       map[string]int64
	metadata     map[string]string
	graph        decodedGraph
}

type decodedGraph struct {
	name            string
	nodes           []decodedNode
	inits           []decodedTensor
	inputs, outputs []decodedValueInfo
}

type decodedNode struct {
	name, opType    string
	inputs, outputs []string
	ints            map[string][]int64 // INT and INTS attributes
}

type decodedTensor struct {
	name     string
	dataType int64
	dims     []int64
	raw      []byte
}

type decodedValueInfo struct {
	name     string
	elemType int64
	dims     []string // dim_value as a number, or dim_param
}

// field is one decoded protobuf field.
type field struct {
	num   protowire.Number
	typ   protowire.Type
	v     uint64 // varint and fixed32 values
	bytes []byte
}

func fields(b []byte) ([]field, error) {
	var out []field
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		f := field{num: num, typ: typ}
		switch typ {
		case protowire.VarintType:
			f.v, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var v uint32
			v, n = protowire.ConsumeFixed32(b)
			f.v = uint64(v)
		case protowire.BytesType:
			f.bytes, n = protowire.ConsumeBytes(b)
		default:
			return nil, fmt.Errorf("unexpected wire type %d for field %d", typ, num)
		}
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		out = append(out, f)
	}
	return out, nil
}

func decodeModel(b []byte) (*decodedModel, error) {
	fs, err := fields(b)
	if err != nil {
		return nil, err
	}
	m := &decodedModel{opsets: map[string]int64{}, metadata: map[string]string{}}
	for _, f := range fs {
		switch f.num {
		case 1:
			m.irVersion = int64(f.v)
		case 2:
			m.producerName = string(f.bytes)
		case 7:
			if m.graph, err = decodeGraph(f.bytes); err != nil {
				return nil, fmt.Errorf("graph: %w", err)
			}
		case 8:
			sub, err := fields(f.bytes)
			if err != nil {
				return nil, err
			}
			var domain string
			var version int64
			for _, s := range sub {
				switch s.num {
				case 1:
					domain = string(s.bytes)
				case 2:
					version = int64(s.v)
				}
			}
			m.opsets[domain] = version
		case 14:
			sub, err := fields(f.bytes)
			if err != nil {
				return nil, err
			}
			var k, v string
			for _, s := range sub {
				switch s.num {
				case 1:
					k = string(s.bytes)
				case 2:
					v = string(s.bytes)
				}
			}
			m.metadata[k] = v
		}
	}
	return m, nil
}

func decodeGraph(b []byte) (decodedGraph, error) {
	var g decodedGraph
	fs, err := fields(b)
	if err != nil {
		return g, err
	}
	for _, f := range fs {
		switch f.num {
		case 1:
			n, err := decodeNode(f.bytes)
			if err != nil {
				return g, err
			}
			g.nodes = append(g.nodes, n)
		case 2:
			g.name = string(f.bytes)
		case 5:
			t, err := decodeTensor(f.bytes)
			if err != nil {
				return g, err
			}
			g.inits = append(g.inits, t)
		case 11, 12:
			v, err := decodeValueInfo(f.bytes)
			if err != nil {
				return g, err
			}
			if f.num == 11 {
				g.inputs = append(g.inputs, v)
			} else {
				g.outputs = append(g.outputs, v)
			}
		}
	}
	return g, nil
}

func decodeNode(b []byte) (decodedNode, error) {
	n := decodedNode{ints: map[string][]int64{}}
	fs, err := fields(b)
	if err != nil {
		return n, err
	}
	for _, f := range fs {
		switch f.num {
		case 1:
			n.inputs = append(n.inputs, string(f.bytes))
		case 2:
			n.outputs = append(n.outputs, string(f.bytes))
		case 3:
			n.name = string(f.bytes)
		case 4:
			n.opType = string(f.bytes)
		case 5:
			sub, err := fields(f.bytes)
			if err != nil {
				return n, err
			}
			var name string
			var ints []int64
			var typ uint64
			for _, s := range sub {
				switch s.num {
				case 1:
					name = string(s.bytes)
				case 3, 8:
					ints = append(ints, int64(s.v))
				case 20:
					typ = s.v
				}
			}
			if typ == attrTypeInt || typ == attrTypeInts {
				n.ints[name] = ints
			}
		}
	}
	return n, nil
}

func decodeTensor(b []byte) (decodedTensor, error) {
	var t decodedTensor
	fs, err := fields(b)
	if err != nil {
		return t, err
	}
	for _, f := range fs {
		switch f.num {
		case 1:
			t.dims = append(t.dims, int64(f.v))
		case 2:
			t.dataType = int64(f.v)
		case 8:
			t.name = string(f.bytes)
		case 9:
			t.raw = f.bytes
		default:
			return t, fmt.Errorf("tensor: unexpected field %d", f.num)
		}
	}
	return t, nil
}

func decodeValueInfo(b []byte) (decodedValueInfo, error) {
	var v decodedValueInfo
	fs, err := fields(b)
	if err != nil {
		return v, err
	}
	for _, f := range fs {
		switch f.num {
		case 1:
			v.name = string(f.bytes)
		case 2: // TypeProto
			typ, err := fields(f.bytes)
			if err != nil || len(typ) != 1 || typ[0].num != 1 {
				return v, fmt.Errorf("value %s: not a tensor type", v.name)
			}
			tt, err := fields(typ[0].bytes)
			if err != nil {
				return v, err
			}
			for _, t := range tt {
				switch t.num {
				case 1:
					v.elemType = int64(t.v)
				case 2:
					dims, err := fields(t.bytes)
					if err != nil {
						return v, err
					}
					for _, d := range dims {
						dd, err := fields(d.bytes)
						if err != nil || len(dd) != 1 {
							return v, fmt.Errorf("value %s: bad dimension", v.name)
						}
						if dd[0].num == 1 {
							v.dims = append(v.dims, fmt.Sprint(int64(dd[0].v)))
						} else {
							v.dims = append(v.dims, string(dd[0].bytes))
						}
					}
				}
			}
		}
	}
	return v, nil
}

// graphStats counts the parameters (initializers named *.weight or *.bias)
// and the MACs per image of Conv and Gemm nodes of a decoded graph, inferring
// the spatial sizes from the graph's own attributes.
func graphStats(g decodedGraph) (params, macs, biases int64, err error) {
	inits := map[string]decodedTensor{}
	for _, t := range g.inits {
		inits[t.name] = t
		n := int64(1)
		for _, d := range t.dims {
			n *= d
		}
		if strings.HasSuffix(t.name, ".weight") || strings.HasSuffix(t.name, ".bias") {
			params += n
		}
	}
	shapes := map[string][]int64{} // per image
	in := g.inputs[0]
	for _, d := range in.dims[1:] {
		var v int64
		fmt.Sscan(d, &v)
		shapes[in.name] = append(shapes[in.name], v)
	}
	for _, n := range g.nodes {
		x := shapes[n.inputs[0]]
		var out []int64
		switch n.opType {
		case "Conv", "MaxPool":
			k, s, p := n.ints["kernel_shape"], n.ints["strides"], n.ints["pads"]
			c := x[0]
			if n.opType == "Conv" {
				w := inits[n.inputs[1]]
				c = w.dims[0]
				if w.dims[1] != x[0] || w.dims[2] != k[0] || w.dims[3] != k[1] {
					return 0, 0, 0, fmt.Errorf("%s: weight %v does not fit input %v, kernel %v", n.name, w.dims, x, k)
				}
				biases += inits[n.inputs[2]].dims[0]
			}
			out = []int64{c, (x[1]+p[0]+p[2]-k[0])/s[0] + 1, (x[2]+p[1]+p[3]-k[1])/s[1] + 1}
			if n.opType == "Conv" {
				w := inits[n.inputs[1]].dims
				macs += out[0] * out[1] * out[2] * w[1] * w[2] * w[3]
			}
		case "Gemm":
			w := inits[n.inputs[1]].dims
			if n.ints["transB"][0] != 1 || w[1] != x[0] {
				return 0, 0, 0, fmt.Errorf("%s: weight %v does not fit input %v", n.name, w, x)
			}
			out = []int64{w[0]}
			macs += w[0] * w[1]
		case "GlobalAveragePool":
			out = []int64{x[0], 1, 1}
		case "Flatten":
			out = []int64{x[0] * x[1] * x[2]}
		case "Transpose":
			perm := n.ints["perm"]
			for _, p := range perm[1:] {
				out = append(out, x[p-1])
			}
		default: // elementwise
			out = x
		}
		if slicesHasNonPositive(out) {
			return 0, 0, 0, fmt.Errorf("%s: bad output shape %v", n.name, out)
		}
		shapes[n.outputs[0]] = out
	}
	return params, macs, biases, nil
}

func slicesHasNonPositive(s []int64) bool {
	for _, v := range s {
		if v <= 0 {
			return true
		}
	}
	return len(s) == 0
}

// float16ToFloat32 decodes IEEE 754 binary16.
func float16ToFloat32(h uint16) float32 {
	sign := float32(1)
	if h&0x8000 != 0 {
		sign = -1
	}
	exp := int(h>>10) & 0x1f
	mant := float64(h & 0x3ff)
	switch exp {
	case 0:
		return sign * float32(math.Ldexp(mant, -24))
	case 0x1f:
		if mant != 0 {
			return float32(math.NaN())
		}
		return sign * float32(math.Inf(1))
	}
	return sign * float32(math.Ldexp(1024+mant, exp-25))
}
