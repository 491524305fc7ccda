package respcache

import (
	"crypto/sha256"
	"fmt"
	"testing"

	"github.com/zeebo/blake3"
)

// The hashes a key could use, on the two inputs the issue names: a
// 602,112-byte tensor (float32 3x224x224) and a 100 KB JPEG. The key
// must be collision resistant (a client must not poison another's
// answers), so only cryptographic hashes are candidates.
func BenchmarkKeyHash(b *testing.B) {
	for _, n := range []int{602112, 100 << 10} {
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(i * 7)
		}
		b.Run(fmt.Sprintf("sha256/%d", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				h := sha256.New()
				h.Write(data)
				var sum [32]byte
				h.Sum(sum[:0])
			}
		})
		b.Run(fmt.Sprintf("blake3/%d", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				h := blake3.New()
				h.Write(data)
				var sum [32]byte
				h.Sum(sum[:0])
			}
		})
	}
}
