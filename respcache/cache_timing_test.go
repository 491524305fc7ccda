package respcache

import "testing"

// BenchmarkDo is Do's own cost, without hashing or computing: a miss
// (store, and from the 250th entry on an eviction per store) and a hit,
// for 4 KB entries in a 1 MiB cache.
func BenchmarkDo(b *testing.B) {
	c, err := New("m", Config{MaxBytes: 1 << 20}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	out := []Output{{Shape: []int64{1, 1000}, Data: make([]byte, 4000)}}
	b.Run("miss", func(b *testing.B) {
		b.ReportAllocs()
		i := int64(0)
		for b.Loop() {
			i++
			c.Do(c.NewKey("b").Int(i).Sum(), func() (*Entry, error) { return NewEntry(out), nil })
		}
	})
	key := c.NewKey("b").Int(-1).Sum()
	c.Do(key, func() (*Entry, error) { return NewEntry(out), nil })
	b.Run("hit", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.Do(key, func() (*Entry, error) { return NewEntry(out), nil })
		}
	})
}
