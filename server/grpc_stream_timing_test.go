package server

import (
	"net"
	"sync"
	"testing"

	"github.com/inferd/inferd/config"
)

// BenchmarkGRPCStream serves the tiny model one 224x224 FP32 image per
// request over loopback TCP, 16 requests outstanding at a time from one
// client connection: on one ModelStreamInfer stream (a window of 16: the
// sender waits for a response before going past it) against 16
// concurrent unary ModelInfer calls.
func BenchmarkGRPCStream(b *testing.B) {
	needLibrary(b)
	const window = 16
	cfg := tinyConfig(func(c *config.Config) { c.Models[0].MaxBatch = 32; c.Models[0].IntraOpThreads = benchThreads() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := serveOn(b, cfg, ln)
	gln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go s.ServeGRPC(gln)
	client := dialGRPC(b, gln.Addr().String())
	req := rawRequest(1, floats(3*224*224, 0))
	b.Run("unary", func(b *testing.B) {
		b.ReportAllocs()
		cpu := processCPU{cpuNow()}
		b.ResetTimer()
		var wg sync.WaitGroup
		next := make(chan struct{})
		for range window {
			wg.Go(func() {
				for range next {
					if _, err := client.ModelInfer(b.Context(), req); err != nil {
						b.Error(err)
					}
				}
			})
		}
		for range b.N {
			next <- struct{}{}
		}
		close(next)
		wg.Wait()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		cpu.report(b)
	})
	b.Run("stream", func(b *testing.B) {
		stream, err := client.ModelStreamInfer(b.Context())
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		cpu := processCPU{cpuNow()}
		b.ResetTimer()
		slots := make(chan struct{}, window)
		recvd := make(chan error, 1)
		go func() {
			for range b.N {
				r, err := stream.Recv()
				if err == nil && r.ErrorMessage != "" {
					b.Error(r.ErrorMessage)
				}
				if err != nil {
					recvd <- err
					return
				}
				<-slots
			}
			recvd <- nil
		}()
		for range b.N {
			select {
			case slots <- struct{}{}:
			case err := <-recvd:
				b.Fatalf("stream ended early: %v", err)
			}
			if err := stream.Send(req); err != nil {
				b.Fatal(err)
			}
		}
		if err := <-recvd; err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		stream.CloseSend()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		cpu.report(b)
	})
}
