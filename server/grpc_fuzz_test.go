package server

import (
	"errors"
	"math"
	"testing"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/inferd/inferd/httperr"
	"github.com/inferd/inferd/inferencepb"
	"github.com/inferd/inferd/kserve"
)

// grpcFuzzSeeds are ModelInferRequests that reach each branch of the
// conversion: raw, typed of each kind, parameters, outputs, mistakes.
func grpcFuzzSeeds() []*inferencepb.ModelInferRequest {
	i64 := func(v int64) *inferencepb.InferParameter {
		return &inferencepb.InferParameter{ParameterChoice: &inferencepb.InferParameter_Int64Param{Int64Param: v}}
	}
	in := func(name, dt string, shape ...int64) *inferencepb.ModelInferRequest_InferInputTensor {
		return &inferencepb.ModelInferRequest_InferInputTensor{Name: name, Datatype: dt, Shape: shape}
	}
	typed := func(t *inferencepb.ModelInferRequest_InferInputTensor, c *inferencepb.InferTensorContents) *inferencepb.ModelInferRequest_InferInputTensor {
		t.Contents = c
		return t
	}
	return []*inferencepb.ModelInferRequest{
		{ModelName: "tiny", Id: "a", Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{in("input", "FP32", 1, 2)},
			RawInputContents: [][]byte{make([]byte, 8)},
			Parameters:       map[string]*inferencepb.InferParameter{"timeout": i64(1000), "priority": i64(1)},
			Outputs: []*inferencepb.ModelInferRequest_InferRequestedOutputTensor{{Name: "output",
				Parameters: map[string]*inferencepb.InferParameter{"classification": i64(3)}}}},
		{Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{
			typed(in("a", "INT8", 2), &inferencepb.InferTensorContents{IntContents: []int32{-128, 127}}),
			typed(in("b", "UINT16", 1, 1), &inferencepb.InferTensorContents{UintContents: []uint32{65535}}),
			typed(in("c", "BOOL", 3), &inferencepb.InferTensorContents{BoolContents: []bool{true, false, true}}),
			typed(in("d", "FP64", 1), &inferencepb.InferTensorContents{Fp64Contents: []float64{math.Pi}}),
			typed(in("e", "INT64", 1), &inferencepb.InferTensorContents{Int64Contents: []int64{-1}}),
			typed(in("f", "UINT64", 1), &inferencepb.InferTensorContents{Uint64Contents: []uint64{1 << 63}}),
		}},
		{Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{typed(in("x", "INT16", 1), &inferencepb.InferTensorContents{IntContents: []int32{1 << 20}})}},
		{Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{in("x", "FP32", 1<<40, 1<<40)}, RawInputContents: [][]byte{nil}},
		{Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{in("x", "FP16", 2), in("x", "BYTES", 1)}},
		{Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{typed(in("x", "FP32", -1), &inferencepb.InferTensorContents{})}},
	}
}

// FuzzGRPCInferRequest: whatever ModelInferRequest a client sends, the
// server's decoder takes exactly the bytes proto.Unmarshal takes, decodes
// them as it does (raw contents aliasing the message), and converting it into a kserve.InferRequest
// never panics, fails only with a 400, and on success gives tensors whose
// bytes match their shapes, raw contents used in place, and allocates no
// more than the typed contents hold (and the handler reserved).
func FuzzGRPCInferRequest(f *testing.F) {
	for _, r := range grpcFuzzSeeds() {
		b, err := proto.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	// The raw contents before the other fields, as an encoder other than
	// protobuf's own may write them: the decoder then copies the rest.
	f.Add(append(protowire.AppendBytes(protowire.AppendTag(nil, rawInputContentsField, protowire.BytesType), make([]byte, 8)),
		must(proto.Marshal(&inferencepb.ModelInferRequest{Inputs: grpcFuzzSeeds()[0].Inputs}))...))
	var dst kserve.InferRequest
	var bufs [][]byte
	f.Fuzz(func(t *testing.T, data []byte) {
		// The server's decoder (grpc_codec.go) takes what proto.Unmarshal
		// takes, and decodes it the same, raw contents aliasing data.
		var pr, std inferencepb.ModelInferRequest
		err := decodeInferRequest(data, &pr)
		if stdErr := proto.Unmarshal(data, &std); (err == nil) != (stdErr == nil) {
			t.Fatalf("decodeInferRequest: %v, proto.Unmarshal: %v", err, stdErr)
		}
		if err != nil {
			return // grpc-go answers that itself
		}
		if !proto.Equal(&pr, &std) {
			t.Fatalf("decoded %v, proto.Unmarshal %v", &pr, &std)
		}
		checkAliased(t, data, &pr)
		before := 0
		for _, b := range bufs {
			before += cap(b)
		}
		err = grpcInferRequest(&dst, &pr, &bufs)
		grown := -before
		for _, b := range bufs {
			grown += cap(b)
		}
		var typed int64
		for _, in := range pr.Inputs {
			typed += typedBytes(in.Contents)
		}
		if int64(grown) > typed {
			t.Fatalf("converting %d bytes of typed contents grew the buffers by %d bytes", typed, grown)
		}
		if err != nil {
			if httperr.Status(err) != 400 || !errors.As(err, new(*httperr.Error)) {
				t.Fatalf("error %v: want a 400 *httperr.Error", err)
			}
			if len(dst.Inputs) != 0 || dst.ID != "" {
				t.Fatal("a failed conversion left a half-filled request")
			}
			return
		}
		if len(dst.Inputs) != len(pr.Inputs) || len(dst.Outputs) != len(pr.Outputs) || dst.ID != pr.Id {
			t.Fatalf("%d inputs, %d outputs from %d, %d", len(dst.Inputs), len(dst.Outputs), len(pr.Inputs), len(pr.Outputs))
		}
		for i, in := range dst.Inputs {
			size, ok := kserve.DatatypeSize(in.Datatype)
			n, err := in.Elements()
			if !ok || err != nil || int64(len(in.Data)) != n*int64(size) {
				t.Fatalf("input %d: %s %v with %d bytes", i, in.Datatype, in.Shape, len(in.Data))
			}
			if len(pr.RawInputContents) > 0 && len(in.Data) > 0 && unsafe.SliceData(in.Data) != unsafe.SliceData(pr.RawInputContents[i]) {
				t.Fatalf("input %d: raw contents copied", i)
			}
		}
		if dst.Timeout < 0 || dst.Priority < 0 {
			t.Fatalf("timeout %v, priority %d", dst.Timeout, dst.Priority)
		}
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
