package loadtest

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strconv"

	"github.com/inferd/inferd/kserve"
)

// tensorRows returns one row of every input, from the raw file path
// (every input's row in metadata order, little-endian) or generated.
func tensorRows(md *kserve.ModelMetadata, path string) ([][]byte, error) {
	sizes := make([]int, len(md.Inputs))
	total := 0
	for i, in := range md.Inputs {
		n, err := rowBytes(in)
		if err != nil {
			return nil, err
		}
		sizes[i] = n
		total += n
	}
	var data []byte
	if path == "" {
		data = generateTensor(md.Inputs, total)
	} else {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return nil, fmt.Errorf("tensor file: %w", err)
		}
		if len(data) != total {
			return nil, fmt.Errorf("tensor file %s: %d bytes, want %d (one row of %s)", path, len(data), total, describeInputs(md.Inputs))
		}
	}
	rows := make([][]byte, len(sizes))
	for i, n := range sizes {
		rows[i], data = data[:n], data[n:]
	}
	return rows, nil
}

func describeInputs(ins []kserve.TensorMetadata) string {
	s := ""
	for i, in := range ins {
		if i > 0 {
			s += ", "
		}
		shape, _ := rowShape(in)
		s += fmt.Sprintf("%q %s %v", in.Name, in.Datatype, shape)
	}
	return s
}

// generateTensor fills every input with deterministic values: floats in
// [-2, 2) (a normalised image's range), integers in [0, 128).
func generateTensor(ins []kserve.TensorMetadata, total int) []byte {
	data := make([]byte, 0, total)
	seed := uint32(7)
	next := func() uint32 { seed = seed*1664525 + 1013904223; return seed >> 8 }
	for _, in := range ins {
		n, _ := rowBytes(in)
		size, _ := kserve.DatatypeSize(in.Datatype)
		for range n / size {
			r := next()
			switch in.Datatype {
			case "FP32":
				data = binary.LittleEndian.AppendUint32(data, math.Float32bits(float32(r)/(1<<24)*4-2))
			case "FP64":
				data = binary.LittleEndian.AppendUint64(data, math.Float64bits(float64(r)/(1<<24)*4-2))
			case "FP16", "BF16":
				data = binary.LittleEndian.AppendUint16(data, 0x3c00) // 1.0 in fp16
			default:
				v := uint64(r & 127)
				if in.Datatype == "BOOL" {
					v &= 1
				}
				for b := range size {
					data = append(data, byte(v>>(8*b)))
				}
			}
		}
	}
	return data
}

// inferJSONBody returns a KServe v2 JSON request body carrying rows.
func inferJSONBody(md *kserve.ModelMetadata, rows [][]byte) ([]byte, error) {
	b := []byte(`{"inputs":[`)
	for i, in := range md.Inputs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendTensorHeader(b, in)
		b = append(b, `,"data":[`...)
		var err error
		if b, err = appendValues(b, in.Datatype, rows[i]); err != nil {
			return nil, err
		}
		b = append(b, "]}"...)
	}
	b = append(b, "]}"...)
	return b, nil
}

// inferBinaryBody returns a binary tensor extension body: a JSON header
// asking for binary outputs, then every input's bytes; and the header's
// length.
func inferBinaryBody(md *kserve.ModelMetadata, rows [][]byte) ([]byte, int) {
	b := []byte(`{"inputs":[`)
	for i, in := range md.Inputs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendTensorHeader(b, in)
		b = append(b, `,"parameters":{"binary_data_size":`...)
		b = strconv.AppendInt(b, int64(len(rows[i])), 10)
		b = append(b, "}}"...)
	}
	b = append(b, `],"outputs":[`...)
	for i, out := range md.Outputs {
		if i > 0 {
			b = append(b, ',')
		}
		name, _ := json.Marshal(out.Name)
		b = append(b, `{"name":`...)
		b = append(b, name...)
		b = append(b, `,"parameters":{"binary_data":true}}`...)
	}
	b = append(b, "]}"...)
	hlen := len(b)
	for _, r := range rows {
		b = append(b, r...)
	}
	return b, hlen
}

func appendTensorHeader(b []byte, in kserve.TensorMetadata) []byte {
	name, _ := json.Marshal(in.Name)
	b = append(b, `{"name":`...)
	b = append(b, name...)
	b = append(b, `,"datatype":"`...)
	b = append(b, in.Datatype...)
	b = append(b, `","shape":[1`...)
	shape, _ := rowShape(in)
	for _, d := range shape {
		b = append(b, ',')
		b = strconv.AppendInt(b, d, 10)
	}
	return append(b, ']')
}

// appendValues appends row's elements as JSON numbers (booleans for BOOL).
func appendValues(b []byte, dt string, row []byte) ([]byte, error) {
	size, _ := kserve.DatatypeSize(dt)
	le := binary.LittleEndian
	for i := 0; i+size <= len(row); i += size {
		if i > 0 {
			b = append(b, ',')
		}
		e := row[i : i+size]
		switch dt {
		case "FP32":
			b = strconv.AppendFloat(b, float64(math.Float32frombits(le.Uint32(e))), 'g', -1, 32)
		case "FP64":
			b = strconv.AppendFloat(b, math.Float64frombits(le.Uint64(e)), 'g', -1, 64)
		case "BOOL":
			b = strconv.AppendBool(b, e[0] != 0)
		case "UINT8":
			b = strconv.AppendUint(b, uint64(e[0]), 10)
		case "INT8":
			b = strconv.AppendInt(b, int64(int8(e[0])), 10)
		case "UINT16":
			b = strconv.AppendUint(b, uint64(le.Uint16(e)), 10)
		case "INT16":
			b = strconv.AppendInt(b, int64(int16(le.Uint16(e))), 10)
		case "UINT32":
			b = strconv.AppendUint(b, uint64(le.Uint32(e)), 10)
		case "INT32":
			b = strconv.AppendInt(b, int64(int32(le.Uint32(e))), 10)
		case "UINT64":
			b = strconv.AppendUint(b, le.Uint64(e), 10)
		case "INT64":
			b = strconv.AppendInt(b, int64(le.Uint64(e)), 10)
		default:
			return nil, fmt.Errorf("datatype %s has no JSON form here; use infer-binary", dt)
		}
	}
	return b, nil
}
