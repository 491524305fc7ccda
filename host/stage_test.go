package host

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// stage copies pieces of any sizes, below and above the parallel
// threshold, exactly as one serial copy would, and leaves dst's tail alone.
func TestStage(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, sizes := range [][]int{
		{}, {1}, {3, 0, 5}, {602112}, // under the threshold
		{4 << 20}, // one big piece, split within it
		{602112, 602112, 602112, 602112, 1, 63, 65}, // pieces straddling ranges
		{1 << 20, 7, 1 << 19, 13, 1 << 18},
	} {
		t.Run(fmt.Sprint(sizes), func(t *testing.T) {
			var srcs [][]byte
			var want []byte
			for _, n := range sizes {
				b := make([]byte, n)
				for i := range b {
					b[i] = byte(r.Uint32())
				}
				srcs = append(srcs, b)
				want = append(want, b...)
			}
			dst := bytes.Repeat([]byte{0xAA}, len(want)+100)
			stage(dst, srcs)
			if !bytes.Equal(dst[:len(want)], want) {
				t.Fatal("staged bytes differ from the pieces")
			}
			if bytes.Count(dst[len(want):], []byte{0xAA}) != 100 {
				t.Fatal("stage wrote past the pieces")
			}
		})
	}
}

// BenchmarkStage is the runner's copy of a batch of 64 224x224 float32
// rows (38.5 MB), one request per row, into the lease: serial (one
// goroutine, as before) against stage.
func BenchmarkStage(b *testing.B) {
	const rows, rowBytes = 64, 3 * 224 * 224 * 4
	srcs := make([][]byte, rows)
	for i := range srcs {
		srcs[i] = bytes.Repeat([]byte{byte(i)}, rowBytes)
	}
	dst := make([]byte, rows*rowBytes)
	b.Run("serial", func(b *testing.B) {
		b.SetBytes(rows * rowBytes)
		for b.Loop() {
			off := 0
			for _, s := range srcs {
				off += copy(dst[off:], s)
			}
		}
	})
	b.Run("stage", func(b *testing.B) {
		b.SetBytes(rows * rowBytes)
		for b.Loop() {
			stage(dst, srcs)
		}
	})
}
