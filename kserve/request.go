package kserve

import (
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fastjson"
)

// RequestedOutput is one entry of the request's "outputs".
type RequestedOutput struct {
	// Name is the output's name.
	Name string
	// Binary is whether the output goes back as binary data: the output's
	// parameters.binary_data when present, else the request-level
	// parameters.binary_data_output.
	Binary bool
	// ClassCount is parameters.classification (Triton's classification
	// extension: return the top N classes as strings instead of the
	// tensor), 0 when absent. The parser only reads it; a server that does
	// not implement classification should reject a non-zero value with
	// 400.
	ClassCount int
}

// InferRequest is a parsed inference request. Reuse one per handler
// goroutine (or from a sync.Pool): ParseInferRequest recycles its slices,
// so steady-state parsing allocates little. The trap: Data, Shape and
// Name of a previous parse are overwritten by the next one, so nothing
// may keep them after the request is done.
type InferRequest struct {
	// ID is the request's "id", echoed in the response; "" when absent.
	ID string
	// Inputs in request order; names are unique.
	Inputs []Tensor
	// Outputs the client asked for; empty means all outputs, each sent as
	// binary when BinaryOutput is set.
	Outputs []RequestedOutput
	// BinaryOutput is the request-level parameters.binary_data_output.
	BinaryOutput bool
	// Timeout is parameters.timeout (microseconds on the wire, as Triton
	// reads it); 0 when absent.
	Timeout time.Duration
	// Priority is parameters.priority; 0 when absent (the default
	// priority).
	Priority int
}

// Reset empties r and keeps its slices' storage for the next parse.
func (r *InferRequest) Reset() {
	r.ID = ""
	r.Inputs = r.Inputs[:0]
	r.Outputs = r.Outputs[:0]
	r.BinaryOutput = false
	r.Timeout = 0
	r.Priority = 0
}

// Input returns the input called name, or nil.
func (r *InferRequest) Input(name string) *Tensor {
	for i := range r.Inputs {
		if r.Inputs[i].Name == name {
			return &r.Inputs[i]
		}
	}
	return nil
}

// state is the per-parse scratch, pooled: fastjson's parser keeps its
// value cache between uses, num holds one number's text.
type state struct {
	p   fastjson.Parser
	num []byte
}

var statePool = sync.Pool{New: func() any { return new(state) }}

// maxPooledHeader: a state that parsed a larger JSON header holds that
// much memory in fastjson's copy and value cache; it is left to the GC
// rather than kept in the pool.
const maxPooledHeader = 8 << 20

// ParseInferRequest parses an Open Inference Protocol (KServe v2) request
// body into dst, reusing dst's storage.
//
// headerLen is the Inference-Header-Content-Length header, or -1 when it
// is absent: then the whole body is JSON. Otherwise the body is headerLen
// bytes of JSON followed by the raw data of the inputs that carry
// parameters.binary_data_size, in input order (Triton's binary tensor
// data extension); they are copied out, so body may be reused afterwards.
//
// JSON "data" may be flat or nested exactly as the shape; numbers are
// converted to the declared datatype (integers range-checked, FP16 to IEEE
// half bits, BOOL from true/false or 0/1). The parser does not know the
// model: checking names, shapes and datatypes against it is the caller's
// job. Every error is an *Error with status 400 whose message says what
// was wrong and what was expected; dst is then left empty (Reset), never
// half-filled.
func ParseInferRequest(dst *InferRequest, body []byte, headerLen int) error {
	dst.Reset()
	if err := parseRequest(dst, body, headerLen); err != nil {
		dst.Reset()
		return err
	}
	return nil
}

func parseRequest(dst *InferRequest, body []byte, headerLen int) error {
	header, rest := body, []byte(nil)
	switch {
	case headerLen == -1:
	case headerLen < 0:
		return badRequest("Inference-Header-Content-Length %d is negative", headerLen)
	case headerLen > len(body):
		return badRequest("Inference-Header-Content-Length %d exceeds the body's %d bytes", headerLen, len(body))
	default:
		header, rest = body[:headerLen], body[headerLen:]
	}

	st := statePool.Get().(*state)
	defer func() {
		if len(header) <= maxPooledHeader {
			statePool.Put(st)
		}
	}()
	v, err := st.p.ParseBytes(header)
	if err != nil {
		return badRequest("%w: %s", ErrInvalidJSON, err)
	}
	o, err := v.Object()
	if err != nil {
		return badRequest("%w: the request must be a JSON object, got %s", ErrInvalidJSON, v.Type())
	}

	if idv := o.Get("id"); idv != nil {
		id, err := idv.StringBytes()
		if err != nil {
			return badRequest(`"id" must be a string, got %s`, idv.Type())
		}
		dst.ID = string(id)
	}
	if pv := o.Get("parameters"); pv != nil {
		if err := st.requestParameters(dst, pv); err != nil {
			return err
		}
	}

	iv := o.Get("inputs")
	if iv == nil {
		return badRequest(`request has no "inputs": expected an array of input tensors`)
	}
	inputs, err := iv.Array()
	if err != nil {
		return badRequest(`"inputs" must be an array of input tensors, got %s`, iv.Type())
	}
	if len(inputs) == 0 {
		return badRequest(`"inputs" is empty: expected at least one input tensor`)
	}
	off := 0
	for i, in := range inputs {
		t := nextTensor(&dst.Inputs)
		if err := st.parseInput(t, in, i, headerLen >= 0, rest, &off); err != nil {
			return err
		}
		for j := range dst.Inputs[:i] {
			if dst.Inputs[j].Name == t.Name {
				return badRequest("input %q appears twice (inputs[%d] and inputs[%d])", t.Name, j, i)
			}
		}
	}
	if off != len(rest) {
		return badRequest("binary_data_size of the inputs adds up to %d bytes, but %d bytes follow the %d-byte JSON header", off, len(rest), headerLen)
	}

	if ov := o.Get("outputs"); ov != nil {
		outputs, err := ov.Array()
		if err != nil {
			return badRequest(`"outputs" must be an array, got %s`, ov.Type())
		}
		for i, out := range outputs {
			if err := st.parseOutput(dst, out, i); err != nil {
				return err
			}
		}
	}
	return nil
}

// nextTensor extends *ts by one element, reusing the storage of a tensor
// left there by an earlier parse.
func nextTensor(ts *[]Tensor) *Tensor {
	n := len(*ts)
	if n < cap(*ts) {
		*ts = (*ts)[:n+1]
	} else {
		*ts = append(*ts, Tensor{})
	}
	t := &(*ts)[n]
	t.Shape = t.Shape[:0]
	t.Data = t.Data[:0]
	return t
}

func (st *state) requestParameters(dst *InferRequest, pv *fastjson.Value) error {
	po, err := pv.Object()
	if err != nil {
		return badRequest(`request "parameters" must be an object, got %s`, pv.Type())
	}
	if v := po.Get("binary_data_output"); v != nil {
		b, err := v.Bool()
		if err != nil {
			return badRequest("parameters.binary_data_output must be true or false, got %s", v.Type())
		}
		dst.BinaryOutput = b
	}
	if v := po.Get("timeout"); v != nil {
		us, err := st.nonNegative(v)
		if err != nil {
			return badRequest("parameters.timeout: %s: expected a whole number of microseconds >= 0", err)
		}
		if us > math.MaxInt64/int64(time.Microsecond) {
			return badRequest("parameters.timeout %d microseconds is too large: at most %d", us, math.MaxInt64/int64(time.Microsecond))
		}
		dst.Timeout = time.Duration(us) * time.Microsecond
	}
	if v := po.Get("priority"); v != nil {
		p, err := st.nonNegative(v)
		if err != nil || p > math.MaxInt32 {
			return badRequest("parameters.priority: %s: expected a whole number 0..%d (0 is the default priority)", describe(err, v), math.MaxInt32)
		}
		dst.Priority = int(p)
	}
	return nil
}

// describe returns err's text, or the value when err is nil (the value
// was a number, just out of range).
func describe(err error, v *fastjson.Value) string {
	if err != nil {
		return err.Error()
	}
	return "got " + string(v.MarshalTo(nil))
}

// nonNegative reads v as an integer >= 0.
func (st *state) nonNegative(v *fastjson.Value) (int64, error) {
	if v.Type() != fastjson.TypeNumber {
		return 0, errorString("got " + v.Type().String())
	}
	st.num = v.MarshalTo(st.num[:0])
	if !isJSONNumber(st.num) {
		return 0, errorString("got " + string(st.num) + ", not a valid JSON number")
	}
	n, err := parseSigned(st.num, 0, math.MaxInt64)
	if err != nil {
		return 0, errorString("got " + string(st.num))
	}
	return n, nil
}

// errorString is an error built from strings alone, for messages made
// without fmt.
type errorString string

// Error returns the message.
func (e errorString) Error() string { return string(e) }

// inputLabel names an input in messages: by name once it is known. It
// is formatted (and allocates) only when an error is.
type inputLabel struct {
	name string
	i    int
}

// String names the input for an error message.
func (l inputLabel) String() string {
	if l.name == "" {
		return "inputs[" + strconv.Itoa(l.i) + "]"
	}
	return "input " + strconv.Quote(l.name)
}

func (st *state) parseInput(t *Tensor, v *fastjson.Value, i int, binaryOK bool, rest []byte, off *int) error {
	o, err := v.Object()
	if err != nil {
		return badRequest("inputs[%d] must be an object with name, datatype, shape and data, got %s", i, v.Type())
	}
	nv := o.Get("name")
	if nv == nil {
		return badRequest(`inputs[%d] has no "name"`, i)
	}
	name, err := nv.StringBytes()
	if err != nil || len(name) == 0 {
		return badRequest(`inputs[%d] "name" must be a non-empty string`, i)
	}
	if t.Name != string(name) { // reuse the string of the last parse when equal
		t.Name = string(name)
	}
	label := inputLabel{t.Name, i}

	dv := o.Get("datatype")
	if dv == nil {
		return badRequest(`%s has no "datatype": expected one of %s`, label, supportedList)
	}
	dtb, err := dv.StringBytes()
	if err != nil {
		return badRequest(`%s "datatype" must be a string, got %s`, label, dv.Type())
	}
	t.Datatype = canonicalDatatype(dtb)
	if t.Datatype == "" {
		if string(dtb) == BYTES {
			return badRequest("%s: %w %q: string tensors are not supported, expected one of %s", label, ErrUnsupportedDatatype, dtb, supportedList)
		}
		return badRequest("%s: %w %q: expected one of %s", label, ErrUnsupportedDatatype, dtb, supportedList)
	}
	size, _ := DatatypeSize(t.Datatype)

	sv := o.Get("shape")
	if sv == nil {
		return badRequest(`%s has no "shape": expected an array of dimensions such as [1,3,224,224]`, label)
	}
	dims, err := sv.Array()
	if err != nil {
		return badRequest(`%s "shape" must be an array of dimensions, got %s`, label, sv.Type())
	}
	for j, d := range dims {
		n, err := st.nonNegative(d)
		if err != nil {
			return badRequest("%s: shape[%d] %s: expected a whole number >= 0", label, j, err)
		}
		t.Shape = append(t.Shape, n)
	}
	elems, err := shapeElements(t.Shape)
	if err == nil && elems > math.MaxInt64/int64(size) {
		err = errorString("shape " + formatShape(t.Shape) + " of " + t.Datatype + " needs more bytes than fit in int64")
	}
	if err != nil {
		return badRequest("%s: %s", label, err)
	}
	nbytes := elems * int64(size)

	binSize := int64(-1)
	if pv := o.Get("parameters"); pv != nil {
		po, err := pv.Object()
		if err != nil {
			return badRequest(`%s "parameters" must be an object, got %s`, label, pv.Type())
		}
		if bv := po.Get("binary_data_size"); bv != nil {
			if binSize, err = st.nonNegative(bv); err != nil {
				return badRequest("%s: parameters.binary_data_size %s: expected a byte count >= 0", label, err)
			}
		}
		if po.Get("shared_memory_region") != nil {
			return badRequest("%s: shared memory inputs (parameters.shared_memory_region) are not supported: send data or binary data", label)
		}
	}
	data := o.Get("data")

	switch {
	case binSize >= 0 && data != nil:
		return badRequest(`%s has both "data" and parameters.binary_data_size: send one or the other`, label)
	case binSize >= 0:
		if !binaryOK {
			return badRequest("%s has parameters.binary_data_size but the request has no Inference-Header-Content-Length header: set it to the JSON header's length", label)
		}
		if binSize != nbytes {
			return badRequest("%s: binary_data_size is %d bytes, shape %s of %s needs %d", label, binSize, formatShape(t.Shape), t.Datatype, nbytes)
		}
		if int64(len(rest)-*off) < binSize {
			return badRequest("%s: binary data of %d bytes at offset %d runs past the end of the body (%d bytes follow the JSON header)", label, binSize, *off, len(rest))
		}
		t.Data = append(t.Data[:0], rest[*off:*off+int(binSize)]...)
		*off += int(binSize)
		return nil
	case data != nil:
		return st.parseData(t, data, label, elems)
	default:
		return badRequest(`%s has neither "data" nor parameters.binary_data_size`, label)
	}
}

func (st *state) parseOutput(dst *InferRequest, v *fastjson.Value, i int) error {
	o, err := v.Object()
	if err != nil {
		return badRequest(`outputs[%d] must be an object with a "name", got %s`, i, v.Type())
	}
	nv := o.Get("name")
	if nv == nil {
		return badRequest(`outputs[%d] has no "name"`, i)
	}
	name, err := nv.StringBytes()
	if err != nil || len(name) == 0 {
		return badRequest(`outputs[%d] "name" must be a non-empty string`, i)
	}
	for j := range dst.Outputs {
		if dst.Outputs[j].Name == string(name) {
			return badRequest("output %q is requested twice (outputs[%d] and outputs[%d])", name, j, i)
		}
	}
	n := len(dst.Outputs)
	if n < cap(dst.Outputs) {
		dst.Outputs = dst.Outputs[:n+1]
	} else {
		dst.Outputs = append(dst.Outputs, RequestedOutput{})
	}
	out := &dst.Outputs[n]
	if out.Name != string(name) {
		out.Name = string(name)
	}
	out.Binary, out.ClassCount = dst.BinaryOutput, 0
	pv := o.Get("parameters")
	if pv == nil {
		return nil
	}
	po, err := pv.Object()
	if err != nil {
		return badRequest(`output %q "parameters" must be an object, got %s`, name, pv.Type())
	}
	if bv := po.Get("binary_data"); bv != nil {
		if out.Binary, err = bv.Bool(); err != nil {
			return badRequest("output %q: parameters.binary_data must be true or false, got %s", name, bv.Type())
		}
	}
	if cv := po.Get("classification"); cv != nil {
		c, err := st.nonNegative(cv)
		if err != nil || c > math.MaxInt32 {
			return badRequest("output %q: parameters.classification: %s: expected a class count >= 0", name, describe(err, cv))
		}
		out.ClassCount = int(c)
	}
	return nil
}
