package server

import (
	"context"
	"fmt"
	"math/bits"
	"slices"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // the default codec grpcCodec falls back on
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/inferd/inferd/budget"
	"github.com/inferd/inferd/inferencepb"
)

// The gRPC server's codec: grpc-go's "proto" codec, except that ModelInfer
// requests keep their raw_input_contents in the received message instead
// of copying them out of it.
//
// Where grpc-go's default codec copies a 602 KB image request: the HTTP/2
// data frames arrive in pooled buffers (grpc-go zeroes each on Get), are
// concatenated into one more pooled buffer (MaterializeToBuffer, zeroed
// then copied), and proto.Unmarshal copies each bytes field into a fresh
// allocation (a third copy, and 600 KB of garbage per call). grpcCodec
// concatenates the frames once into a buffer of its own (not zeroed: every
// byte is written), or takes a reference to the message when it came in
// one buffer, and decodes raw_input_contents as sub-slices of it.
//
// Lifetime: the sub-slices are valid while the message buffer is, and
// grpc-go frees what it received when Unmarshal returns; so ModelInfer's
// request is decoded into a grpcInferCall, which holds the buffer, by
// grpcModelInferHandler (the service's ModelInfer method handler in place
// of the generated one), which frees it when the call's handler and
// interceptors have returned. The handler's contract makes that enough:
// the job reads its inputs until Submit returns (host.Job.SetInput), and
// nothing of the request outlives the call (the response's strings are
// proto.Unmarshal's copies, its outputs copied from the job).

// grpcCodec is the server's codec (grpc.ForceServerCodecV2), named "proto"
// as the codec it replaces; it changes nothing on the wire.
type grpcCodec struct {
	std encoding.CodecV2 // grpc-go's "proto" codec
	// budget, when set, is reserved on before a ModelInfer request is
	// decoded, for what decoding allocates (decodeBound).
	budget *budget.Budget
}

var _ encoding.CodecV2 = grpcCodec{}

// newGRPCCodec returns the codec; with b non-nil, ModelInfer requests
// reserve on b before they are decoded.
func newGRPCCodec(b *budget.Budget) grpcCodec {
	return grpcCodec{std: encoding.GetCodecV2("proto"), budget: b}
}

// Name is "proto": clients see the protocol they asked for.
func (grpcCodec) Name() string { return "proto" }

// Marshal is grpc-go's.
func (c grpcCodec) Marshal(v any) (mem.BufferSlice, error) { return c.std.Marshal(v) }

// Unmarshal decodes a ModelInfer request into a *grpcInferCall aliasing
// the received data, and any other message as grpc-go's codec does.
func (c grpcCodec) Unmarshal(data mem.BufferSlice, v any) error {
	call, ok := v.(*grpcInferCall)
	if !ok {
		return c.std.Unmarshal(data, v)
	}
	return call.decode(data, c.budget)
}

// grpcInferCall is a ModelInfer request whose raw_input_contents are
// sub-slices of msg, the received message, which the call holds until
// release, with the memory budget its decoding reserved.
type grpcInferCall struct {
	req  inferencepb.ModelInferRequest
	msg  mem.Buffer // nil before decode and after release
	hold budget.Hold
	// refused is why the request was not decoded: the memory budget could
	// not hold what decoding it would allocate. The codec does not return
	// it (grpc-go would answer Internal): the method handler answers it,
	// through the interceptors, as ResourceExhausted.
	refused error
}

// decode takes data's bytes (a reference when data is one buffer, else a
// copy into a pooled buffer of its own), reserves on b (when not nil) the
// message and what decoding it may allocate, and decodes it into c.req.
// protobuf decoding allocates up to about 80 times the wire size of a
// hostile message (an empty repeated message costs 2 bytes on the wire and
// a struct in memory), so the reservation comes first; when it does not
// fit, c.refused says so and nothing is decoded.
func (c *grpcInferCall) decode(data mem.BufferSlice, b *budget.Budget) error {
	if len(data) == 1 {
		data[0].Ref()
		c.msg = data[0]
	} else {
		c.msg = materialize(data)
	}
	msg := c.msg.ReadOnlyData()
	if b != nil {
		bound, err := decodeBound(msg)
		if err != nil {
			c.release()
			return err
		}
		c.hold = b.Hold()
		if err := c.hold.Reserve(int64(len(msg))+bound, "decoding the gRPC infer request"); err != nil {
			c.release()
			c.refused = exhausted{err}
			return nil
		}
	}
	if err := decodeInferRequest(msg, &c.req); err != nil {
		c.release()
		return err
	}
	return nil
}

// release drops the request's raw contents, frees the message buffer and
// gives back what decoding reserved. The request must not be used after it.
func (c *grpcInferCall) release() {
	c.req.RawInputContents = nil
	if c.msg != nil {
		c.msg.Free()
		c.msg = nil
	}
	c.hold.Release()
}

// grpcModelInferHandler is the ModelInfer method handler: the generated
// one, but decoding into a grpcInferCall and releasing it once the
// interceptors and ModelInfer have returned (grpc-go marshals the response
// after that; it holds nothing of the request).
func grpcModelInferHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	call := new(grpcInferCall)
	if err := dec(call); err != nil {
		return nil, err
	}
	defer call.release()
	g := srv.(inferencepb.GRPCInferenceServiceServer)
	infer := func(ctx context.Context, req any) (any, error) {
		if call.refused != nil {
			return nil, call.refused
		}
		return g.ModelInfer(ctx, req.(*inferencepb.ModelInferRequest))
	}
	if interceptor == nil {
		return infer(ctx, &call.req)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: inferencepb.GRPCInferenceService_ModelInfer_FullMethodName}
	return interceptor(ctx, &call.req, info, infer)
}

// grpcServiceDesc is the inference service's description with
// grpcModelInferHandler as ModelInfer's handler.
func grpcServiceDesc() *grpc.ServiceDesc {
	d := inferencepb.GRPCInferenceService_ServiceDesc
	d.Methods = slices.Clone(d.Methods)
	for i := range d.Methods {
		if d.Methods[i].MethodName == "ModelInfer" {
			d.Methods[i].Handler = grpcModelInferHandler
			return &d
		}
	}
	panic("inferencepb: GRPCInferenceService has no ModelInfer method")
}

// rawInputContentsField is ModelInferRequest.raw_input_contents's number.
const rawInputContentsField = 7

// decodeInferRequest decodes a ModelInferRequest from b into pr as
// proto.Unmarshal does, except that raw_input_contents are sub-slices of
// b (capacity capped at their length), not copies. The other fields go to
// proto.Unmarshal: b's prefix before the first raw_input_contents when no
// other field follows one (as protobuf encoders write, in field order),
// else a copy of them (small but for typed contents). A raw_input_contents
// with another wire type is left to proto.Unmarshal, which keeps it as an
// unknown field.
func decodeInferRequest(b []byte, pr *inferencepb.ModelInferRequest) error {
	var raw [][]byte
	var rest []byte // the other fields, when they are not a prefix of b
	prefix := -1    // the length of b's prefix of other fields; -1 while no raw field was seen
	off := 0
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v, field []byte) error {
		if num == rawInputContentsField && typ == protowire.BytesType {
			raw = append(raw, v[:len(v):len(v)])
			if prefix < 0 {
				prefix = off
			}
		} else if prefix >= 0 {
			if rest == nil {
				rest = append(make([]byte, 0, prefix+len(field)), b[:prefix]...)
			}
			rest = append(rest, field...)
		}
		off += len(field)
		return nil
	})
	if err != nil {
		return err
	}
	switch {
	case rest != nil:
	case prefix >= 0:
		rest = b[:prefix]
	default:
		rest = b
	}
	if err := proto.Unmarshal(rest, pr); err != nil {
		return err
	}
	pr.RawInputContents = raw
	return nil
}

// materialize copies data into one buffer from grpcBufferPool.
func materialize(data mem.BufferSlice) mem.Buffer {
	n := data.Len()
	buf := grpcBufferPool.Get(n)
	data.CopyTo(*buf)
	return mem.NewBuffer(buf, grpcBufferPool)
}

// grpcBufferPool is the gRPC server's buffer pool (experimental.BufferPool):
// the HTTP/2 data frames are read into its buffers, and ModelInfer
// requests concatenated into them. Its buffers are not zeroed: grpc-go's
// default pool zeroes each buffer it hands out, 600 KB per image request
// in 16 KB frames, where every user (io.ReadFull of a frame, CopyTo,
// grpc-go's decompression writer) writes the bytes it then reads, as
// grpc-go's own dirty pools assume. Memory: a power-of-two class rounds a
// buffer up to twice its size at most; server.max_body_bytes
// (grpc.MaxRecvMsgSize) caps a message.
var grpcBufferPool = new(pow2Pool)

// pow2Pool is a mem.BufferPool of sync.Pools by power-of-two capacity.
type pow2Pool struct {
	pools [bits.UintSize]sync.Pool
}

var _ mem.BufferPool = (*pow2Pool)(nil)

// Get returns a buffer of length n, its contents undefined.
func (p *pow2Pool) Get(n int) *[]byte {
	class := bits.Len(uint(n - 1)) // 1<<class >= n
	if n <= 1 {
		class = 0
	}
	if b, ok := p.pools[class].Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<class)
	return &b
}

// Put returns a buffer from Get to the pool.
func (p *pow2Pool) Put(b *[]byte) {
	c := cap(*b)
	if c == 0 || c&(c-1) != 0 {
		return // not one of Get's
	}
	p.pools[bits.Len(uint(c))-1].Put(b)
}

// What decoding a ModelInferRequest allocates, bounded from its wire form
// (decodeBound): per raw_input_contents or bytes_contents entry,
// decodeRawEntry for its slice header and the slice's growth (about 63
// measured), plus a bytes_contents entry's copied bytes; for the other
// typed contents, their elements (packed varints counted one by one,
// fixed-size ones by length), twice; for every other byte on the wire, at most
// decodeFactor bytes: protobuf-go allocates about 80 per wire byte for
// repeated empty messages (a 2-byte InferInputTensor is a struct, a
// pointer and its growth; TestDecodeBound measures each hostile shape).
const (
	decodeFactor   = 96
	decodeRawEntry = 128
	decodeOverhead = 64 << 10
)

// decodeBound returns at most what decodeInferRequest allocates for b,
// and the error decoding b would give when b is not a well-formed
// message. It allocates nothing.
func decodeBound(b []byte) (int64, error) {
	n := int64(decodeOverhead)
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v, field []byte) error {
		switch {
		case num == rawInputContentsField && typ == protowire.BytesType:
			n += decodeRawEntry
		case num == 5 && typ == protowire.BytesType: // inputs
			m, err := inputBound(v)
			n += m + decodeFactor*int64(len(field)-len(v))
			return err
		default:
			n += decodeFactor * int64(len(field))
		}
		return nil
	})
	return n, err
}

// inputBound bounds the decoding of an InferInputTensor.
func inputBound(b []byte) (int64, error) {
	var n int64
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v, field []byte) error {
		if num == 5 && typ == protowire.BytesType { // contents
			n += contentsBound(v) + decodeFactor*int64(len(field)-len(v))
		} else {
			n += decodeFactor * int64(len(field))
		}
		return nil
	})
	return n, err
}

// contentsBound bounds the decoding of an InferTensorContents: each
// packed field's elements at their Go size (twice, for the growth of a
// field sent in several pieces), bytes_contents copied with their slice
// headers, anything else at decodeFactor per wire byte.
func contentsBound(b []byte) int64 {
	var n int64
	eachField(b, func(num protowire.Number, typ protowire.Type, v, field []byte) error {
		switch {
		case typ != protowire.BytesType || num < 1 || num > 8:
			n += decodeFactor * int64(len(field))
		case num == 8: // bytes_contents
			n += decodeRawEntry + int64(len(v))
		case num == 6 || num == 7: // fixed32, fixed64: len(v)/size elements
			n += 2 * int64(len(v))
		default: // packed varints: one element per byte without the continuation bit
			var count int64
			for _, c := range v {
				if c < 0x80 {
					count++
				}
			}
			n += 2 * packedSize[num] * count
		}
		return nil
	})
	return n
}

// packedSize is the Go size of an element of InferTensorContents' packed
// varint fields, by field number (bool, int32, int64, uint32, uint64).
var packedSize = [...]int64{1: 1, 2: 4, 3: 8, 4: 4, 5: 8}

// eachField calls f with each field of the message b: its number, wire
// type, value (a length-delimited field's contents, else the encoded
// value) and whole encoding; it stops at the first malformed field, with
// decodeInferRequest's error, or at f's error.
func eachField(b []byte, f func(num protowire.Number, typ protowire.Type, v, field []byte) error) error {
	for off := 0; off < len(b); {
		num, typ, n := protowire.ConsumeTag(b[off:])
		if n < 0 {
			return fmt.Errorf("ModelInferRequest: %w", protowire.ParseError(n))
		}
		m := protowire.ConsumeFieldValue(num, typ, b[off+n:])
		if m < 0 {
			return fmt.Errorf("ModelInferRequest: field %d: %w", num, protowire.ParseError(m))
		}
		field := b[off : off+n+m]
		v := field[n:]
		if typ == protowire.BytesType {
			v, _ = protowire.ConsumeBytes(v)
		}
		if err := f(num, typ, v, field); err != nil {
			return err
		}
		off += n + m
	}
	return nil
}
