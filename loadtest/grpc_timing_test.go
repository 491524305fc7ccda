package loadtest

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/inferd/inferd/inferencepb"
	"github.com/inferd/inferd/loadtest/testserver"
)

// BenchmarkGRPCInfer is the choice of the gRPC load's client: 16 calls in
// flight on the tiny model (one 602,112-byte row each) over one shared
// connection or a pool of 4, with the request encoded once and the answer
// not decoded (rawCodec), beside the generated client that encodes and
// decodes every message. The server runs in this process, so the figures
// are the client's and the server's cost together, as in a load run on one
// host.
func BenchmarkGRPCInfer(b *testing.B) {
	gs := testserver.StartGRPC(b, testserver.GRPCOptions{})
	url, addr := gs.URL, gs.Addr
	const inFlight = 16
	for _, bc := range []struct {
		name  string
		conns int
		typed bool
	}{
		{"raw/conns=1", 1, false},
		{"raw/conns=4", 4, false},
		{"generated/conns=1", 1, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p, err := prepare(context.Background(), Config{URL: url, Protocol: ProtocolGRPC, GRPCAddr: addr, Model: "tiny",
				Concurrency: inFlight, GRPCConns: bc.conns})
			if err != nil {
				b.Fatal(err)
			}
			defer p.finish()
			var req inferencepb.ModelInferRequest
			if err := proto.Unmarshal(p.grpc.req, &req); err != nil {
				b.Fatal(err)
			}
			client := inferencepb.NewGRPCInferenceServiceClient(p.grpc.conns[0])
			atk := &grpcAttack{name: bc.name, began: time.Now()}
			b.SetBytes(int64(len(p.grpc.req)))
			b.SetParallelism((inFlight + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if bc.typed {
						if _, err := client.ModelInfer(context.Background(), &req); err != nil {
							panic(fmt.Sprint("ModelInfer: ", err))
						}
						continue
					}
					if r := p.grpc.hit(atk, time.Minute); r.Code != 200 {
						panic(fmt.Sprintf("code %d: %s", r.Code, r.Error))
					}
				}
			})
		})
	}
}
