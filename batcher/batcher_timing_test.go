package batcher

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/inferd/inferd/internal/cputime"
)

// BenchmarkOverhead measures the batcher's own cost per request with a no-op
// Runner: ns/op is per request, req/s the throughput, at 1, 16 and 256
// submitting goroutines, MaxBatchSize 64. cpu-ns/op is the CPU time (all
// threads, user + system) per request: on a shared machine it is much less
// disturbed by other processes than the wall-clock figures.
//
//	go test -run '^$' -bench Overhead -count 5 ./batcher/
func BenchmarkOverhead(b *testing.B) {
	for _, g := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("goroutines=%d", g), func(b *testing.B) {
			var batches atomic.Int64
			bt, err := New("bench", Config{MaxBatchSize: 64}, RunnerFunc(func(*Batch) error {
				batches.Add(1)
				return nil
			}), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer bt.Close(context.Background())
			var left atomic.Int64
			left.Store(int64(b.N))
			var wg sync.WaitGroup
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cputime.Process()
			for range g {
				wg.Go(func() {
					r := &Request{Rows: 1} // reused, as a pooling caller would
					for left.Add(-1) >= 0 {
						if err := bt.Submit(r); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(cputime.Process()-cpu0)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
			b.ReportMetric(float64(b.N)/float64(batches.Load()), "rows/batch")
		})
	}
}

// BenchmarkIntake is the experiment behind the intake design: 256 goroutines
// hand items to one consumer, each then waiting on its own channel as Submit
// does, through
//   - channel: a buffered channel, one channel operation per item;
//   - mutex-slice: append to a mutex-protected slice that the consumer swaps
//     out whole, waking it only on the empty -> non-empty transition (what
//     the batcher uses);
//   - atomic-stack: a lock-free intrusive stack the consumer swaps out and
//     reverses.
//
// The mutex slice beat the channel by about 1.5x in wall-clock throughput.
// The atomic stack was within noise of the mutex slice (ahead in one session,
// behind in another) and no faster inside the full batcher (measured by
// swapping it in, see bench/results/batcher-overhead.md), so the simpler
// mutex slice stayed.
func BenchmarkIntake(b *testing.B) {
	type item struct {
		done chan struct{}
		next *item
	}
	run := func(b *testing.B, send func(*item), consume func(stop <-chan struct{})) {
		stop := make(chan struct{})
		var cw sync.WaitGroup
		cw.Go(func() { consume(stop) })
		var left atomic.Int64
		left.Store(int64(b.N))
		var wg sync.WaitGroup
		b.ReportAllocs()
		b.ResetTimer()
		cpu0 := cputime.Process()
		for range 256 {
			wg.Go(func() {
				it := &item{done: make(chan struct{}, 1)}
				for left.Add(-1) >= 0 {
					send(it)
					<-it.done
				}
			})
		}
		wg.Wait()
		b.StopTimer()
		b.ReportMetric(float64(cputime.Process()-cpu0)/float64(b.N), "cpu-ns/op")
		close(stop)
		cw.Wait()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	}
	b.Run("channel", func(b *testing.B) {
		ch := make(chan *item, 1024)
		run(b, func(it *item) { ch <- it }, func(stop <-chan struct{}) {
			for {
				select {
				case it := <-ch:
					it.done <- struct{}{}
				case <-stop:
					return
				}
			}
		})
	})
	b.Run("mutex-slice", func(b *testing.B) {
		var mu sync.Mutex
		in, spare := make([]*item, 0, 1024), make([]*item, 0, 1024)
		wake := make(chan struct{}, 1)
		run(b, func(it *item) {
			mu.Lock()
			signal := len(in) == 0
			in = append(in, it)
			mu.Unlock()
			if signal {
				select {
				case wake <- struct{}{}:
				default:
				}
			}
		}, func(stop <-chan struct{}) {
			for {
				select {
				case <-wake:
				case <-stop:
					return
				}
				mu.Lock()
				got := in
				in = spare
				mu.Unlock()
				for i, it := range got {
					got[i] = nil
					it.done <- struct{}{}
				}
				spare = got[:0]
			}
		})
	})
	b.Run("atomic-stack", func(b *testing.B) {
		var head atomic.Pointer[item]
		wake := make(chan struct{}, 1)
		run(b, func(it *item) {
			for {
				old := head.Load()
				it.next = old
				if head.CompareAndSwap(old, it) {
					if old == nil {
						select {
						case wake <- struct{}{}:
						default:
						}
					}
					return
				}
			}
		}, func(stop <-chan struct{}) {
			for {
				select {
				case <-wake:
				case <-stop:
					return
				}
				var fifo *item
				for it := head.Swap(nil); it != nil; {
					next := it.next
					it.next, fifo = fifo, it
					it = next
				}
				for it := fifo; it != nil; {
					next := it.next
					it.next = nil
					it.done <- struct{}{}
					it = next
				}
			}
		})
	})
}

// The simulation: Poisson arrivals of one-image requests against a runner
// that takes a + b·bucket (a = 1.5ms, b = 0.12ms per image), MaxBatchSize
// 64, one runner: capacity 64/(1.5 + 0.12·64 ms) ≈ 6972 images/s. It runs
// the real batcher on synctest's fake clock, so it is fast and repeatable.
//
//	go test -run TestSimulation -v ./batcher/
const (
	simFixed   = 1500 * time.Microsecond
	simPerRow  = 120 * time.Microsecond
	simTarget  = 15 * time.Millisecond
	simWarmPct = 5 // the first 5% of requests are warm-up, not measured
)

func simCapacity() float64 { return 64 / (simFixed + 64*simPerRow).Seconds() }

type simResult struct {
	thr       float64       // successful requests per second
	good      float64       // successful within simTarget, per second
	meanBatch float64       // rows per batch
	busy      float64       // fraction of the time the runner ran
	p50, p99  time.Duration // latency of successful requests
	failed    float64       // fraction rejected, shed or expired
}

// simulate runs n requests at load × capacity through a batcher with cfg,
// each request with the given timeout (0: the default, 30s).
func simulate(t *testing.T, load float64, cfg Config, timeout time.Duration, n int, seed uint64) simResult {
	var res simResult
	synctest.Test(t, func(t *testing.T) {
		var batches, rows, busy atomic.Int64
		cfg.MaxBatchSize, cfg.InFlight = 64, 1
		b := mustNew(t, cfg, RunnerFunc(func(bt *Batch) error {
			batches.Add(1)
			rows.Add(int64(bt.Rows))
			d := simFixed + time.Duration(bt.Bucket)*simPerRow
			busy.Add(int64(d))
			time.Sleep(d)
			return nil
		}), nil)
		rng := rand.New(rand.NewPCG(seed, 1))
		mean := float64(time.Second) / (load * simCapacity())
		lat := make([]time.Duration, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		skip := n * simWarmPct / 100
		var start time.Time
		t0 := time.Now()
		for i := range n {
			time.Sleep(time.Duration(rng.ExpFloat64() * mean))
			if i == skip {
				start = time.Now()
			}
			wg.Go(func() {
				t0 := time.Now()
				errs[i] = b.Submit(&Request{Rows: 1, Timeout: timeout})
				lat[i] = time.Since(t0)
			})
		}
		wg.Wait()
		span := time.Since(start).Seconds()
		total := time.Since(t0).Seconds()
		if err := b.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		var ok []time.Duration
		good, failed := 0, 0
		for i := skip; i < n; i++ {
			if errs[i] != nil {
				failed++
				continue
			}
			ok = append(ok, lat[i])
			if lat[i] <= simTarget {
				good++
			}
		}
		slices.Sort(ok)
		res = simResult{
			thr:       float64(len(ok)) / span,
			good:      float64(good) / span,
			meanBatch: float64(rows.Load()) / float64(batches.Load()),
			busy:      time.Duration(busy.Load()).Seconds() / total,
			failed:    float64(failed) / float64(n-skip),
		}
		if len(ok) > 0 {
			res.p50, res.p99 = ok[len(ok)/2], ok[len(ok)*99/100]
		}
	})
	return res
}

// TestSimulation prints the table in bench/results/batcher-sim.md and checks
// the claims made there: the adaptive window keeps p99 under the 15ms
// target wherever that is physically possible while matching the best fixed
// window's throughput (or, with 15ms client deadlines, goodput).
func TestSimulation(t *testing.T) {
	n := 50000
	if testing.Short() || raceEnabled {
		n = 3000
	}
	policies := []struct {
		name string
		cfg  Config
	}{
		{"fixed 0ms", Config{}},
		{"fixed 1ms", Config{MaxDelay: time.Millisecond}},
		{"fixed 5ms", Config{MaxDelay: 5 * time.Millisecond}},
		{"adaptive 15ms", Config{LatencyTarget: simTarget}},
		// For comparison, not checked: MaxDelay caps the adaptive window's
		// waiting, so 1ns turns its rule 2 off (greedy + trim + shed).
		{"adaptive, no wait", Config{LatencyTarget: simTarget, MaxDelay: time.Nanosecond}},
	}
	for _, tc := range []struct {
		title   string
		timeout time.Duration
		loads   []float64
	}{
		{"requests without a deadline (default 30s timeout)", 0, []float64{0.5, 0.8, 0.95}},
		{"requests with a 15ms timeout (client deadline = SLO)", simTarget, []float64{0.5, 0.8, 0.95, 1.1}},
	} {
		var out strings.Builder
		fmt.Fprintf(&out, "\n%s, %d requests per row:\n\n", tc.title, n)
		fmt.Fprintf(&out, "| load | window | throughput req/s | within 15ms req/s | mean batch | runner busy | p50 ms | p99 ms | failed |\n")
		fmt.Fprintf(&out, "|---|---|---|---|---|---|---|---|---|\n")
		for _, load := range tc.loads {
			results := map[string]simResult{}
			for _, p := range policies {
				r := simulate(t, load, p.cfg, tc.timeout, n, 1)
				results[p.name] = r
				fmt.Fprintf(&out, "| %.0f%% (%.0f/s) | %s | %.0f | %.0f | %.1f | %.0f%% | %.2f | %.2f | %.1f%% |\n",
					load*100, load*simCapacity(), p.name, r.thr, r.good, r.meanBatch, r.busy*100,
					float64(r.p50)/1e6, float64(r.p99)/1e6, r.failed*100)
			}
			ad := results["adaptive 15ms"]
			var bestThr, bestGood float64
			for name, r := range results {
				if strings.HasPrefix(name, "fixed") {
					bestThr, bestGood = max(bestThr, r.thr), max(bestGood, r.good)
				}
			}
			if n < 10000 {
				continue // too few requests for a stable p99
			}
			switch {
			case tc.timeout == 0 && load <= 0.8:
				// Without deadlines nothing is shed: every policy serves the
				// offered load, and the adaptive one's tail stays in target.
				// At 80% that holds for seed 1 (14.1ms) but not for every
				// seed (13.2 to 15.7ms over seeds 1-6; see the results).
				if ad.p99 >= simTarget || ad.thr < 0.99*bestThr {
					t.Errorf("load %.2f: adaptive p99 %v thr %.0f; best fixed thr %.0f", load, ad.p99, ad.thr, bestThr)
				}
			case tc.timeout == 0:
				// At 95% no policy can keep p99 under 15ms without shedding
				// (see the results file); only throughput is checked.
				if ad.thr < 0.99*bestThr {
					t.Errorf("load %.2f: adaptive thr %.0f < best fixed %.0f", load, ad.thr, bestThr)
				}
			default:
				if ad.p99 >= simTarget || ad.good < 0.99*bestGood {
					t.Errorf("load %.2f: adaptive p99 %v goodput %.0f; best fixed goodput %.0f", load, ad.p99, ad.good, bestGood)
				}
			}
		}
		t.Log(out.String())
	}
}
