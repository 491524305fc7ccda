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
}

var _ encoding.CodecV2 = grpcCodec{}

func newGRPCCodec() grpcCodec {
	return grpcCodec{std: encoding.GetCodecV2("proto")}
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
	return call.decode(data)
}

// grpcInferCall is a ModelInfer request whose raw_input_contents are
// sub-slices of msg, the received message, which the call holds until
// release.
type grpcInferCall struct {
	req inferencepb.ModelInferRequest
	msg mem.Buffer // nil before decode and after release
}

// decode takes data's bytes (a reference when data is one buffer, else a
// copy into a pooled buffer of its own) and decodes them into c.req.
func (c *grpcInferCall) decode(data mem.BufferSlice) error {
	if len(data) == 1 {
		data[0].Ref()
		c.msg = data[0]
	} else {
		c.msg = materialize(data)
	}
	if err := decodeInferRequest(c.msg.ReadOnlyData(), &c.req); err != nil {
		c.release()
		return err
	}
	return nil
}

// release drops the request's raw contents and frees the message buffer.
// The request must not be used after it.
func (c *grpcInferCall) release() {
	c.req.RawInputContents = nil
	if c.msg != nil {
		c.msg.Free()
		c.msg = nil
	}
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
	if interceptor == nil {
		return g.ModelInfer(ctx, &call.req)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: inferencepb.GRPCInferenceService_ModelInfer_FullMethodName}
	return interceptor(ctx, &call.req, info, func(ctx context.Context, req any) (any, error) {
		return g.ModelInfer(ctx, req.(*inferencepb.ModelInferRequest))
	})
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
		if num == rawInputContentsField && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b[off+n:])
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
		off += n + m
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
