package batcher

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestRingAgainstSlice drives a ring and a plain slice with the same random
// pushes, head pops and middle removals, through growth and compaction.
func TestRingAgainstSlice(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	q := newRing(4)
	var ref []*Request
	for step := range 20000 {
		switch op := rng.IntN(10); {
		case op < 5 || len(ref) == 0:
			r := &Request{Rows: 1 + rng.IntN(3)}
			q.push(r)
			ref = append(ref, r)
		case op < 8:
			q.remove(ref[0])
			ref = ref[1:]
		default:
			i := rng.IntN(len(ref))
			q.remove(ref[i])
			ref = slices.Delete(ref, i, i+1)
		}
		// Occasionally bursts make the ring grow a lot.
		if step%5000 == 0 {
			for range 300 {
				r := &Request{Rows: 1}
				q.push(r)
				ref = append(ref, r)
			}
		}
		var got []*Request
		rows := 0
		for s := q.head; s < q.tail; s++ {
			if r := q.buf[s&q.mask()]; r != nil {
				got = append(got, r)
				rows += r.Rows
				if r.seq != s {
					t.Fatalf("step %d: seq %d at slot %d", step, r.seq, s)
				}
			}
		}
		want := 0
		for _, r := range ref {
			want += r.Rows
		}
		if !slices.Equal(got, ref) || q.n != len(ref) || q.rows != want || rows != want {
			t.Fatalf("step %d: ring holds %d (n=%d rows=%d), want %d (rows=%d)", step, len(got), q.n, q.rows, len(ref), want)
		}
		if len(ref) > 0 && q.front() != ref[0] {
			t.Fatalf("step %d: front is not the oldest", step)
		}
	}
}

// TestRingCompactsInPlace checks that a full ring made mostly of holes is
// squeezed rather than grown.
func TestRingCompactsInPlace(t *testing.T) {
	q := newRing(8)
	var rs []*Request
	for range 8 {
		r := &Request{Rows: 1}
		rs = append(rs, r)
		q.push(r)
	}
	// Remove all but the first (so the head cannot advance) and the last.
	for _, r := range rs[1:7] {
		q.remove(r)
	}
	q.push(&Request{Rows: 1})
	if len(q.buf) != 8 || q.n != 3 {
		t.Fatalf("len %d n %d: want the ring compacted in place", len(q.buf), q.n)
	}
}

func TestDeadlineHeap(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var h deadlineHeap
	live := map[*Request]bool{}
	for range 5000 {
		if rng.IntN(3) > 0 || len(h) == 0 {
			r := &Request{dlNs: rng.Int64N(1000)}
			h.push(r)
			live[r] = true
		} else {
			r := h[rng.IntN(len(h))]
			h.remove(int(r.hidx))
			delete(live, r)
			if r.hidx != -1 {
				t.Fatal("removed request keeps its index")
			}
		}
		for i, r := range h {
			if int(r.hidx) != i {
				t.Fatalf("hidx %d at %d", r.hidx, i)
			}
			if i > 0 && h.less(i, (i-1)/2) {
				t.Fatal("heap order broken")
			}
		}
		if len(h) != len(live) {
			t.Fatal("size mismatch")
		}
	}
}

func TestCostModel(t *testing.T) {
	buckets := []int{1, 2, 4, 8, 16, 32, 64}
	cases := []struct {
		name    string
		samples func(m *costModel)
		a, b    float64 // want, ns
	}{
		// Before data: the prior.
		{"prior", func(*costModel) {}, priorFixed, priorPerRow},
		// Exact line over several sizes: recovered exactly.
		{"line", func(m *costModel) {
			for i := range 100 {
				n := buckets[i%len(buckets)]
				m.observe(n, int64(1.5e6+0.12e6*float64(n)))
			}
		}, 1.5e6, 0.12e6},
		// One size only: the prior's shape through the observed point.
		{"one size", func(m *costModel) {
			for range 10 {
				m.observe(16, 5.2e6)
			}
		}, 5.2e6 / (priorFixed + 16*priorPerRow) * priorFixed, 5.2e6 / (priorFixed + 16*priorPerRow) * priorPerRow},
		// Cost falling with size is clamped: no negative slope.
		{"falling", func(m *costModel) {
			for i := range 50 {
				m.observe(buckets[i%2], int64(2e6-float64(i%2)*1e5))
			}
		}, 1.95e6, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := newCostModel(buckets)
			c.samples(&m)
			if math.Abs(m.a-c.a) > 1e3 || math.Abs(m.b-c.b) > 1e2 {
				t.Fatalf("a=%.0f b=%.0f, want a=%.0f b=%.0f", m.a, m.b, c.a, c.b)
			}
			for i, n := range buckets {
				if want := int64(m.a + m.b*float64(n)); m.est[i] != want {
					t.Fatalf("est[%d]=%d, want %d", i, m.est[i], want)
				}
			}
		})
	}
}

func TestRateEstimator(t *testing.T) {
	var e rateEstimator
	// 2 rows per ms for 500 ms.
	for now := int64(0); now < 500e6; now += 1e6 {
		e.rows += 2
		e.rate(now)
	}
	if got := e.rate(500e6) * 1e6; math.Abs(got-2) > 0.05 {
		t.Fatalf("rate %.3f rows/ms, want 2", got)
	}
	// Then silence: the estimate decays.
	if got := e.rate(700e6) * 1e6; got > 0.1 {
		t.Fatalf("rate %.3f rows/ms after 200ms of silence", got)
	}
}
