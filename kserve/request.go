package kserve

import (
	"cmp"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
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
// so steady-state parsing allocates little. The traps: Data, Shape and
// Name of a previous parse are overwritten by the next one, so nothing
// may keep them after the request is done; and the Data of a binary
// tensor is a slice of the body given to ParseInferRequest, which must
// therefore outlive the request's use and stay unchanged.
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

// Reset empties r and keeps its slices' storage for the next parse; it
// lets go of the last body (binary tensors point into it).
func (r *InferRequest) Reset() {
	r.ID = ""
	for i := range r.Inputs {
		r.Inputs[i].Data = nil
	}
	r.Inputs = r.Inputs[:0]
	r.Outputs = r.Outputs[:0]
	r.BinaryOutput = false
	r.Timeout = 0
	r.Priority = 0
}

// StorageBytes is the tensor storage r keeps for its next parses (what
// JSON data was converted into; binary data stays in the body), for a
// pool that bounds what it keeps.
func (r *InferRequest) StorageBytes() int {
	n := 0
	for _, t := range r.Inputs[:cap(r.Inputs)] {
		n += cap(t.buf)
	}
	return n
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
// half bits, BOOL from true/false or 0/1). The members of an input may
// come in any order. The parser does not know the model: checking names,
// shapes and datatypes against it is the caller's job. Every error is an
// *httperr.Error with status 400 whose message says what was wrong and
// what was expected; dst is then left empty (Reset), never half-filled.
//
// Memory is bounded by the body, whatever it holds: the JSON is read in
// place, never built into a tree; a tensor's buffer is allocated once,
// after its shape was found plausible against the bytes of its "data";
// and a parse into a fresh InferRequest allocates at most 4 bytes per
// byte of body plus 64 KiB, whether it succeeds or not (a reused one
// allocates less). Nesting deeper than 128 arrays and objects, and
// shapes of more than 64 dimensions, are refused.
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

	var top topMembers
	start, err := validate(header, &top)
	if err != nil {
		return badRequest("%w: %s", ErrInvalidJSON, err)
	}
	b := header
	if b[start] != '{' {
		return badRequest("%w: the request must be a JSON object, got %s", ErrInvalidJSON, kindAt(b, start))
	}

	if i := top.id; i >= 0 {
		if b[i] != '"' {
			return badRequest(`"id" must be a string, got %s`, kindAt(b, i))
		}
		dst.ID = string(unescaped(rawString(b, i, skipString(b, i))))
	}
	if top.parameters >= 0 {
		if err := requestParameters(dst, b, top.parameters); err != nil {
			return err
		}
	}

	if top.inputs < 0 {
		return badRequest(`request has no "inputs": expected an array of input tensors`)
	}
	if b[top.inputs] != '[' {
		return badRequest(`"inputs" must be an array of input tensors, got %s`, kindAt(b, top.inputs))
	}
	if top.nInputs == 0 {
		return badRequest(`"inputs" is empty: expected at least one input tensor`)
	}
	// Grown once to the count validate took (appending one by one would
	// allocate twice the tensors), but no further than the bytes could
	// hold valid inputs: "inputs":[1,1,1,...] fails at its first element
	// and must not have paid 80 bytes per 2 of body first.
	dst.Inputs = slices.Grow(dst.Inputs, min(top.nInputs, len(b)/minInputLen+1))
	off := 0
	it := newArrayIter(b, top.inputs)
	for i := 0; ; i++ {
		s, ok := it.nextStart()
		if !ok {
			break
		}
		t := nextTensor(&dst.Inputs)
		end, err := parseInput(t, b, s, i, headerLen >= 0, rest, &off)
		if err != nil {
			return err
		}
		it.skipTo(end)
		if i < smallDup {
			for j := range dst.Inputs[:i] {
				if dst.Inputs[j].Name == t.Name {
					return badRequest("input %s appears twice (inputs[%d] and inputs[%d])", quoteName(t.Name), j, i)
				}
			}
		}
	}
	if j, i, ok := firstDuplicate(len(dst.Inputs), func(k int) string { return dst.Inputs[k].Name }); ok {
		return badRequest("input %s appears twice (inputs[%d] and inputs[%d])", quoteName(dst.Inputs[i].Name), j, i)
	}
	if off != len(rest) {
		return badRequest("binary_data_size of the inputs adds up to %d bytes, but %d bytes follow the %d-byte JSON header", off, len(rest), headerLen)
	}

	if o := top.outputs; o >= 0 {
		if b[o] != '[' {
			return badRequest(`"outputs" must be an array, got %s`, kindAt(b, o))
		}
		dst.Outputs = slices.Grow(dst.Outputs, min(top.nOutputs, len(b)/minOutputLen+1))
		it := newArrayIter(b, o)
		for i := 0; ; i++ {
			s, ok := it.nextStart()
			if !ok {
				break
			}
			end, err := parseOutput(dst, b, s, i)
			if err != nil {
				return err
			}
			it.skipTo(end)
		}
		if j, i, ok := firstDuplicate(len(dst.Outputs), func(k int) string { return dst.Outputs[k].Name }); ok {
			return badRequest("output %s is requested twice (outputs[%d] and outputs[%d])", quoteName(dst.Outputs[i].Name), j, i)
		}
	}
	return nil
}

// The shortest valid input and output, which bound how many of them a
// header of n bytes can hold: {"name":"x","datatype":"BOOL","shape":[0],"data":[]}
// and {"name":"x"}.
const (
	minInputLen  = 52
	minOutputLen = 12
)

// smallDup: the first inputs and outputs are checked for repeated names
// as they are read, against all before them; beyond that, once at the
// end by sorting (a request with 100,000 outputs would otherwise cost
// 5·10⁹ comparisons).
const smallDup = 64

// firstDuplicate finds, among n names with at least smallDup+1 of them,
// the first i whose name appeared before, and that first j; the same
// pair the linear check would find.
func firstDuplicate(n int, name func(int) string) (j, i int, ok bool) {
	if n <= smallDup {
		return 0, 0, false
	}
	idx := make([]int32, n)
	for k := range idx {
		idx[k] = int32(k)
	}
	slices.SortFunc(idx, func(a, b int32) int {
		return cmp.Or(strings.Compare(name(int(a)), name(int(b))), cmp.Compare(a, b))
	})
	i = n
	for k := 1; k < n; k++ {
		if name(int(idx[k])) == name(int(idx[k-1])) && (k == 1 || name(int(idx[k-1])) != name(int(idx[k-2]))) {
			// idx[k-1] heads a run of equal names; idx[k] is its second.
			if int(idx[k]) < i {
				j, i = int(idx[k-1]), int(idx[k])
			}
		}
	}
	return j, i, i < n
}

// quoteName quotes a name for an error message, clipped so that the
// message does not grow with the body.
func quoteName[S string | []byte](s S) string {
	if len(s) > 64 {
		return strconv.Quote(string(s[:64])) + "..."
	}
	return strconv.Quote(string(s))
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
	t.Data = nil
	return t
}

func requestParameters(dst *InferRequest, b []byte, at int) error {
	if b[at] != '{' {
		return badRequest(`request "parameters" must be an object, got %s`, kindAt(b, at))
	}
	bdo, timeout, priority := -1, -1, -1
	it := newObjectIter(b, at)
	for {
		k, s, _, ok := it.next()
		if !ok {
			break
		}
		var kb [24]byte
		switch string(unescapeKey(kb[:0], k)) {
		case "binary_data_output":
			bdo = first(bdo, s)
		case "timeout":
			timeout = first(timeout, s)
		case "priority":
			priority = first(priority, s)
		}
	}
	if bdo >= 0 {
		v, ok := boolAt(b, bdo)
		if !ok {
			return badRequest("parameters.binary_data_output must be true or false, got %s", kindAt(b, bdo))
		}
		dst.BinaryOutput = v
	}
	if timeout >= 0 {
		us, err := nonNegative(b, timeout)
		if err != nil {
			return badRequest("parameters.timeout: %s: expected a whole number of microseconds >= 0", err)
		}
		if us > math.MaxInt64/int64(time.Microsecond) {
			return badRequest("parameters.timeout %d microseconds is too large: at most %d", us, math.MaxInt64/int64(time.Microsecond))
		}
		dst.Timeout = time.Duration(us) * time.Microsecond
	}
	if priority >= 0 {
		p, err := nonNegative(b, priority)
		if err != nil || p > math.MaxInt32 {
			return badRequest("parameters.priority: %s: expected a whole number 0..%d (0 is the default priority)", describe(err, b, priority), math.MaxInt32)
		}
		dst.Priority = int(p)
	}
	return nil
}

// boolAt reads the valid value at b[i] as true or false.
func boolAt(b []byte, i int) (v, ok bool) {
	switch b[i] {
	case 't':
		return true, true
	case 'f':
		return false, true
	}
	return false, false
}

// describe returns err's text, or the number at b[i] when err is nil
// (the value was a number, just out of range).
func describe(err error, b []byte, i int) string {
	if err != nil {
		return err.Error()
	}
	return "got " + clip(b[i:numberEnd(b, i)], 40)
}

// nonNegative reads the valid value at b[i] as an integer >= 0.
func nonNegative(b []byte, i int) (int64, error) {
	end := numberEnd(b, i)
	if end == i {
		return 0, errorString("got " + kindAt(b, i))
	}
	num := b[i:end]
	if !isJSONNumber(num) {
		return 0, errorString("got " + clip(num, 40) + ", not a valid JSON number")
	}
	n, err := parseSigned(num, 0, math.MaxInt64)
	if err != nil {
		return 0, errorString("got " + clip(num, 40))
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
	return "input " + quoteName(l.name)
}

// span is where a member's value lies in the body; start is -1 when the
// member is absent.
type span struct{ start, end int }

func parseInput(t *Tensor, b []byte, at, i int, binaryOK bool, rest []byte, off *int) (int, error) {
	if b[at] != '{' {
		return 0, badRequest("inputs[%d] must be an object with name, datatype, shape and data, got %s", i, kindAt(b, at))
	}
	// The members, in whatever order they come (the first of each name);
	// they are then read in a fixed order, so that which error a broken
	// input gets does not depend on it.
	name, dtype, shape, params, data := span{-1, 0}, span{-1, 0}, span{-1, 0}, span{-1, 0}, span{-1, 0}
	it := newObjectIter(b, at)
	for {
		k, s, e, ok := it.next()
		if !ok {
			break
		}
		var m *span
		var kb [24]byte
		switch string(unescapeKey(kb[:0], k)) {
		case "name":
			m = &name
		case "datatype":
			m = &dtype
		case "shape":
			m = &shape
		case "parameters":
			m = &params
		case "data":
			m = &data
		default:
			continue
		}
		if m.start < 0 {
			*m = span{s, e}
		}
	}
	end := it.end()

	if name.start < 0 {
		return 0, badRequest(`inputs[%d] has no "name"`, i)
	}
	if b[name.start] != '"' || name.end-name.start == 2 {
		return 0, badRequest(`inputs[%d] "name" must be a non-empty string`, i)
	}
	if nb := unescaped(rawString(b, name.start, name.end)); t.Name != string(nb) { // reuse the string of the last parse when equal
		t.Name = string(nb)
	}
	label := inputLabel{t.Name, i}

	if dtype.start < 0 {
		return 0, badRequest(`%s has no "datatype": expected one of %s`, label, supportedList)
	}
	if b[dtype.start] != '"' {
		return 0, badRequest(`%s "datatype" must be a string, got %s`, label, kindAt(b, dtype.start))
	}
	var db [16]byte
	dtb := unescapeKey(db[:0], rawString(b, dtype.start, dtype.end))
	t.Datatype = canonicalDatatype(dtb)
	if t.Datatype == "" {
		if string(dtb) == BYTES {
			return 0, badRequest("%s: %w %s: string tensors are not supported, expected one of %s", label, ErrUnsupportedDatatype, quoteName(dtb), supportedList)
		}
		dt := quoteName(rawString(b, dtype.start, dtype.end))
		if dtb != nil {
			dt = quoteName(dtb)
		}
		return 0, badRequest("%s: %w %s: expected one of %s", label, ErrUnsupportedDatatype, dt, supportedList)
	}
	size, _ := DatatypeSize(t.Datatype)

	if shape.start < 0 {
		return 0, badRequest(`%s has no "shape": expected an array of dimensions such as [1,3,224,224]`, label)
	}
	if b[shape.start] != '[' {
		return 0, badRequest(`%s "shape" must be an array of dimensions, got %s`, label, kindAt(b, shape.start))
	}
	if err := parseShape(t, b, shape.start); err != nil {
		return 0, badRequest("%s: %s", label, err)
	}
	elems, err := shapeElements(t.Shape)
	if err == nil && elems > math.MaxInt64/int64(size) {
		err = errorString("shape " + formatShape(t.Shape) + " of " + t.Datatype + " needs more bytes than fit in int64")
	}
	if err != nil {
		return 0, badRequest("%s: %s", label, err)
	}
	nbytes := elems * int64(size)

	binSize := int64(-1)
	if params.start >= 0 {
		if b[params.start] != '{' {
			return 0, badRequest(`%s "parameters" must be an object, got %s`, label, kindAt(b, params.start))
		}
		bds, shm := -1, false
		it := newObjectIter(b, params.start)
		for {
			k, s, _, ok := it.next()
			if !ok {
				break
			}
			switch {
			case keyIs(k, "binary_data_size"):
				bds = first(bds, s)
			case keyIs(k, "shared_memory_region"):
				shm = true
			}
		}
		if bds >= 0 {
			if binSize, err = nonNegative(b, bds); err != nil {
				return 0, badRequest("%s: parameters.binary_data_size %s: expected a byte count >= 0", label, err)
			}
		}
		if shm {
			return 0, badRequest("%s: shared memory inputs (parameters.shared_memory_region) are not supported: send data or binary data", label)
		}
	}

	switch {
	case binSize >= 0 && data.start >= 0:
		return 0, badRequest(`%s has both "data" and parameters.binary_data_size: send one or the other`, label)
	case binSize >= 0:
		if !binaryOK {
			return 0, badRequest("%s has parameters.binary_data_size but the request has no Inference-Header-Content-Length header: set it to the JSON header's length", label)
		}
		if binSize != nbytes {
			return 0, badRequest("%s: binary_data_size is %d bytes, shape %s of %s needs %d", label, binSize, formatShape(t.Shape), t.Datatype, nbytes)
		}
		if int64(len(rest)-*off) < binSize {
			return 0, badRequest("%s: binary data of %d bytes at offset %d runs past the end of the body (%d bytes follow the JSON header)", label, binSize, *off, len(rest))
		}
		// In place: the caller keeps the body while it uses the request.
		stop := *off + int(binSize)
		t.Data = rest[*off:stop:stop]
		*off += int(binSize)
		return end, nil
	case data.start >= 0:
		return end, parseData(t, b, data.start, data.end, label, elems)
	default:
		return 0, badRequest(`%s has neither "data" nor parameters.binary_data_size`, label)
	}
}

// parseShape reads the valid array at b[at] into t.Shape, grown once to
// its final rank.
func parseShape(t *Tensor, b []byte, at int) error {
	rank := 0
	if s := skipWS(b, at+1); b[s] != ']' {
		rank = countRest(b, s)
	}
	if rank > maxRank {
		return errorString("shape has " + strconv.Itoa(rank) + " dimensions, at most " + strconv.Itoa(maxRank) + " are supported")
	}
	t.Shape = slices.Grow(t.Shape[:0], rank)
	it := newArrayIter(b, at)
	for j := 0; ; j++ {
		s, _, ok := it.next()
		if !ok {
			return nil
		}
		n, err := nonNegative(b, s)
		if err != nil {
			return errorString("shape[" + strconv.Itoa(j) + "] " + err.Error() + ": expected a whole number >= 0")
		}
		t.Shape = append(t.Shape, n)
	}
}

func parseOutput(dst *InferRequest, b []byte, at, i int) (int, error) {
	if b[at] != '{' {
		return 0, badRequest(`outputs[%d] must be an object with a "name", got %s`, i, kindAt(b, at))
	}
	name, params := span{-1, 0}, span{-1, 0}
	it := newObjectIter(b, at)
	for {
		k, s, e, ok := it.next()
		if !ok {
			break
		}
		switch {
		case keyIs(k, "name"):
			if name.start < 0 {
				name = span{s, e}
			}
		case keyIs(k, "parameters"):
			if params.start < 0 {
				params = span{s, e}
			}
		}
	}
	end := it.end()
	if name.start < 0 {
		return 0, badRequest(`outputs[%d] has no "name"`, i)
	}
	if b[name.start] != '"' || name.end-name.start == 2 {
		return 0, badRequest(`outputs[%d] "name" must be a non-empty string`, i)
	}
	nb := unescaped(rawString(b, name.start, name.end))
	if i < smallDup {
		for j := range dst.Outputs {
			if dst.Outputs[j].Name == string(nb) {
				return 0, badRequest("output %s is requested twice (outputs[%d] and outputs[%d])", quoteName(dst.Outputs[j].Name), j, i)
			}
		}
	}
	n := len(dst.Outputs)
	if n < cap(dst.Outputs) {
		dst.Outputs = dst.Outputs[:n+1]
	} else {
		dst.Outputs = append(dst.Outputs, RequestedOutput{})
	}
	out := &dst.Outputs[n]
	if out.Name != string(nb) {
		out.Name = string(nb)
	}
	out.Binary, out.ClassCount = dst.BinaryOutput, 0
	if params.start < 0 {
		return end, nil
	}
	if b[params.start] != '{' {
		return 0, badRequest(`output %s "parameters" must be an object, got %s`, quoteName(out.Name), kindAt(b, params.start))
	}
	bd, cls := -1, -1
	pit := newObjectIter(b, params.start)
	for {
		k, s, _, ok := pit.next()
		if !ok {
			break
		}
		switch {
		case keyIs(k, "binary_data"):
			bd = first(bd, s)
		case keyIs(k, "classification"):
			cls = first(cls, s)
		}
	}
	if bd >= 0 {
		v, ok := boolAt(b, bd)
		if !ok {
			return 0, badRequest("output %s: parameters.binary_data must be true or false, got %s", quoteName(out.Name), kindAt(b, bd))
		}
		out.Binary = v
	}
	if cls >= 0 {
		c, err := nonNegative(b, cls)
		if err != nil || c > math.MaxInt32 {
			return 0, badRequest("output %s: parameters.classification: %s: expected a class count >= 0", quoteName(out.Name), describe(err, b, cls))
		}
		out.ClassCount = int(c)
	}
	return end, nil
}
