package server

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/inferd/inferd/batcher"
	"github.com/inferd/inferd/config"
	"github.com/inferd/inferd/gpu"
)

// BenchmarkHTTPCeiling compares inferd serving the tiny model with
// 224x224 binary inputs against a bare fasthttp handler that reads the same
// body and writes a response of the same size: the HTTP ceiling for this
// payload. Both run on in-memory listeners with the same client.
func BenchmarkHTTPCeiling(b *testing.B) {
	needLibrary(b)
	body, hlen := binaryInfer(1, floats(3*224*224, 0), true)
	ts := start(b, tinyConfig(func(c *config.Config) { c.Models[0].MaxBatch = 32; c.Models[0].IntraOpThreads = benchThreads() }))
	// The response inferd sends, to size the bare handler's.
	ref := ts.do(b, "POST", "/v2/models/tiny/infer", "", body, headerInferenceLength, strconv.Itoa(hlen))
	if ref.code != 200 {
		b.Fatalf("%d %s", ref.code, ref.body)
	}
	bareLn := fasthttputil.NewInmemoryListener()
	bare := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if len(ctx.PostBody()) != len(body) {
			ctx.Error("short body", 400)
			return
		}
		ctx.Response.Header.Set(headerInferenceLength, ref.header.Get(headerInferenceLength))
		ctx.SetBody(ref.body)
	}}
	go bare.Serve(bareLn)
	defer bare.Shutdown()
	bareClient := &fasthttp.Client{Dial: func(string) (net.Conn, error) { return bareLn.Dial() }, MaxConnsPerHost: 512}

	run := func(b *testing.B, client *fasthttp.Client) {
		b.SetParallelism(16) // 32 clients on 2 cores
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			req.Header.SetMethod("POST")
			req.SetRequestURI("http://inferd/v2/models/tiny/infer")
			req.Header.Set(headerInferenceLength, strconv.Itoa(hlen))
			req.SetBody(body)
			for pb.Next() {
				if err := client.Do(req, resp); err != nil || resp.StatusCode() != 200 {
					b.Errorf("%v %d", err, resp.StatusCode())
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	}
	b.Run("bare-fasthttp", func(b *testing.B) { run(b, bareClient) })
	b.Run("inferd-tiny", func(b *testing.B) { run(b, ts.client) })
}

// BenchmarkResNet50Server measures inferd against raw ONNX Runtime at the
// same batch size, in one run: 8 concurrent clients send binary tensors of
// one image each; the batcher forms batches of up to 8. Set
// INFERD_BENCH_RESNET=1 to run it (ResNet50 on this CPU takes a while).
func BenchmarkResNet50Server(b *testing.B) {
	if os.Getenv("INFERD_BENCH_RESNET") == "" {
		b.Skip("set INFERD_BENCH_RESNET=1 to run the ResNet50 server benchmark")
	}
	needLibrary(b)
	const clients = 8
	ts := start(b, tinyConfig(func(c *config.Config) {
		c.Models[0] = config.Model{Name: "resnet50", Options: gpu.Options{Device: "cpu", MaxBatch: 8, Buckets: []int{1, 2, 4, 8}}, Path: "builtin:resnet50", Softmax: "auto", Batcher: batcher.Config{MaxDelay: benchDelay()}}
	}))
	m := ts.model("resnet50")
	b.Run("raw-ort-batch8", func(b *testing.B) {
		l, err := m.Session().Acquire(8)
		if err != nil {
			b.Fatal(err)
		}
		defer l.Release()
		for b.Loop() {
			if err := l.Run(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(8*b.N)/b.Elapsed().Seconds(), "images/s")
	})
	b.Run(fmt.Sprintf("inferd-%d-clients", clients), func(b *testing.B) {
		body, hlen := binaryInfer(1, floats(3*224*224, 0), true)
		var mu sync.Mutex
		var lat []time.Duration
		var wg sync.WaitGroup
		per := (b.N + clients - 1) / clients
		b.ResetTimer()
		for range clients {
			wg.Go(func() {
				req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				req.Header.SetMethod("POST")
				req.SetRequestURI("http://inferd/v2/models/resnet50/infer")
				req.Header.Set(headerInferenceLength, strconv.Itoa(hlen))
				req.SetBody(body)
				mine := make([]time.Duration, 0, per)
				for range per {
					t0 := time.Now()
					if err := ts.client.Do(req, resp); err != nil || resp.StatusCode() != 200 {
						b.Errorf("%v %d %s", err, resp.StatusCode(), bytes.Clone(resp.Body()))
						return
					}
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
		}
		wg.Wait()
		slices.Sort(lat)
		b.ReportMetric(float64(len(lat))/b.Elapsed().Seconds(), "images/s")
		b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Milliseconds()), "p99-ms")
	})
}

func benchThreads() int {
	n, _ := strconv.Atoi(os.Getenv("INFERD_BENCH_THREADS"))
	return n
}

// benchDelay is the batcher's max_delay for BenchmarkResNet50Server, from
// INFERD_BENCH_DELAY (default 0).
func benchDelay() time.Duration {
	d, _ := time.ParseDuration(os.Getenv("INFERD_BENCH_DELAY"))
	return d
}
