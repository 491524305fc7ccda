package server

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/inferd/inferd/config"
)

// The response cache's figures (bench/results/cache-2026-11-30.md): what a
// miss costs with the cache on against off, on the tiny model in process,
// for a binary infer of a 602,112-byte tensor and a classify of a 100 KB
// JPEG; and a repeat-heavy classify workload through the HTTP server.

// BenchmarkCacheMissCost times, alternately in one loop so that load
// from other processes falls on both alike, a request to a server without
// a cache (off-ns/op), a request that misses the cache of a second server
// (miss-ns/op: hash, lookup, compute, copy, store, evictions beyond 1 MiB)
// and one that hits it (hit-ns/op); each off and miss request carries a new
// input. infer: a binary infer of a 602,112-byte tensor (the first element
// changes); classify: a ~100 KB JPEG (a comment segment changes, the
// pixels do not).
func BenchmarkCacheMissCost(b *testing.B) {
	tensor, hlen := binaryInfer(1, floats(3*224*224, 0), true)
	img, at := noisyJPEG(b, 480, 360, 1)
	for _, tc := range []struct {
		name, path, ct string
		body           []byte
		vary           func(n uint64)
	}{
		{"infer", "/v2/models/tiny/infer", "", tensor, func(n uint64) { binary.LittleEndian.PutUint32(tensor[hlen:], uint32(n)) }},
		{"classify", "/v2/models/tiny/classify", "image/jpeg", img, func(n uint64) { binary.LittleEndian.PutUint64(img[at:], n) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			off, on := start(b, cacheConfig(0, 0)).Handler(), start(b, cacheConfig(1<<20, 0)).Handler()
			ctx := new(fasthttp.RequestCtx)
			ctx.Request.Header.SetMethod("POST")
			ctx.Request.SetRequestURI(tc.path)
			if tc.ct != "" {
				ctx.Request.Header.SetContentType(tc.ct)
			} else {
				ctx.Request.Header.Set(headerInferenceLength, strconv.Itoa(hlen))
			}
			serve := func(h fasthttp.RequestHandler) time.Duration {
				ctx.Request.SetBody(tc.body)
				ctx.Response.Reset()
				t0 := time.Now()
				h(ctx)
				d := time.Since(t0)
				if ctx.Response.StatusCode() != 200 {
					b.Fatalf("%d %s", ctx.Response.StatusCode(), ctx.Response.Body())
				}
				return d
			}
			var tOff, tMiss, tHit time.Duration
			n := uint64(0)
			for b.Loop() {
				n++
				tc.vary(n)
				tOff += serve(off)
				n++
				tc.vary(n)
				tMiss += serve(on)
				tHit += serve(on)
			}
			per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) }
			b.ReportMetric(per(tOff), "off-ns/op")
			b.ReportMetric(per(tMiss), "miss-ns/op")
			b.ReportMetric(per(tHit), "hit-ns/op")
			b.ReportMetric(100*(per(tMiss)-per(tOff))/per(tOff), "miss-overhead-%")
		})
	}
}

// BenchmarkCacheKey is the key of the two inputs alone: blake3 keyed, the
// server's key functions.
func BenchmarkCacheKey(b *testing.B) {
	ts := start(b, cacheConfig(1<<20, 0))
	m := ts.model("tiny")
	img, _ := noisyJPEG(b, 480, 360, 1)
	b.Run("image", func(b *testing.B) {
		b.SetBytes(int64(len(img)))
		b.ReportAllocs()
		for b.Loop() {
			imageKey(m, img)
		}
	})
}

// TestCacheWorkload (INFERD_CACHE_WORKLOAD=1) drives classify through the
// HTTP server (in-memory listener, 8 clients) with 90% of requests one of
// 100 distinct JPEGs and 10% unique ones, the cache on and off in the
// same run, and prints throughput and p99 of each and their ratios.
func TestCacheWorkload(t *testing.T) {
	if os.Getenv("INFERD_CACHE_WORKLOAD") == "" {
		t.Skip("a measurement, not a test: set INFERD_CACHE_WORKLOAD=1")
	}
	const (
		distinct = 100
		requests = 2000
		clients  = 8
		rounds   = 3
	)
	base, at := noisyJPEG(t, 480, 360, 2)
	variant := func(n uint64) []byte {
		b := bytes.Clone(base)
		binary.LittleEndian.PutUint64(b[at:], n)
		return b
	}
	// The same sequence for both: request i is popular image k or unique.
	r := rand.New(rand.NewPCG(7, 7))
	seq := make([][]byte, requests)
	popular := make([][]byte, distinct)
	for i := range popular {
		popular[i] = variant(uint64(i))
	}
	for i := range seq {
		if r.IntN(10) == 0 {
			seq[i] = variant(uint64(1_000_000 + i))
		} else {
			seq[i] = popular[r.IntN(distinct)]
		}
	}
	run := func(maxBytes config.ByteSize) (rps float64, p99 time.Duration, hits int64) {
		ts := start(t, cacheConfig(maxBytes, 0))
		var next atomic.Int64
		lat := make([]time.Duration, requests)
		var wg sync.WaitGroup
		begin := time.Now()
		for range clients {
			wg.Go(func() {
				for {
					i := int(next.Add(1) - 1)
					if i >= requests {
						return
					}
					t0 := time.Now()
					resp := ts.do(t, "POST", "/v2/models/tiny/classify", "image/jpeg", seq[i])
					lat[i] = time.Since(t0)
					if resp.code != 200 {
						t.Errorf("%d %s", resp.code, resp.body)
						return
					}
				}
			})
		}
		wg.Wait()
		took := time.Since(begin)
		slices.Sort(lat)
		if c := ts.model("tiny").Cache(); c != nil {
			hits = int64(c.Stats().Hits)
		}
		return requests / took.Seconds(), lat[requests*99/100], hits
	}
	// Off and on alternate, so that load from other processes falls on
	// both alike; the medians of the rounds are compared.
	fmt.Printf("workload: %d requests per round, %d clients, JPEG %d bytes, 90%% of %d images\n", requests, clients, len(base), distinct)
	var rpsRatio, p99Ratio []float64
	for round := range rounds {
		offRPS, offP99, _ := run(0)
		onRPS, onP99, hits := run(64 << 20)
		rpsRatio, p99Ratio = append(rpsRatio, onRPS/offRPS), append(p99Ratio, float64(onP99)/float64(offP99))
		fmt.Printf("round %d: off %.0f req/s p99 %v; on %.0f req/s p99 %v (%d hits); throughput %.2fx, p99 %.3f\n", round,
			offRPS, offP99.Round(time.Microsecond), onRPS, onP99.Round(time.Microsecond), hits, rpsRatio[round], p99Ratio[round])
	}
	slices.Sort(rpsRatio)
	slices.Sort(p99Ratio)
	fmt.Printf("median of %d rounds: throughput %.2fx, p99 %.3f\n", rounds, rpsRatio[rounds/2], p99Ratio[rounds/2])
}

// noisyJPEG encodes a w x h photo-like image (gradients and noise) at
// quality 90, then adds a comment segment whose 8 bytes at the returned
// offset make a variant that decodes to the same pixels but hashes
// differently.
func noisyJPEG(t testing.TB, w, h int, seed uint64) ([]byte, int) {
	r := rand.New(rand.NewPCG(seed, 1))
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			n := byte(r.IntN(48))
			img.Set(x, y, color.RGBA{byte(x*255/w) + n, byte(y*255/h) + n, byte(seed*40) + n, 255})
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	// SOI, then COM (FF FE, length 10 with itself: 8 bytes), then the rest.
	out := append([]byte{0xFF, 0xD8, 0xFF, 0xFE, 0, 10}, make([]byte, 8)...)
	return append(out, buf.Bytes()[2:]...), 6
}
