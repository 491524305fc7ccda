package respcache

import "math"

// Output is one output tensor of a model: its shape and its bytes.
type Output struct {
	Shape []int64
	Data  []byte
}

// Entry is every output a model computed for one input. It is immutable
// once made: hits share it, so nobody may modify what Output returns.
type Entry struct {
	outs []Output
	size int // bytes of data and shapes
}

// NewEntry copies outs, shapes and data, into one entry, so the entry
// never shares a buffer that a pooled job reuses.
func NewEntry(outs []Output) *Entry {
	n := 0
	dims := 0
	for _, o := range outs {
		n += len(o.Data)
		dims += len(o.Shape)
	}
	data := make([]byte, 0, n)
	shapes := make([]int64, 0, dims)
	e := &Entry{outs: make([]Output, len(outs)), size: n + 8*dims}
	for i, o := range outs {
		at, sat := len(data), len(shapes)
		data = append(data, o.Data...)
		shapes = append(shapes, o.Shape...)
		e.outs[i] = Output{Shape: shapes[sat:len(shapes):len(shapes)], Data: data[at:len(data):len(data)]}
	}
	return e
}

// Len is the number of outputs.
func (e *Entry) Len() int { return len(e.outs) }

// Output returns output i; its shape and bytes are shared and must not be
// modified.
func (e *Entry) Output(i int) Output { return e.outs[i] }

// Bytes is the entry's data and shapes in bytes, without the overhead.
func (e *Entry) Bytes() int { return e.size }

// weight is what the entry counts against MaxBytes.
func (e *Entry) weight() uint32 {
	return uint32(min(int64(e.size)+EntryOverhead, math.MaxUint32))
}
