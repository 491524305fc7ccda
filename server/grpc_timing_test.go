package server

import (
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/inferd/inferd/config"
	"github.com/inferd/inferd/inferencepb"
	"github.com/inferd/inferd/kserve"
)

// BenchmarkGRPCConvert is the conversion of one 224x224 FP32 image's
// ModelInferRequest, raw_input_contents (used in place) against typed
// fp32_contents (converted into a pooled buffer): why raw is the path to
// recommend, and that neither allocates once warm.
func BenchmarkGRPCConvert(b *testing.B) {
	in := floats(3*224*224, 0)
	raw := rawRequest(1, in)
	typed := rawRequest(1, in)
	typed.RawInputContents = nil
	typed.Inputs[0].Contents = &inferencepb.InferTensorContents{Fp32Contents: in}
	for name, pr := range map[string]*inferencepb.ModelInferRequest{"raw": raw, "typed": typed} {
		b.Run(name, func(b *testing.B) {
			var dst kserve.InferRequest
			var bufs [][]byte
			b.SetBytes(int64(4 * len(in)))
			b.ReportAllocs()
			for b.Loop() {
				if err := grpcInferRequest(&dst, pr, &bufs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGRPCvsHTTP serves the tiny model one 224x224 FP32 image per
// request over loopback TCP, to 16 concurrent clients: gRPC ModelInfer
// with raw contents (one connection, as a generated client shares one)
// against HTTP's binary tensor extension (fasthttp client, a connection
// per concurrent request).
func BenchmarkGRPCvsHTTP(b *testing.B) {
	needLibrary(b)
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
	in := floats(3*224*224, 0)
	b.Run("grpc-raw", func(b *testing.B) {
		gs := dialGRPC(b, gln.Addr().String())
		req := rawRequest(1, in)
		b.SetParallelism(8) // 16 clients on 2 cores
		b.ReportAllocs()
		cpu := processCPU{cpuNow()}
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := gs.ModelInfer(b.Context(), req); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		cpu.report(b)
	})
	b.Run("http-binary", func(b *testing.B) {
		body, hlen := binaryInfer(1, in, true)
		client := &fasthttp.Client{MaxConnsPerHost: 512}
		url := "http://" + ln.Addr().String() + "/v2/models/tiny/infer"
		b.SetParallelism(8)
		b.ReportAllocs()
		cpu := processCPU{cpuNow()}
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			req.Header.SetMethod("POST")
			req.SetRequestURI(url)
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
		cpu.report(b)
	})
}

// processCPU is the process's CPU time (user and system) since start: per
// request, it counts client and server together, and unlike req/s it does
// not move with what other processes on the host do.
type processCPU struct{ start time.Duration }

func cpuNow() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// report reports the CPU time per op since the benchmark's last reset.
func (c *processCPU) report(b *testing.B) {
	b.ReportMetric(float64((cpuNow()-c.start).Microseconds())/float64(b.N), "cpu-us/op")
}

// BenchmarkGRPCUnmarshal is the server's decoding of one 224x224 FP32
// image's ModelInferRequest as grpc-go hands it over (16 KiB HTTP/2 data
// frames): grpc-go's proto codec (concatenate into a zeroed pooled buffer,
// then proto.Unmarshal copies raw_input_contents into a fresh allocation)
// against grpcCodec (concatenate once into an unzeroed pooled buffer that
// raw_input_contents alias, released when the call ends).
func BenchmarkGRPCUnmarshal(b *testing.B) {
	msg, err := proto.Marshal(rawRequest(1, floats(3*224*224, 0)))
	if err != nil {
		b.Fatal(err)
	}
	var data mem.BufferSlice
	for rest := msg; len(rest) > 0; {
		n := min(16<<10, len(rest))
		data = append(data, mem.Copy(rest[:n], mem.DefaultBufferPool()))
		rest = rest[n:]
	}
	codec := newGRPCCodec(nil)
	b.Run("grpc-go-proto", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		b.ReportAllocs()
		for b.Loop() {
			var pr inferencepb.ModelInferRequest
			data.Ref() // grpc-go frees its reference after Unmarshal
			if err := codec.std.Unmarshal(data, &pr); err != nil {
				b.Fatal(err)
			}
			data.Free()
		}
	})
	b.Run("inferd-aliasing", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		b.ReportAllocs()
		for b.Loop() {
			var call grpcInferCall
			data.Ref()
			if err := codec.Unmarshal(data, &call); err != nil {
				b.Fatal(err)
			}
			data.Free()
			call.release()
		}
	})
}
