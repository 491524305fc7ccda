package server

import (
	"bytes"
	"encoding/binary"
	"math"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/inferd/inferd/gpu"
	"github.com/inferd/inferd/host"
	"github.com/inferd/inferd/httperr"
	"github.com/inferd/inferd/kserve"
	"github.com/inferd/inferd/respcache"
)

// headerInferenceLength is the binary tensor extension's header: the length
// of the JSON part of a body whose tensors follow in binary.
const headerInferenceLength = "Inference-Header-Content-Length"

// inferState is what one infer request needs besides its job, pooled so a
// steady stream of requests reuses parsed tensors and the output
// selection.
type inferState struct {
	req    kserve.InferRequest
	resp   kserve.InferResponse
	outIdx []int
	outBin []bool
	cls    []byte // the classification outputs' BYTES data, reused
}

// classify turns out, an FP32 output of shape [rows, classes], into the
// classification extension's answer as Triton gives it: BYTES of shape
// [rows, k] (k clamped to classes, as Triton does), each element
// "value:index" or "value:index:label" for the k highest raw values of its
// row, highest first. The value is the output's own, not a softmax, printed
// as C++'s std::to_string prints a float (%f: six decimals).
func (st *inferState) classify(m *host.Model, out kserve.Tensor, k int) kserve.Tensor {
	rows, classes := int(out.Shape[0]), int(out.Shape[1])
	k = min(k, classes)
	start := len(st.cls)
	for r := range rows {
		for _, c := range host.TopK(out.Data[4*classes*r:4*classes*(r+1)], k) {
			at := len(st.cls)
			st.cls = append(st.cls, 0, 0, 0, 0) // the length, set below
			st.cls = appendClassValue(st.cls, c.Prob)
			st.cls = append(st.cls, ':')
			st.cls = strconv.AppendInt(st.cls, int64(c.Index), 10)
			if label, ok := m.LabelOf(c.Index); ok {
				st.cls = append(st.cls, ':')
				st.cls = append(st.cls, label...)
			}
			binary.LittleEndian.PutUint32(st.cls[at:], uint32(len(st.cls)-at-4))
		}
	}
	// Earlier outputs keep their bytes should a later append move st.cls.
	return kserve.Tensor{Name: out.Name, Datatype: kserve.BYTES, Shape: []int64{int64(rows), int64(k)}, Data: st.cls[start:len(st.cls):len(st.cls)]}
}

// appendClassValue prints v as std::to_string(float) does, as Triton's
// classification strings have it: 7.500000, -0.250000, inf, nan.
func appendClassValue(b []byte, v float32) []byte {
	switch f := float64(v); {
	case math.IsNaN(f):
		return append(b, "nan"...)
	case math.IsInf(f, 1):
		return append(b, "inf"...)
	case math.IsInf(f, -1):
		return append(b, "-inf"...)
	default:
		return strconv.AppendFloat(b, f, 'f', 6, 64)
	}
}

var inferStates = sync.Pool{New: func() any { return new(inferState) }}

// infer serves POST /v2/models/M/infer.
func (s *Server) infer(ctx *fasthttp.RequestCtx, m *host.Model) {
	if !m.Ready() {
		writeError(ctx, httperr.Errorf(http.StatusServiceUnavailable, "model %q is not ready", m.Name))
		return
	}
	headerLen := -1
	if h := ctx.Request.Header.Peek(headerInferenceLength); h != nil {
		n, err := strconv.Atoi(string(h))
		if err != nil || n < 0 {
			writeError(ctx, httperr.Errorf(http.StatusBadRequest, "%s %q: want a non-negative integer", headerInferenceLength, h))
			return
		}
		headerLen = n
	}
	// Cheap checks first: a request the queue would refuse costs no body,
	// unless the cache may answer it (admitCached asks on a miss).
	cache := cacheUse(ctx, m)
	if err := admitEarly(m, cache); err != nil {
		writeError(ctx, err)
		return
	}
	h := s.budget.Hold()
	defer h.Release()
	b, err := s.readBody(ctx, &h, s.cfg.Server.MaxBodyBytes)
	defer b.release()
	if err != nil {
		writeError(ctx, err)
		return
	}
	if err := h.Reserve(parseReserve(len(b.b), headerLen), "parsing the infer request"); err != nil {
		writeError(ctx, err)
		return
	}
	st := inferStates.Get().(*inferState)
	defer putInferState(st)
	req := &st.req
	if err := kserve.ParseInferRequest(req, b.b, headerLen); err != nil {
		writeError(ctx, err)
		return
	}
	rows, err := checkInputs(m, req)
	if err != nil {
		writeError(ctx, err)
		return
	}
	outs, binary, err := pickOutputs(m, req, st.outIdx[:0], st.outBin[:0])
	st.outIdx, st.outBin = outs, binary
	if err != nil {
		writeError(ctx, err)
		return
	}
	var src outputSource
	if c := cache; c == cacheOn {
		// Answered from the cache's entry, hit or miss alike, so that both
		// send the same bytes; output selection and classification apply
		// after it.
		hashed := time.Now()
		key := inferKey(m, req)
		e, hit, err := m.Cached(key, hashed, ctx.Time(), func() (*respcache.Entry, error) {
			if err := m.Admit(); err != nil {
				return nil, err
			}
			j := m.GetJob(rows)
			defer m.PutJob(j)
			if err := s.runInfer(ctx, m, req, j); err != nil {
				return nil, err
			}
			return j.Entry(), nil
		})
		if err != nil {
			writeError(ctx, err)
			return
		}
		setCacheHeader(ctx, hit)
		src.e = e
	} else {
		if c == cacheBypass {
			ctx.Response.Header.Set(headerCache, "bypass")
		}
		j := m.GetJob(rows)
		defer m.PutJob(j)
		if err := s.runInfer(ctx, m, req, j); err != nil {
			writeError(ctx, err)
			return
		}
		src.j = j
	}

	resp := &st.resp
	resp.ModelName, resp.ModelVersion, resp.ID = m.Name, "1", req.ID
	st.collectOutputs(m, outs, src)
	resp.BinaryOut = append(resp.BinaryOut[:0], binary...)
	// Straight into fasthttp's pooled response buffer: SwapBody hands its
	// bytes over and takes them back, grown as needed, with no copy.
	body, hlen := kserve.AppendInferResponse(ctx.Response.SwapBody(nil)[:0], resp)
	ctx.Response.SwapBody(body)
	clear(resp.Outputs) // drop references to the job's buffers
	if hlen != len(body) {
		ctx.Response.Header.Set(headerInferenceLength, strconv.Itoa(hlen))
		ctx.SetContentType("application/octet-stream")
	} else {
		ctx.SetContentType("application/json")
	}
}

// collectOutputs sets st.resp.Outputs to the outputs outs selects from
// src, each classified where the request asked (parameters.classification).
func (st *inferState) collectOutputs(m *host.Model, outs []int, src outputSource) {
	st.resp.Outputs = st.resp.Outputs[:0]
	st.cls = st.cls[:0]
	for k, oi := range outs {
		t := m.Outputs()[oi]
		shape, data := src.output(oi)
		out := kserve.Tensor{Name: t.Name, Datatype: t.Datatype, Shape: shape, Data: data}
		if len(st.req.Outputs) > 0 && st.req.Outputs[k].ClassCount > 0 {
			out = st.classify(m, out, st.req.Outputs[k].ClassCount)
		}
		st.resp.Outputs = append(st.resp.Outputs, out)
	}
}

// runInfer runs req's inputs through m's batcher in j.
func (s *Server) runInfer(ctx *fasthttp.RequestCtx, m *host.Model, req *kserve.InferRequest, j *host.Job) error {
	for i, t := range m.Inputs() {
		j.SetInput(i, req.Inputs[inputIndex(req, t.Name)].Data)
	}
	j.SetTimeout(req.Timeout)
	j.SetPriority(req.Priority)
	return s.submit(ctx, m, j)
}

// outputSource is where a response's outputs come from: a job that just
// ran, or a cache entry.
type outputSource struct {
	j *host.Job
	e *respcache.Entry
}

func (o outputSource) output(i int) (shape []int64, data []byte) {
	if o.e != nil {
		out := o.e.Output(i)
		return out.Shape, out.Data
	}
	return o.j.OutputShape(i), o.j.Output(i)
}

// The response cache (models[].cache, package respcache): a model with a
// cache answers each infer and classify request with the header
// X-Inferd-Cache: hit (from the cache, or from the computation of a
// concurrent identical request), miss (computed and stored), or bypass
// (the request said Cache-Control: no-cache or no-store: computed, neither
// looked up nor stored). A model without a cache sends no header.
const headerCache = "X-Inferd-Cache"

type cacheMode uint8

const (
	cacheOff cacheMode = iota
	cacheOn
	cacheBypass
)

// cacheUse says how the request uses m's cache.
func cacheUse(ctx *fasthttp.RequestCtx, m *host.Model) cacheMode {
	if m.Cache() == nil {
		return cacheOff
	}
	if cc := ctx.Request.Header.Peek(fasthttp.HeaderCacheControl); cc != nil {
		cc = bytes.ToLower(cc) // directives are case-insensitive (RFC 9111)
		if bytes.Contains(cc, []byte("no-cache")) || bytes.Contains(cc, []byte("no-store")) {
			return cacheBypass
		}
	}
	return cacheOn
}

// admitEarly asks m's batcher, before a request's body is read, whether
// it would take the request now, unless the cache may answer it: an
// overloaded model still answers its hits, and its misses ask the batcher
// once they know they are misses, before they decode or queue anything.
// The memory budget bounds what the bodies read meanwhile hold.
func admitEarly(m *host.Model, c cacheMode) error {
	if c == cacheOn {
		return nil
	}
	return m.Admit()
}

func setCacheHeader(ctx *fasthttp.RequestCtx, hit bool) {
	if hit {
		ctx.Response.Header.Set(headerCache, "hit")
	} else {
		ctx.Response.Header.Set(headerCache, "miss")
	}
}

// inferKey is the cache key of an infer request: the model, its version,
// and every input in the model's order (name, datatype, shape, bytes).
// Outputs, classification and the binary extension are not in it: they
// apply to the entry.
func inferKey(m *host.Model, req *kserve.InferRequest) respcache.Key {
	h := m.Cache().NewKey("infer").String(m.Name).String("1")
	for _, t := range m.Inputs() {
		in := &req.Inputs[inputIndex(req, t.Name)]
		h.String(in.Name).String(in.Datatype).Shape(in.Shape).Bytes(in.Data)
	}
	return h.Sum()
}

// submit runs j through m's batcher. The response says where the time went
// in a Server-Timing header (queue and compute, in ms), as browsers' and
// load testers' tools read it.
func (s *Server) submit(ctx *fasthttp.RequestCtx, m *host.Model, j *host.Job) error {
	if err := m.Submit(j, ctx.Time()); err != nil {
		return err
	}
	queue, compute := j.Timing()
	var buf [64]byte
	b := append(buf[:0], "queue;dur="...)
	b = strconv.AppendFloat(b, float64(queue)/1e6, 'f', 3, 64)
	b = append(b, ", compute;dur="...)
	b = strconv.AppendFloat(b, float64(compute)/1e6, 'f', 3, 64)
	ctx.Response.Header.SetBytesV("Server-Timing", b)
	return nil
}

// parseReserve is what parsing an infer body of n bytes may allocate:
// kserve guarantees at most 4 bytes of tensor per byte of JSON (an FP64 or
// INT64 element from two characters, "0,") plus 64 KiB; binary tensors are
// read in place.
func parseReserve(n, headerLen int) int64 {
	if headerLen < 0 || headerLen > n {
		headerLen = n
	}
	return 4*int64(headerLen) + 64<<10
}

// maxPooledTensors bounds the tensor bytes a pooled inferState keeps: the
// state of a larger request goes to the collector, so a spike of large
// requests does not stay in the pool outside the memory budget.
const maxPooledTensors = 4 << 20

func putInferState(st *inferState) {
	st.req.Reset() // lets go of the body
	if st.req.StorageBytes() <= maxPooledTensors && cap(st.cls) <= maxPooledTensors {
		inferStates.Put(st)
	}
}

func inputIndex(req *kserve.InferRequest, name string) int {
	return slices.IndexFunc(req.Inputs, func(t kserve.Tensor) bool { return t.Name == name })
}

// checkInputs matches the request's inputs against the model's: every model
// input present once, nothing else, datatypes equal, shapes [n, row...]
// with the same n for all and n within the model's maximum batch; for an
// unbatched model, shapes exactly the model's, and one row.
func checkInputs(m *host.Model, req *kserve.InferRequest) (rows int, err error) {
	want := m.Inputs()
	for _, t := range req.Inputs {
		if !slices.ContainsFunc(want, func(w gpu.TensorInfo) bool { return w.Name == t.Name }) {
			return 0, httperr.Errorf(http.StatusBadRequest, "model %q has no input %q (inputs: %s)", m.Name, t.Name, tensorNames(want))
		}
	}
	batched := m.Batched()
	rows = -1
	for _, w := range want {
		i := inputIndex(req, w.Name)
		if i < 0 {
			return 0, httperr.Errorf(http.StatusBadRequest, "input %q is missing (model %q takes %s)", w.Name, m.Name, tensorNames(want))
		}
		t := &req.Inputs[i]
		if t.Datatype != w.Datatype {
			return 0, httperr.Errorf(http.StatusBadRequest, "input %q: datatype %s, model %q takes %s", w.Name, t.Datatype, m.Name, w.Datatype)
		}
		if !batched {
			if !slices.Equal(t.Shape, w.Shape) {
				return 0, httperr.Errorf(http.StatusBadRequest, "input %q: shape %v, model %q takes exactly %s (it has no batch dimension: max_batch_size 0)", w.Name, t.Shape, m.Name, gpu.FormatShape(w.Shape))
			}
			continue
		}
		if len(t.Shape) != len(w.Shape) || !slices.Equal(t.Shape[1:], w.Shape[1:]) {
			return 0, httperr.Errorf(http.StatusBadRequest, "input %q: shape %v, model %q takes %s", w.Name, t.Shape, m.Name, gpu.FormatShape(w.Shape))
		}
		n := int(t.Shape[0])
		if rows >= 0 && n != rows {
			return 0, httperr.Errorf(http.StatusBadRequest, "input %q has batch size %d but another input has %d", w.Name, n, rows)
		}
		rows = n
	}
	if !batched {
		return 1, nil // the request is one run
	}
	if rows < 1 || rows > m.MaxBatch() {
		return 0, httperr.Errorf(http.StatusBadRequest, "batch size %d: model %q takes 1 to %d rows per request (max_batch)", rows, m.Name, m.MaxBatch())
	}
	return rows, nil
}

// pickOutputs appends to idx and bin the indexes of the outputs to send
// and whether each goes in binary.
func pickOutputs(m *host.Model, req *kserve.InferRequest, idx []int, bin []bool) ([]int, []bool, error) {
	all := m.Outputs()
	if len(req.Outputs) == 0 {
		for i := range all {
			idx, bin = append(idx, i), append(bin, req.BinaryOutput)
		}
		return idx, bin, nil
	}
	for _, o := range req.Outputs {
		i := slices.IndexFunc(all, func(t gpu.TensorInfo) bool { return t.Name == o.Name })
		if i < 0 {
			return idx, bin, httperr.Errorf(http.StatusBadRequest, "model %q has no output %q (outputs: %s)", m.Name, o.Name, tensorNames(all))
		}
		if t := all[i]; o.ClassCount > 0 && (t.Datatype != kserve.FP32 || len(t.Shape) != 2) {
			return idx, bin, httperr.Errorf(http.StatusBadRequest, "output %q: parameters.classification needs an FP32 output of shape [N,classes], and model %q gives %s %s", o.Name, m.Name, t.Datatype, gpu.FormatShape(t.Shape))
		}
		idx = append(idx, i)
		bin = append(bin, o.Binary || req.BinaryOutput)
	}
	return idx, bin, nil
}

func tensorNames(ts []gpu.TensorInfo) string {
	b := []byte{}
	for i, t := range ts {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = strconv.AppendQuote(b, t.Name)
	}
	return string(b)
}
