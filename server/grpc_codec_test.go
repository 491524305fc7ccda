package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/inferd/inferd/config"
	"github.com/inferd/inferd/inferencepb"
)

// Concurrent ModelInfer calls with different inputs, of different sizes,
// over several connections, some gzip-compressed (decoded from grpc-go's
// decompressed buffer), each answer checked against its own input's
// output over HTTP: a message buffer freed or reused while its call still
// reads its raw contents would answer another call's (or garbage) outputs.
// Run it with -race as well.
func TestGRPCAliasedInputsConcurrent(t *testing.T) {
	gs := startGRPC(t, tinyConfig(func(c *config.Config) { c.Models[0].MaxBatch = 16 }))
	type input struct {
		rows int
		req  *inferencepb.ModelInferRequest
		want []float32
	}
	var inputs []input
	for i := range 6 {
		rows := 1 + i%3 // 602 KB to 1.8 MB messages: pooled buffers of two sizes, reused across calls
		in := floats(rows*3*224*224, float64(i)*1.3)
		body, hlen := binaryInfer(rows, in, true)
		want := leFloats(gs.httpBinaryOutput(t, body, hlen))
		req := rawRequest(rows, in)
		req.Id = fmt.Sprint("call-", i)
		inputs = append(inputs, input{rows, req, want})
	}
	// The test can fail: every input's outputs are far from every other's.
	for i := range inputs {
		for j := range i {
			if n := min(len(inputs[i].want), len(inputs[j].want)); maxDiff(inputs[i].want[:n], inputs[j].want[:n]) < 100*outputTolerance {
				t.Fatalf("inputs %d and %d have outputs too alike to tell apart (%g, %v %v)", i, j, maxDiff(inputs[i].want[:n], inputs[j].want[:n]), inputs[i].want[:5], inputs[j].want[:5])
			}
		}
	}
	conns := []inferencepb.GRPCInferenceServiceClient{gs.client, dialGRPC(t, gs.addr), dialGRPC(t, gs.addr)}
	const workers, calls = 12, 6 // 72 calls; -race makes each (gzip most) tens of times slower
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			client := conns[w%len(conns)]
			var opts []grpc.CallOption
			if w%6 == 5 {
				opts = append(opts, grpc.UseCompressor(gzip.Name))
			}
			for c := range calls {
				in := inputs[(w+c)%len(inputs)]
				resp, err := client.ModelInfer(ctx, in.req, opts...)
				if err != nil {
					t.Errorf("worker %d call %d: %v", w, c, err)
					return
				}
				if resp.Id != in.req.Id || len(resp.RawOutputContents) != 1 {
					t.Errorf("worker %d call %d: id %q, %d outputs, want %q, 1", w, c, resp.Id, len(resp.RawOutputContents), in.req.Id)
					return
				}
				got := leFloats(resp.RawOutputContents[0])
				if len(got) != len(in.want) || maxDiff(got, in.want) > outputTolerance {
					t.Errorf("worker %d call %d (%s, %d rows): outputs are not its input's (max difference %g)", w, c, in.req.Id, in.rows, maxDiff(got, in.want))
					return
				}
			}
		})
	}
	wg.Wait()
}

// outputTolerance allows for the model's arithmetic differing with the
// batch a row is run in (its outputs are probabilities, about 1e-3 each).
const outputTolerance = 1e-6

func leFloats(b []byte) []float32 {
	f := make([]float32, len(b)/4)
	for i := range f {
		f[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return f
}

func maxDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

// decodeInferRequest decodes as proto.Unmarshal does, whatever the order
// of the fields, with raw_input_contents aliasing the message; a
// raw_input_contents field of another wire type stays an unknown field.
func TestDecodeInferRequest(t *testing.T) {
	base := rawRequest(1, floats(12, 0))
	base.Inputs[0].Shape = []int64{1, 3, 2, 2}
	base.Id = "x"
	base.RawInputContents = [][]byte{float32Bytes(floats(12, 0)), {1, 2, 3}}
	canonical, err := proto.Marshal(base)
	if err != nil {
		t.Fatal(err)
	}
	noRaw := proto.Clone(base).(*inferencepb.ModelInferRequest)
	noRaw.RawInputContents = nil
	rest, _ := proto.Marshal(noRaw)
	rawField := func(b []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, rawInputContentsField, protowire.BytesType), b)
	}
	r0, r1 := rawField(base.RawInputContents[0]), rawField(base.RawInputContents[1])
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	wrongType := protowire.AppendVarint(protowire.AppendTag(nil, rawInputContentsField, protowire.VarintType), 5)
	for _, c := range []struct {
		name string
		msg  []byte
	}{
		{"field order (raw contents last): the other fields are a prefix", canonical},
		{"raw contents first", cat(r0, r1, rest)},
		{"raw contents between other fields", cat(rest[:len(rest)/2], r0, rest[len(rest)/2:], r1)},
		{"only raw contents", cat(r0, r1)},
		{"no raw contents", rest},
		{"empty message", nil},
		{"raw_input_contents as a varint: an unknown field", cat(rest, wrongType, r0)},
	} {
		t.Run(c.name, func(t *testing.T) {
			var want, got inferencepb.ModelInferRequest
			if err := proto.Unmarshal(c.msg, &want); err != nil {
				// Splitting rest in the middle may cut a field: then both must refuse it.
				if decodeInferRequest(c.msg, &got) == nil {
					t.Fatalf("proto.Unmarshal refuses it (%v), decodeInferRequest took it", err)
				}
				return
			}
			if err := decodeInferRequest(c.msg, &got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(&got, &want) {
				t.Fatalf("decoded %v, proto.Unmarshal %v", &got, &want)
			}
			checkAliased(t, c.msg, &got)
		})
	}
	for _, bad := range [][]byte{canonical[:len(canonical)-1], cat(rest, r0[:len(r0)-1]), {0}} {
		var got inferencepb.ModelInferRequest
		if decodeInferRequest(bad, &got) == nil {
			t.Errorf("decoded a truncated or invalid message % x", bad[max(0, len(bad)-8):])
		}
	}
}

// checkAliased fails unless every raw content of pr lies within msg, its
// capacity capped at its length.
func checkAliased(t *testing.T, msg []byte, pr *inferencepb.ModelInferRequest) {
	t.Helper()
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(msg)))
	for i, r := range pr.RawInputContents {
		if len(r) == 0 {
			continue
		}
		p := uintptr(unsafe.Pointer(unsafe.SliceData(r)))
		if p < lo || p+uintptr(len(r)) > lo+uintptr(len(msg)) || cap(r) != len(r) {
			t.Fatalf("raw_input_contents[%d] is a copy (or its capacity reaches past it)", i)
		}
	}
}

// A message received in several buffers is concatenated into one pooled
// buffer that the call holds until release; one received in one buffer is
// referenced, not copied.
func TestGRPCInferCallDecode(t *testing.T) {
	req := rawRequest(1, floats(3*224*224, 0.5))
	msg, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	pool := mem.DefaultBufferPool()
	split := func(b []byte, n int) mem.BufferSlice {
		var s mem.BufferSlice
		for len(b) > 0 {
			k := min(n, len(b))
			s = append(s, mem.Copy(b[:k], pool))
			b = b[k:]
		}
		return s
	}
	codec := newGRPCCodec(nil)
	for _, c := range []struct {
		name string
		data mem.BufferSlice
	}{{"16 KiB frames", split(msg, 16<<10)}, {"one buffer", split(msg, len(msg))}} {
		t.Run(c.name, func(t *testing.T) {
			var call grpcInferCall
			if err := codec.Unmarshal(c.data, &call); err != nil {
				t.Fatal(err)
			}
			c.data.Free() // as grpc-go does once Unmarshal returns
			if !proto.Equal(&call.req, req) {
				t.Fatal("decoded request differs from the one sent")
			}
			checkAliased(t, call.msg.ReadOnlyData(), &call.req)
			if len(c.data) == 1 && unsafe.SliceData(call.msg.ReadOnlyData()) != unsafe.SliceData(c.data[0].ReadOnlyData()) {
				t.Error("a message in one buffer was copied")
			}
			call.release()
			if call.msg != nil || call.req.RawInputContents != nil {
				t.Error("release kept the message")
			}
		})
	}
	var call grpcInferCall
	if codec.Unmarshal(split(msg[:len(msg)-1], 16<<10), &call) == nil {
		t.Error("decoded a truncated message")
	}
	if call.msg != nil {
		t.Error("a failed decode kept the message buffer")
	}
}

// hostileInferMessages are ModelInferRequests shaped to make protobuf
// decoding allocate many times their wire size: n empty repeated messages,
// distinct map entries, 1-byte varints, empty bytes elements.
func hostileInferMessages(n int) map[string][]byte {
	field := func(b []byte, num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), v)
	}
	repeat := func(num protowire.Number, v func(i int) []byte) []byte {
		var b []byte
		for i := range n {
			b = field(b, num, v(i))
		}
		return b
	}
	empty := func(int) []byte { return nil }
	param := func(i int) []byte {
		return protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), strconv.Itoa(i))
	}
	input := func(contents []byte) []byte { return field(nil, 5, field(nil, 5, contents)) }
	varints := make([]byte, n)
	for i := range varints {
		varints[i] = 1
	}
	var unpacked []byte // int64_contents one element per field
	for range n {
		unpacked = protowire.AppendVarint(protowire.AppendTag(unpacked, 3, protowire.VarintType), 1)
	}
	return map[string][]byte{
		"empty inputs":         repeat(5, empty),
		"empty outputs":        repeat(6, empty),
		"empty raw contents":   repeat(rawInputContentsField, empty),
		"request parameters":   repeat(4, param),
		"input parameters":     field(nil, 5, repeat(4, param)),
		"int64 contents":       input(field(nil, 3, varints)),
		"bool contents":        input(field(nil, 1, varints)),
		"empty bytes contents": input(repeat(8, empty)),
		"unpacked int64":       input(unpacked),
	}
}

// decodeBound is at least what decoding allocates, for the message shapes
// that make protobuf allocate most per wire byte, and stays small for a
// request whose tensor travels as raw contents.
func TestDecodeBound(t *testing.T) {
	for name, msg := range hostileInferMessages(50000) {
		bound, err := decodeBound(msg)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		var pr inferencepb.ModelInferRequest
		if err := decodeInferRequest(msg, &pr); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(&pr)
		if got := int64(after.TotalAlloc - before.TotalAlloc); got > bound {
			t.Errorf("%s: %d wire bytes allocated %d when decoded, over the bound %d", name, len(msg), got, bound)
		}
	}
	raw, err := proto.Marshal(rawRequest(1, floats(3*224*224, 0)))
	if err != nil {
		t.Fatal(err)
	}
	if bound, _ := decodeBound(raw); bound > 128<<10 {
		t.Errorf("a %d-byte raw request: decoding bound %d, want it under 128 KiB (the tensor is not copied)", len(raw), bound)
	}
	typedReq := rawRequest(1, nil)
	typedReq.RawInputContents = nil
	typedReq.Inputs[0].Contents = &inferencepb.InferTensorContents{Fp32Contents: floats(3*224*224, 0)}
	typed, err := proto.Marshal(typedReq)
	if err != nil {
		t.Fatal(err)
	}
	if bound, _ := decodeBound(typed); bound > 3*int64(len(typed)) {
		t.Errorf("a %d-byte typed FP32 request: decoding bound %d, want at most 3 times its size", len(typed), bound)
	}
}

// rawCodec sends a message already in its wire form (a *[]byte), so that a
// test can send what no generated client would.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error)      { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error { return proto.Unmarshal(data, v.(proto.Message)) }
func (rawCodec) Name() string                       { return "proto" }

// A ModelInfer message that would decode into gigabytes (20 Mi empty
// inputs: 40 MiB on the wire, under max_body_bytes) is refused with
// ResourceExhausted before it is decoded, and the server serves on.
func TestGRPCDecodeReservedFirst(t *testing.T) {
	gs := startGRPC(t, tinyConfig(func(c *config.Config) { c.Server.MemoryLimit = 1 << 30 }))
	msg := bytes.Repeat([]byte{byte(protowire.EncodeTag(5, protowire.BytesType)), 0}, 20<<20)
	var resp inferencepb.ModelInferResponse
	err := gs.conn.Invoke(grpcCtx(t), inferencepb.GRPCInferenceService_ModelInfer_FullMethodName, &msg, &resp, grpc.ForceCodec(rawCodec{}))
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "decoding the gRPC infer request") {
		t.Fatalf("a message decoding into gigabytes: %v, want ResourceExhausted before decoding", err)
	}
	if _, err := gs.client.ModelInfer(grpcCtx(t), rawRequest(1, floats(3*224*224, 0))); err != nil {
		t.Fatalf("the next request: %v", err)
	}
}
