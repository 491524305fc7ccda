package model

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ort "github.com/yalue/onnxruntime_go"
)

// The Open Inference Protocol's example model reads back, as ONNX Runtime
// reads it, with its datatypes and fixed shapes, and runs: output0 is
// input0, output1 is not input1.
func TestPassThroughOIPExample(t *testing.T) {
	needORT(t)
	path := filepath.Join(t.TempDir(), "oip.onnx")
	var buf bytes.Buffer
	if err := WritePassThrough(&buf, OIPExample); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	ins, outs, err := ort.GetInputOutputInfo(path)
	if err != nil {
		t.Fatal(err)
	}
	var u32, b ort.TensorElementDataType = ort.TensorElementDataTypeUint32, ort.TensorElementDataTypeBool
	want := []ort.InputOutputInfo{
		{Name: "input0", OrtValueType: ort.ONNXTypeTensor, Dimensions: ort.NewShape(2, 2), DataType: u32},
		{Name: "input1", OrtValueType: ort.ONNXTypeTensor, Dimensions: ort.NewShape(3), DataType: b},
		{Name: "output0", OrtValueType: ort.ONNXTypeTensor, Dimensions: ort.NewShape(2, 2), DataType: u32},
		{Name: "output1", OrtValueType: ort.ONNXTypeTensor, Dimensions: ort.NewShape(3), DataType: b},
	}
	got := append(ins, outs...)
	if len(got) != len(want) {
		t.Fatalf("inputs %v, outputs %v; want %v", ins, outs, want)
	}
	for i := range want {
		if !sameInfo(got[i], want[i]) {
			t.Errorf("tensor %d: %v, want %v", i, &got[i], &want[i])
		}
	}

	sess, err := ort.NewDynamicAdvancedSession(path, []string{"input0", "input1"}, []string{"output0", "output1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Destroy()
	in0 := []byte{1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}
	in1 := []byte{1, 0, 1}
	out0, out1 := make([]byte, len(in0)), make([]byte, len(in1))
	var vals []ort.Value
	for _, v := range []struct {
		shape ort.Shape
		data  []byte
		dt    ort.TensorElementDataType
	}{{ort.NewShape(2, 2), in0, u32}, {ort.NewShape(3), in1, b}, {ort.NewShape(2, 2), out0, u32}, {ort.NewShape(3), out1, b}} {
		val, err := ort.NewCustomDataTensor(v.shape, v.data, v.dt)
		if err != nil {
			t.Fatal(err)
		}
		defer val.Destroy()
		vals = append(vals, val)
	}
	if err := sess.Run(vals[:2], vals[2:]); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out0, in0) || !bytes.Equal(out1, []byte{0, 1, 0}) {
		t.Errorf("outputs %v, %v; want %v, [0 1 0]", out0, out1, in0)
	}
}

func TestPassThroughBadDatatype(t *testing.T) {
	err := WritePassThrough(&bytes.Buffer{}, []Tensor{{Name: "x", Datatype: "FP8", Shape: []int64{1}}})
	if err == nil || !strings.Contains(err.Error(), `"FP8"`) {
		t.Errorf("error %v, want one naming FP8", err)
	}
}
