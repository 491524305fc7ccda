package batcher

// The scheduler goroutine owns every structure in this file; none is locked.

// ring is the FIFO of one priority level: a power-of-two ring buffer indexed
// by ever-increasing sequence numbers. Removing a request from the middle
// (deadline expiry, shedding) leaves a nil hole that the head skips, so no
// request is ever moved except when the ring is full, at which point holes
// are squeezed out in place or the buffer doubles. Steady state allocates
// nothing.
type ring struct {
	buf  []*Request
	head uint64 // sequence of the oldest live request (or == tail)
	tail uint64 // sequence the next push gets
	n    int    // live requests
	rows int    // rows of the live requests
}

func newRing(size int) ring {
	return ring{buf: make([]*Request, size)}
}

func (q *ring) mask() uint64 { return uint64(len(q.buf) - 1) }

// push appends r.
func (q *ring) push(r *Request) {
	if q.tail-q.head == uint64(len(q.buf)) {
		q.grow()
	}
	r.seq = q.tail
	q.buf[q.tail&q.mask()] = r
	q.tail++
	q.n++
	q.rows += r.Rows
}

// front returns the oldest live request, or nil.
func (q *ring) front() *Request {
	if q.n == 0 {
		return nil
	}
	return q.buf[q.head&q.mask()]
}

// remove takes r (which must be in q) out of the ring.
func (q *ring) remove(r *Request) {
	m := q.mask()
	q.buf[r.seq&m] = nil
	q.n--
	q.rows -= r.Rows
	for q.head < q.tail && q.buf[q.head&m] == nil {
		q.head++
	}
}

// grow makes room in a full ring: it squeezes out holes in place when at
// least half the slots are holes, otherwise it doubles the buffer. Live
// requests keep their order and get new sequence numbers.
func (q *ring) grow() {
	src, m := q.buf, q.mask()
	dst, dm := src, m
	if q.n*2 > len(src) {
		dst = make([]*Request, 2*len(src))
		dm = uint64(len(dst) - 1)
	}
	w := q.head
	// In place, w <= s, so a write only lands on a slot already read.
	for s := q.head; s < q.tail; s++ {
		r := src[s&m]
		if r == nil {
			continue
		}
		dst[w&dm] = r
		r.seq = w
		w++
	}
	if &dst[0] == &src[0] {
		for s := w; s < q.tail; s++ {
			dst[s&dm] = nil
		}
	}
	q.buf, q.tail = dst, w
}

// deadlineHeap is a binary min-heap of the queued requests by deadline, so
// the scheduler can arm one timer on the earliest deadline and expire
// requests without scanning the queues. Each request records its index.
type deadlineHeap []*Request

func (h deadlineHeap) less(i, j int) bool { return h[i].dlNs < h[j].dlNs }

func (h deadlineHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hidx = int32(i)
	h[j].hidx = int32(j)
}

// min returns the request with the earliest deadline; h must not be empty.
func (h deadlineHeap) min() *Request { return h[0] }

func (h *deadlineHeap) push(r *Request) {
	r.hidx = int32(len(*h))
	*h = append(*h, r)
	h.up(len(*h) - 1)
}

// remove takes the request at index i out of the heap.
func (h *deadlineHeap) remove(i int) {
	old := *h
	last := len(old) - 1
	if i != last {
		old.swap(i, last)
	}
	old[last].hidx = -1
	old[last] = nil
	*h = old[:last]
	if i != last {
		if !h.down(i) {
			h.up(i)
		}
	}
}

func (h deadlineHeap) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !h.less(j, i) {
			break
		}
		h.swap(i, j)
		j = i
	}
}

// down sifts index i0 down and reports whether it moved.
func (h deadlineHeap) down(i0 int) bool {
	i, n := i0, len(h)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		j := l
		if r := l + 1; r < n && h.less(r, l) {
			j = r
		}
		if !h.less(j, i) {
			break
		}
		h.swap(i, j)
		i = j
	}
	return i > i0
}
