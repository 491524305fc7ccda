package respcache

import (
	"encoding/binary"
	"math"
	"sync"

	"github.com/zeebo/blake3"
)

// Key identifies an entry: a keyed BLAKE3 hash of everything that decides
// the outputs.
type Key [32]byte

// Hasher builds a Key. Each field is written with its length (or its fixed
// width) first, so two different sequences of fields never hash the same
// bytes: ("ab","c") and ("a","bc") differ.
type Hasher struct {
	h    *blake3.Hasher
	pool *sync.Pool
	buf  [8]byte
}

// NewKey starts the key of an entry of domain: a tag that keeps keys of
// different kinds of request apart ("infer", "image"). Sum ends it.
func (c *Cache) NewKey(domain string) *Hasher {
	h, _ := c.hashers.Get().(*Hasher)
	if h == nil {
		bh, err := blake3.NewKeyed(c.key[:])
		if err != nil {
			panic(err) // the key is 32 bytes: NewKeyed cannot fail
		}
		h = &Hasher{h: bh, pool: &c.hashers}
	}
	h.String(domain)
	return h
}

// Int writes v.
func (h *Hasher) Int(v int64) *Hasher {
	binary.LittleEndian.PutUint64(h.buf[:], uint64(v))
	h.h.Write(h.buf[:])
	return h
}

// Float32 writes v's bits.
func (h *Hasher) Float32(v float32) *Hasher { return h.Int(int64(math.Float32bits(v))) }

// Bool writes v.
func (h *Hasher) Bool(v bool) *Hasher {
	if v {
		return h.Int(1)
	}
	return h.Int(0)
}

// String writes s, length first.
func (h *Hasher) String(s string) *Hasher {
	h.Int(int64(len(s)))
	h.h.WriteString(s)
	return h
}

// Bytes writes b, length first.
func (h *Hasher) Bytes(b []byte) *Hasher {
	h.Int(int64(len(b)))
	h.h.Write(b)
	return h
}

// Shape writes a shape, its rank first.
func (h *Hasher) Shape(s []int64) *Hasher {
	h.Int(int64(len(s)))
	for _, d := range s {
		h.Int(d)
	}
	return h
}

// Sum returns the key and gives the hasher back: it must not be used
// after.
func (h *Hasher) Sum() Key {
	var k Key
	h.h.Sum(k[:0])
	h.h.Reset()
	h.pool.Put(h)
	return k
}
