package server

import (
	"context"
	"encoding/binary"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/inferd/inferd/host"
	"github.com/inferd/inferd/httperr"
	"github.com/inferd/inferd/inferencepb"
	"github.com/inferd/inferd/kserve"
	"github.com/inferd/inferd/respcache"
)

// grpcInferState is what one gRPC infer call needs besides its job,
// pooled as inferState is: the parsed request, the output selection, the
// classification bytes, and the buffers typed contents are converted into.
type grpcInferState struct {
	inferState
	bufs [][]byte // per input: the converted typed contents, reused
}

var grpcInferStates = sync.Pool{New: func() any { return new(grpcInferState) }}

func putGRPCInferState(st *grpcInferState) {
	st.req.Reset() // lets go of the message's raw contents
	n := cap(st.cls)
	for _, b := range st.bufs {
		n += cap(b)
	}
	if n <= maxPooledTensors {
		grpcInferStates.Put(st)
	}
}

// ModelInfer runs one inference, as POST /v2/models/M/infer does: the same
// admission, memory budget, checks (and error texts), batcher, deadline,
// priority, classification and statistics. Raw inputs are used in place;
// outputs come back in raw_output_contents (contents unset), as Triton
// answers.
//
// Memory: grpc-go has read the whole message (at most
// server.max_body_bytes on the wire) before this runs; the codec reserved
// on server.memory_limit the message and a bound of what decoding it
// allocates before it decoded (grpcInferCall.decode). The handler then
// reserves what converting typed contents allocates and the response's
// output bytes, and gets ResourceExhausted when they do not fit; the
// memory grpc-go holds while a message arrives, and to marshal the
// response, is not counted (see docs/design.md).
func (g *grpcService) ModelInfer(ctx context.Context, pr *inferencepb.ModelInferRequest) (*inferencepb.ModelInferResponse, error) {
	resp, cache, err := g.infer(ctx, pr)
	if cache != "" {
		grpc.SetHeader(ctx, metadata.Pairs(grpcHeaderCache, cache))
	}
	return resp, err
}

// infer is ModelInfer's work, shared with each request of a
// ModelStreamInfer: ctx is the call's (its deadline, key and cache-control
// metadata), pr the request, which it only reads. cache is how a model
// with a response cache answered (hit, miss or bypass; "" when it has
// none or the answer was not reached), for the caller to say where it
// can: a unary call in its header metadata.
func (g *grpcService) infer(ctx context.Context, pr *inferencepb.ModelInferRequest) (_ *inferencepb.ModelInferResponse, cache string, err error) {
	start := time.Now()
	s := g.s
	m, err := s.grpcModel(ctx, pr.ModelName, pr.ModelVersion)
	if err != nil {
		return nil, cache, err
	}
	defer m.Release()
	if !m.Ready() {
		return nil, cache, httperr.Errorf(http.StatusServiceUnavailable, "model %q is not ready", m.Name)
	}
	use := grpcCacheUse(ctx, m)
	if err := admitEarly(m, use); err != nil {
		return nil, cache, err
	}
	h := s.budget.Hold()
	defer h.Release()
	if err := h.Reserve(grpcConvertBytes(pr), "converting the gRPC infer request's typed contents"); err != nil {
		return nil, cache, exhausted{err}
	}
	st := grpcInferStates.Get().(*grpcInferState)
	defer putGRPCInferState(st)
	req := &st.req
	if err := grpcInferRequest(req, pr, &st.bufs); err != nil {
		return nil, cache, err
	}
	rows, err := checkInputs(m, req)
	if err != nil {
		return nil, cache, err
	}
	outs, bin, err := pickOutputs(m, req, st.outIdx[:0], st.outBin[:0])
	st.outIdx, st.outBin = outs, bin
	if err != nil {
		return nil, cache, err
	}
	timeout := req.Timeout
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left <= 0 {
			return nil, cache, httperr.Errorf(http.StatusGatewayTimeout, "the call's deadline passed before model %q queued it", m.Name)
		}
		if timeout == 0 || left < timeout {
			timeout = left
		}
	}
	run := func(j *host.Job) error {
		for i, t := range m.Inputs() {
			j.SetInput(i, req.Inputs[inputIndex(req, t.Name)].Data)
		}
		j.SetTimeout(timeout)
		j.SetPriority(req.Priority)
		return m.Submit(j, start)
	}
	var src outputSource
	if c := use; c == cacheOn {
		// As over HTTP: answered from the cache's entry, hit or miss; the
		// batcher is asked on a miss.
		e, hit, err := m.Cached(inferKey(m, req), time.Now(), start, func() (*respcache.Entry, error) {
			if err := m.Admit(); err != nil {
				return nil, err
			}
			j := m.GetJob(rows)
			defer m.PutJob(j)
			if err := run(j); err != nil {
				return nil, err
			}
			return j.Entry(), nil
		})
		if err != nil {
			return nil, cache, err
		}
		answer := "miss"
		if hit {
			answer = "hit"
		}
		cache = answer
		src.e = e
	} else {
		if c == cacheBypass {
			cache = "bypass"
		}
		j := m.GetJob(rows)
		defer m.PutJob(j)
		if err := run(j); err != nil {
			return nil, cache, err
		}
		src.j = j
	}

	// The outputs, classified where asked, then copied into one buffer the
	// response keeps: the job's buffers go back to its pool on return,
	// before grpc-go marshals the response.
	st.collectOutputs(m, outs, src)
	total := 0
	for _, out := range st.resp.Outputs {
		total += len(out.Data)
	}
	defer clear(st.resp.Outputs) // drop references to the job's buffers
	if err := h.Reserve(int64(total), "the gRPC infer response"); err != nil {
		return nil, cache, exhausted{err}
	}
	resp := &inferencepb.ModelInferResponse{ModelName: m.Name, ModelVersion: "1", Id: req.ID,
		Outputs:           make([]*inferencepb.ModelInferResponse_InferOutputTensor, len(st.resp.Outputs)),
		RawOutputContents: make([][]byte, len(st.resp.Outputs)),
	}
	data := make([]byte, 0, total)
	for i, out := range st.resp.Outputs {
		at := len(data)
		data = append(data, out.Data...)
		resp.RawOutputContents[i] = data[at:len(data):len(data)]
		resp.Outputs[i] = &inferencepb.ModelInferResponse_InferOutputTensor{Name: out.Name, Datatype: out.Datatype, Shape: append([]int64(nil), out.Shape...)}
	}
	return resp, cache, nil
}

// grpcHeaderCache is the response header metadata saying how a model with
// a response cache (models[].cache) answered: hit, miss or bypass, as
// HTTP's X-Inferd-Cache header.
var grpcHeaderCache = strings.ToLower(headerCache)

// grpcCacheUse says how a call uses m's cache: a cache-control metadata
// value of no-cache or no-store bypasses it, as the HTTP header does.
func grpcCacheUse(ctx context.Context, m *host.Model) cacheMode {
	if m.Cache() == nil {
		return cacheOff
	}
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("cache-control") {
		if strings.Contains(v, "no-cache") || strings.Contains(v, "no-store") {
			return cacheBypass
		}
	}
	return cacheOn
}

// grpcConvertBytes bounds what converting pr's typed contents allocates
// (no more than they hold as Go slices); raw contents are used in place,
// and the decoded message was reserved by the codec.
func grpcConvertBytes(pr *inferencepb.ModelInferRequest) int64 {
	var n int64
	for _, in := range pr.Inputs {
		n += typedBytes(in.Contents)
	}
	return n
}

// typedBytes is the memory of c's elements as Go slices (bytes_contents:
// their lengths).
func typedBytes(c *inferencepb.InferTensorContents) int64 {
	if c == nil {
		return 0
	}
	n := int64(len(c.BoolContents)) + 4*int64(len(c.IntContents)+len(c.UintContents)+len(c.Fp32Contents)) +
		8*int64(len(c.Int64Contents)+len(c.Uint64Contents)+len(c.Fp64Contents))
	for _, b := range c.BytesContents {
		n += int64(len(b)) + 24
	}
	return n
}

// grpcInferRequest converts a ModelInferRequest into dst, as
// kserve.ParseInferRequest does an HTTP body, and with its error texts
// where the two meet; every error is a 400 *httperr.Error, and dst is then
// empty. raw_input_contents are used in place (dst's Data are slices of
// pr's); typed contents are converted into bufs, reused, one per input,
// each allocated after its element count was checked against the shape:
// what is allocated is at most what the contents hold.
func grpcInferRequest(dst *kserve.InferRequest, pr *inferencepb.ModelInferRequest, bufs *[][]byte) error {
	dst.Reset()
	if err := convertGRPCRequest(dst, pr, bufs); err != nil {
		dst.Reset()
		return err
	}
	return nil
}

// maxDims bounds a shape's dimensions, as the HTTP parser does.
const maxDims = 64

func convertGRPCRequest(dst *kserve.InferRequest, pr *inferencepb.ModelInferRequest, bufs *[][]byte) error {
	dst.ID = pr.Id
	if err := grpcRequestParameters(dst, pr.Parameters); err != nil {
		return err
	}
	raw := pr.RawInputContents
	if len(raw) > 0 && len(raw) != len(pr.Inputs) {
		return badRequest("raw_input_contents has %d entries for %d inputs: send one per input, in input order, or none (typed contents)", len(raw), len(pr.Inputs))
	}
	for len(*bufs) < len(pr.Inputs) {
		*bufs = append(*bufs, nil)
	}
	for i, in := range pr.Inputs {
		label := inputLabel{i, in.Name} // formatted only for an error
		for j := range i {
			if pr.Inputs[j].Name == in.Name {
				return badRequest("input %s appears twice (inputs[%d] and inputs[%d])", quoteName(in.Name), j, i)
			}
		}
		size, ok := kserve.DatatypeSize(in.Datatype)
		if !ok {
			if in.Datatype == kserve.BYTES {
				return badRequest("%s: %v %q: string tensors are not supported, expected one of %s", label, kserve.ErrUnsupportedDatatype, in.Datatype, datatypeList)
			}
			return badRequest("%s: %v %q: expected one of %s", label, kserve.ErrUnsupportedDatatype, in.Datatype, datatypeList)
		}
		if len(in.Shape) > maxDims {
			return badRequest("%s: shape has %d dimensions, at most %d", label, len(in.Shape), maxDims)
		}
		t := kserve.Tensor{Name: in.Name, Datatype: in.Datatype, Shape: in.Shape}
		elems, err := t.Elements()
		if err != nil {
			return badRequest("%s: %v", label, err)
		}
		if elems > math.MaxInt64/int64(size) {
			return badRequest("%s: shape %v of %s is too large", label, in.Shape, in.Datatype)
		}
		nbytes := elems * int64(size)
		if len(raw) > 0 {
			if in.Contents != nil {
				return badRequest("%s has contents and the request has raw_input_contents: send one or the other", label)
			}
			if int64(len(raw[i])) != nbytes {
				return badRequest("%s: raw_input_contents[%d] is %d bytes, shape %v of %s needs %d", label, i, len(raw[i]), in.Shape, in.Datatype, nbytes)
			}
			t.Data = raw[i]
		} else {
			if in.Contents == nil {
				return badRequest("%s has no contents and the request no raw_input_contents: send one or the other", label)
			}
			if t.Data, err = convertContents(&(*bufs)[i], in.Contents, in.Datatype, elems, label); err != nil {
				return err
			}
		}
		dst.Inputs = append(dst.Inputs, t)
	}
	for i, o := range pr.Outputs {
		ro := kserve.RequestedOutput{Name: o.Name, Binary: true}
		for k, p := range o.Parameters {
			if k != "classification" {
				continue
			}
			n, ok := intParameter(p)
			if !ok || n < 0 || n > math.MaxInt32 {
				return badRequest("outputs[%d] %s: parameters.classification: expected an int64_param or uint64_param 0..%d (the number of classes)", i, quoteName(o.Name), math.MaxInt32)
			}
			ro.ClassCount = int(n)
		}
		dst.Outputs = append(dst.Outputs, ro)
	}
	dst.BinaryOutput = true
	return nil
}

// grpcRequestParameters reads the request's timeout (microseconds, as
// Triton reads it) and priority (0 the default, as over HTTP); other
// parameters are ignored, as Triton ignores those it does not know.
func grpcRequestParameters(dst *kserve.InferRequest, ps map[string]*inferencepb.InferParameter) error {
	if p, ok := ps["timeout"]; ok {
		us, ok := intParameter(p)
		if !ok || us < 0 {
			return badRequest("parameters.timeout: expected an int64_param or uint64_param, a whole number of microseconds >= 0")
		}
		if us > math.MaxInt64/int64(time.Microsecond) {
			return badRequest("parameters.timeout %d microseconds is too large: at most %d", us, math.MaxInt64/int64(time.Microsecond))
		}
		dst.Timeout = time.Duration(us) * time.Microsecond
	}
	if p, ok := ps["priority"]; ok {
		n, ok := intParameter(p)
		if !ok || n < 0 || n > math.MaxInt32 {
			return badRequest("parameters.priority: expected an int64_param or uint64_param 0..%d (0 is the default priority)", math.MaxInt32)
		}
		dst.Priority = int(n)
	}
	return nil
}

// intParameter reads an int64_param, or a uint64_param up to MaxInt64.
func intParameter(p *inferencepb.InferParameter) (int64, bool) {
	switch v := p.GetParameterChoice().(type) {
	case *inferencepb.InferParameter_Int64Param:
		return v.Int64Param, true
	case *inferencepb.InferParameter_Uint64Param:
		if v.Uint64Param > math.MaxInt64 {
			return 0, false
		}
		return int64(v.Uint64Param), true
	}
	return 0, false
}

// contentsField names the InferTensorContents field each datatype's typed
// contents go in, as Triton reads them; FP16 has none (raw only).
var contentsField = map[string]string{
	kserve.BOOL: "bool_contents",
	kserve.INT8: "int_contents", kserve.INT16: "int_contents", kserve.INT32: "int_contents",
	kserve.INT64: "int64_contents",
	kserve.UINT8: "uint_contents", kserve.UINT16: "uint_contents", kserve.UINT32: "uint_contents",
	kserve.UINT64: "uint64_contents",
	kserve.FP32:   "fp32_contents", kserve.FP64: "fp64_contents",
}

// convertContents converts c, the typed contents of a tensor of datatype
// dt and elems elements, into *buf (grown as needed, reused), little
// endian, integers range-checked. The element count of the datatype's
// field must be elems and the other fields empty: that is checked before
// anything is allocated.
func convertContents(buf *[]byte, c *inferencepb.InferTensorContents, dt string, elems int64, label inputLabel) ([]byte, error) {
	field, ok := contentsField[dt]
	if !ok {
		return nil, badRequest("%s: %s has no typed contents field: send it in raw_input_contents", label, dt)
	}
	counts := [...]struct {
		name string
		n    int
	}{
		{"bool_contents", len(c.BoolContents)}, {"int_contents", len(c.IntContents)},
		{"int64_contents", len(c.Int64Contents)}, {"uint_contents", len(c.UintContents)},
		{"uint64_contents", len(c.Uint64Contents)}, {"fp32_contents", len(c.Fp32Contents)},
		{"fp64_contents", len(c.Fp64Contents)}, {"bytes_contents", len(c.BytesContents)},
	}
	for _, f := range counts {
		switch {
		case f.name == field && int64(f.n) != elems:
			return nil, badRequest("%s: %s has %d elements, shape of %s needs %d", label, field, f.n, dt, elems)
		case f.name != field && f.n > 0:
			return nil, badRequest("%s: datatype %s takes %s, got %d elements in %s", label, dt, field, f.n, f.name)
		}
	}
	size, _ := kserve.DatatypeSize(dt)
	n := int(elems) * size
	if cap(*buf) < n {
		*buf = make([]byte, n)
	}
	b := (*buf)[:n]
	le := binary.LittleEndian
	switch dt {
	case kserve.BOOL:
		for i, v := range c.BoolContents {
			b[i] = 0
			if v {
				b[i] = 1
			}
		}
	case kserve.INT8, kserve.INT16, kserve.INT32:
		lo, hi := intRange(size)
		for i, v := range c.IntContents {
			if int64(v) < lo || int64(v) > hi {
				return nil, badRequest("%s: int_contents[%d] = %d is out of range for %s (%d..%d)", label, i, v, dt, lo, hi)
			}
			switch size {
			case 1:
				b[i] = byte(v)
			case 2:
				le.PutUint16(b[2*i:], uint16(v))
			default:
				le.PutUint32(b[4*i:], uint32(v))
			}
		}
	case kserve.INT64:
		for i, v := range c.Int64Contents {
			le.PutUint64(b[8*i:], uint64(v))
		}
	case kserve.UINT8, kserve.UINT16, kserve.UINT32:
		hi := uint32(1<<(8*size) - 1)
		for i, v := range c.UintContents {
			if v > hi {
				return nil, badRequest("%s: uint_contents[%d] = %d is out of range for %s (0..%d)", label, i, v, dt, hi)
			}
			switch size {
			case 1:
				b[i] = byte(v)
			case 2:
				le.PutUint16(b[2*i:], uint16(v))
			default:
				le.PutUint32(b[4*i:], v)
			}
		}
	case kserve.UINT64:
		for i, v := range c.Uint64Contents {
			le.PutUint64(b[8*i:], v)
		}
	case kserve.FP32:
		for i, v := range c.Fp32Contents {
			le.PutUint32(b[4*i:], math.Float32bits(v))
		}
	case kserve.FP64:
		for i, v := range c.Fp64Contents {
			le.PutUint64(b[8*i:], math.Float64bits(v))
		}
	}
	return b, nil
}

// inputLabel names an input in an error: inputs[2] "name".
type inputLabel struct {
	i    int
	name string
}

func (l inputLabel) String() string { return "inputs[" + strconv.Itoa(l.i) + "] " + quoteName(l.name) }

// intRange is the range of a signed integer of size bytes (1, 2 or 4).
func intRange(size int) (lo, hi int64) {
	hi = 1<<(8*size-1) - 1
	return -hi - 1, hi
}

// datatypeList is for error messages, as kserve's.
const datatypeList = "BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64"

func badRequest(format string, args ...any) error {
	return httperr.Errorf(http.StatusBadRequest, format, args...)
}

func quoteName(s string) string { return string(kserve.AppendString(nil, s)) }
