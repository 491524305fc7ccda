package model

import (
	"bufio"
	"fmt"
	"io"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of the ONNX protobuf messages used here, from onnx/onnx.proto
// (proto2; repeated scalars are written unpacked, as the reference
// implementation does).
const (
	// ModelProto
	fModelIRVersion       protowire.Number = 1
	fModelProducerName    protowire.Number = 2
	fModelProducerVersion protowire.Number = 3
	fModelDocString       protowire.Number = 6
	fModelGraph           protowire.Number = 7
	fModelOpsetImport     protowire.Number = 8
	fModelMetadataProps   protowire.Number = 14

	// OperatorSetIdProto
	fOpsetDomain  protowire.Number = 1
	fOpsetVersion protowire.Number = 2

	// StringStringEntryProto
	fEntryKey   protowire.Number = 1
	fEntryValue protowire.Number = 2

	// GraphProto
	fGraphNode        protowire.Number = 1
	fGraphName        protowire.Number = 2
	fGraphInitializer protowire.Number = 5
	fGraphDocString   protowire.Number = 10
	fGraphInput       protowire.Number = 11
	fGraphOutput      protowire.Number = 12

	// NodeProto
	fNodeInput     protowire.Number = 1
	fNodeOutput    protowire.Number = 2
	fNodeName      protowire.Number = 3
	fNodeOpType    protowire.Number = 4
	fNodeAttribute protowire.Number = 5

	// AttributeProto
	fAttrName protowire.Number = 1
	fAttrF    protowire.Number = 2
	fAttrI    protowire.Number = 3
	fAttrS    protowire.Number = 4
	fAttrInts protowire.Number = 8
	fAttrType protowire.Number = 20

	// TensorProto
	fTensorDims     protowire.Number = 1
	fTensorDataType protowire.Number = 2
	fTensorName     protowire.Number = 8
	fTensorRawData  protowire.Number = 9

	// ValueInfoProto
	fValueInfoName protowire.Number = 1
	fValueInfoType protowire.Number = 2

	// TypeProto, TypeProto.Tensor, TensorShapeProto, TensorShapeProto.Dimension
	fTypeTensorType  protowire.Number = 1
	fTensorTypeElem  protowire.Number = 1
	fTensorTypeShape protowire.Number = 2
	fShapeDim        protowire.Number = 1
	fDimensionValue  protowire.Number = 1
	fDimensionParam  protowire.Number = 2
)

// Model-level constants written into every model.
const (
	irVersion       = 8
	opsetVersion    = 17
	producerName    = "inferd-modelgen"
	producerVersion = "1"
)

// AttributeProto.AttributeType values.
const (
	attrTypeFloat  = 1
	attrTypeInt    = 2
	attrTypeString = 3
	attrTypeInts   = 7
)

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendStringField(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendBytesField(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

// appendAttribute appends an encoded AttributeProto.
func appendAttribute(b []byte, a attribute) []byte {
	b = appendStringField(b, fAttrName, a.name)
	switch a.kind {
	case attrTypeFloat:
		b = protowire.AppendTag(b, fAttrF, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, math.Float32bits(a.f))
	case attrTypeInt:
		b = appendVarintField(b, fAttrI, uint64(a.i))
	case attrTypeString:
		b = appendStringField(b, fAttrS, a.s)
	case attrTypeInts:
		for _, v := range a.ints {
			b = appendVarintField(b, fAttrInts, uint64(v))
		}
	}
	return appendVarintField(b, fAttrType, uint64(a.kind))
}

// appendNode appends an encoded NodeProto.
func appendNode(b []byte, n *node) []byte {
	for _, in := range n.inputs {
		b = appendStringField(b, fNodeInput, in)
	}
	for _, out := range n.outputs {
		b = appendStringField(b, fNodeOutput, out)
	}
	b = appendStringField(b, fNodeName, n.name)
	b = appendStringField(b, fNodeOpType, n.opType)
	for _, a := range n.attrs {
		b = appendBytesField(b, fNodeAttribute, appendAttribute(nil, a))
	}
	return b
}

// appendValueInfo appends an encoded ValueInfoProto of a tensor.
func appendValueInfo(b []byte, v *valueInfo) []byte {
	var shape []byte
	for _, d := range v.dims {
		var dim []byte
		if d.param != "" {
			dim = appendStringField(dim, fDimensionParam, d.param)
		} else {
			dim = appendVarintField(dim, fDimensionValue, uint64(d.value))
		}
		shape = appendBytesField(shape, fShapeDim, dim)
	}
	var tt []byte
	tt = appendVarintField(tt, fTensorTypeElem, uint64(v.dtype))
	tt = appendBytesField(tt, fTensorTypeShape, shape)
	typ := appendBytesField(nil, fTypeTensorType, tt)

	b = appendStringField(b, fValueInfoName, v.name)
	return appendBytesField(b, fValueInfoType, typ)
}

// tensorHeader returns the TensorProto fields before the raw_data payload,
// ending with raw_data's tag and length, so that the payload can be streamed.
func tensorHeader(t *tensor) []byte {
	var b []byte
	for _, d := range t.dims {
		b = appendVarintField(b, fTensorDims, uint64(d))
	}
	b = appendVarintField(b, fTensorDataType, uint64(t.dtype))
	b = appendStringField(b, fTensorName, t.name)
	b = protowire.AppendTag(b, fTensorRawData, protowire.BytesType)
	return protowire.AppendVarint(b, uint64(t.rawSize()))
}

// encodedModel is a ModelProto split around its initializers' payloads: the
// payloads are generated and written one tensor at a time, so the whole
// model never has to be assembled in memory.
type encodedModel struct {
	g        *graph
	head     []byte   // model fields before the graph, and the graph's tag and length
	graphPre []byte   // graph fields before the initializers
	inits    [][]byte // per initializer: field tag, length and tensorHeader
	graphEnd []byte   // graph fields after the initializers
	tail     []byte   // model fields after the graph
	size     int64
}

func encodeModel(g *graph) *encodedModel {
	m := &encodedModel{g: g}
	for i := range g.nodes {
		m.graphPre = appendBytesField(m.graphPre, fGraphNode, appendNode(nil, &g.nodes[i]))
	}
	m.graphPre = appendStringField(m.graphPre, fGraphName, g.name)
	graphSize := int64(len(m.graphPre))
	m.inits = make([][]byte, len(g.inits))
	for i := range g.inits {
		t := &g.inits[i]
		h := tensorHeader(t)
		msgLen := uint64(len(h)) + uint64(t.rawSize())
		b := protowire.AppendTag(nil, fGraphInitializer, protowire.BytesType)
		b = protowire.AppendVarint(b, msgLen)
		m.inits[i] = append(b, h...)
		graphSize += int64(len(m.inits[i])) + t.rawSize()
	}
	if g.doc != "" {
		m.graphEnd = appendStringField(m.graphEnd, fGraphDocString, g.doc)
	}
	for i := range g.inputs {
		m.graphEnd = appendBytesField(m.graphEnd, fGraphInput, appendValueInfo(nil, &g.inputs[i]))
	}
	for i := range g.outputs {
		m.graphEnd = appendBytesField(m.graphEnd, fGraphOutput, appendValueInfo(nil, &g.outputs[i]))
	}
	graphSize += int64(len(m.graphEnd))

	m.head = appendVarintField(m.head, fModelIRVersion, irVersion)
	m.head = appendStringField(m.head, fModelProducerName, producerName)
	m.head = appendStringField(m.head, fModelProducerVersion, producerVersion)
	if g.modelDoc != "" {
		m.head = appendStringField(m.head, fModelDocString, g.modelDoc)
	}
	m.head = protowire.AppendTag(m.head, fModelGraph, protowire.BytesType)
	m.head = protowire.AppendVarint(m.head, uint64(graphSize))

	var opset []byte
	opset = appendStringField(opset, fOpsetDomain, "")
	opset = appendVarintField(opset, fOpsetVersion, opsetVersion)
	m.tail = appendBytesField(m.tail, fModelOpsetImport, opset)
	for _, kv := range g.metadata {
		var e []byte
		e = appendStringField(e, fEntryKey, kv[0])
		e = appendStringField(e, fEntryValue, kv[1])
		m.tail = appendBytesField(m.tail, fModelMetadataProps, e)
	}
	m.size = int64(len(m.head)) + graphSize + int64(len(m.tail))
	return m
}

// writeTo streams the model to w, generating each initializer's payload just
// before it is written.
func (m *encodedModel) writeTo(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	if _, err := bw.Write(m.head); err != nil {
		return fmt.Errorf("write model: %w", err)
	}
	if _, err := bw.Write(m.graphPre); err != nil {
		return fmt.Errorf("write model: %w", err)
	}
	var raw []byte
	for i := range m.g.inits {
		t := &m.g.inits[i]
		if _, err := bw.Write(m.inits[i]); err != nil {
			return fmt.Errorf("write initializer %s: %w", t.name, err)
		}
		n := int(t.rawSize())
		if cap(raw) < n {
			raw = make([]byte, n)
		}
		raw = raw[:n]
		t.fill(raw)
		if _, err := bw.Write(raw); err != nil {
			return fmt.Errorf("write initializer %s: %w", t.name, err)
		}
	}
	if _, err := bw.Write(m.graphEnd); err != nil {
		return fmt.Errorf("write model: %w", err)
	}
	if _, err := bw.Write(m.tail); err != nil {
		return fmt.Errorf("write model: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write model: %w", err)
	}
	return nil
}
