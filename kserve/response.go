package kserve

import (
	"encoding/binary"
	"math"
	"strconv"
)

// InferResponse is an inference result to encode.
type InferResponse struct {
	// ModelName is required by the protocol.
	ModelName string
	// ModelVersion is omitted from the JSON when empty.
	ModelVersion string
	// ID echoes the request's id; omitted when empty.
	ID string
	// Outputs are written in order. Each Data must hold exactly the
	// shape's elements; the encoder writes len(Data)/size elements. BYTES
	// Data is in the binary tensor extension's layout, as
	// AppendBytesElement writes it: each element a 4-byte little-endian
	// length, then its bytes.
	Outputs []Tensor
	// BinaryOut[i] sends Outputs[i] as binary data after the JSON header
	// instead of as a JSON array. Missing entries mean JSON.
	BinaryOut []bool
}

// AppendInferResponse appends the response body for r to dst and returns
// it with the length of its JSON header: the JSON object, then the raw
// bytes of each binary output in output order (Triton's binary tensor
// data extension). headerLen counts only what this call appended; it
// equals the appended length when no output is binary, and the server
// sets Inference-Header-Content-Length to it only when some output is.
//
// JSON data is a flat array: BYTES elements as strings, integers as integers, BOOL as true/false,
// FP16, FP32 and FP64 each in the shortest form that reads back to the
// same value of that type (0.1, not 0.099975586, for the half nearest
// 0.1). JSON has no NaN or infinity: those are written
// as null.
func AppendInferResponse(dst []byte, r *InferResponse) (out []byte, headerLen int) {
	start := len(dst)
	dst = append(dst, `{"model_name":`...)
	dst = appendJSONString(dst, r.ModelName)
	if r.ModelVersion != "" {
		dst = append(dst, `,"model_version":`...)
		dst = appendJSONString(dst, r.ModelVersion)
	}
	if r.ID != "" {
		dst = append(dst, `,"id":`...)
		dst = appendJSONString(dst, r.ID)
	}
	dst = append(dst, `,"outputs":[`...)
	anyBinary := false
	for i := range r.Outputs {
		t := &r.Outputs[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"name":`...)
		dst = appendJSONString(dst, t.Name)
		dst = append(dst, `,"datatype":`...)
		dst = appendJSONString(dst, t.Datatype)
		dst = append(dst, `,"shape":`...)
		dst = appendShape(dst, t.Shape)
		if i < len(r.BinaryOut) && r.BinaryOut[i] {
			anyBinary = true
			dst = append(dst, `,"parameters":{"binary_data_size":`...)
			dst = strconv.AppendInt(dst, int64(len(t.Data)), 10)
			dst = append(dst, "}}"...)
			continue
		}
		dst = append(dst, `,"data":`...)
		dst = appendData(dst, t.Datatype, t.Data)
		dst = append(dst, '}')
	}
	dst = append(dst, "]}"...)
	headerLen = len(dst) - start
	if anyBinary {
		for i := range r.Outputs {
			if i < len(r.BinaryOut) && r.BinaryOut[i] {
				dst = append(dst, r.Outputs[i].Data...)
			}
		}
	}
	return dst, headerLen
}

// AppendBytesElement appends one BYTES element to dst in the binary
// tensor extension's layout: its length as 4 bytes little-endian, then
// its bytes (what tritonclient's deserialize_bytes_tensor reads).
func AppendBytesElement(dst []byte, s string) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...)
}

// appendBytesData writes BYTES data, length-prefixed elements, as a JSON
// array of strings. A truncated last element is written as far as it
// goes.
func appendBytesData(dst, data []byte) []byte {
	dst = append(dst, '[')
	for i := 0; len(data) >= 4; i++ {
		n := binary.LittleEndian.Uint32(data)
		data = data[4:]
		if uint64(n) > uint64(len(data)) {
			n = uint32(len(data))
		}
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, string(data[:n]))
		data = data[n:]
	}
	return append(dst, ']')
}

// appendData writes tensor bytes as a flat JSON array.
func appendData(dst []byte, dt string, data []byte) []byte {
	if dt == BYTES {
		return appendBytesData(dst, data)
	}
	size, ok := DatatypeSize(dt)
	if !ok {
		return append(dst, "[]"...)
	}
	n := len(data) / size
	dst = append(dst, '[')
	for i := range n {
		if i > 0 {
			dst = append(dst, ',')
		}
		switch dt {
		case FP32:
			dst = appendFloat(dst, float64(math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))), 32)
		case FP64:
			dst = appendFloat(dst, math.Float64frombits(binary.LittleEndian.Uint64(data[8*i:])), 64)
		case FP16:
			dst = appendHalf(dst, binary.LittleEndian.Uint16(data[2*i:]))
		case BOOL:
			if data[i] != 0 {
				dst = append(dst, "true"...)
			} else {
				dst = append(dst, "false"...)
			}
		case UINT8:
			dst = strconv.AppendUint(dst, uint64(data[i]), 10)
		case UINT16:
			dst = strconv.AppendUint(dst, uint64(binary.LittleEndian.Uint16(data[2*i:])), 10)
		case UINT32:
			dst = strconv.AppendUint(dst, uint64(binary.LittleEndian.Uint32(data[4*i:])), 10)
		case UINT64:
			dst = strconv.AppendUint(dst, binary.LittleEndian.Uint64(data[8*i:]), 10)
		case INT8:
			dst = strconv.AppendInt(dst, int64(int8(data[i])), 10)
		case INT16:
			dst = strconv.AppendInt(dst, int64(int16(binary.LittleEndian.Uint16(data[2*i:]))), 10)
		case INT32:
			dst = strconv.AppendInt(dst, int64(int32(binary.LittleEndian.Uint32(data[4*i:]))), 10)
		case INT64:
			dst = strconv.AppendInt(dst, int64(binary.LittleEndian.Uint64(data[8*i:])), 10)
		}
	}
	return append(dst, ']')
}

func appendFloat(dst []byte, f float64, bits int) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	return strconv.AppendFloat(dst, f, 'g', -1, bits)
}

// appendHalf writes the shortest decimal that converts back to the same
// half: at most 5 significant digits are ever needed for 11 bits.
func appendHalf(dst []byte, h uint16) []byte {
	f := float64(HalfToFloat32(h))
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	if f != 0 && f == math.Trunc(f) {
		// Whole halves (all those >= 2048 are) read best as integers:
		// 65504 rather than its shortest form 6.55e+04.
		return strconv.AppendInt(dst, int64(f), 10)
	}
	n := len(dst)
	for prec := 1; prec < 5; prec++ {
		dst = strconv.AppendFloat(dst[:n], f, 'g', prec, 64)
		if back, err := strconv.ParseFloat(string(dst[n:]), 64); err == nil {
			if b, ok := Float64ToHalf(back); ok && b == h {
				return dst
			}
		}
	}
	return strconv.AppendFloat(dst[:n], f, 'g', 5, 64)
}
