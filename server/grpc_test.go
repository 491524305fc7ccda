package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/inferd/inferd/config"
	"github.com/inferd/inferd/inferencepb"
	"github.com/inferd/inferd/internal/testbed"
)

// grpcServer is an inferd serving HTTP on an in-memory listener and gRPC
// on a loopback TCP port, with a generated client on a real connection.
type grpcServer struct {
	*testServer
	addr   string
	conn   *grpc.ClientConn
	client inferencepb.GRPCInferenceServiceClient
	health grpc_health_v1.HealthClient
}

// startGRPC starts cfg's models, serving both protocols until the test
// ends (Shutdown stops gRPC too).
func startGRPC(t *testing.T, cfg *config.Config) *grpcServer {
	t.Helper()
	ts := start(t, cfg)
	return serveGRPCOn(t, ts)
}

func serveGRPCOn(t *testing.T, ts *testServer) *grpcServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go ts.ServeGRPC(ln)
	conn := dialConn(t, ln.Addr().String())
	return &grpcServer{testServer: ts, addr: ln.Addr().String(), conn: conn,
		client: inferencepb.NewGRPCInferenceServiceClient(conn), health: grpc_health_v1.NewHealthClient(conn)}
}

// dialConn is a plaintext client connection to addr, closed when the test
// ends, that sends and takes messages larger than the server allows.
func dialConn(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20), grpc.MaxCallSendMsgSize(256<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// dialGRPC is a generated client on a connection to addr.
func dialGRPC(t testing.TB, addr string) inferencepb.GRPCInferenceServiceClient {
	return inferencepb.NewGRPCInferenceServiceClient(dialConn(t, addr))
}

func grpcCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wantCode checks that err is a gRPC status with code c whose message says
// want.
func wantCode(t *testing.T, err error, c codes.Code, want string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != c {
		t.Fatalf("error %v: want code %s", err, c)
	}
	if !strings.Contains(st.Message(), want) {
		t.Errorf("message %q does not say %q", st.Message(), want)
	}
}

func float32Bytes(f []float32) []byte {
	b := make([]byte, 0, 4*len(f))
	for _, v := range f {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

// rawRequest asks tiny for its outputs of rows rows of in, as raw bytes.
func rawRequest(rows int, in []float32) *inferencepb.ModelInferRequest {
	return &inferencepb.ModelInferRequest{
		ModelName: "tiny",
		Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{{
			Name: "input", Datatype: "FP32", Shape: []int64{int64(rows), 3, 224, 224},
		}},
		RawInputContents: [][]byte{float32Bytes(in)},
	}
}

// httpBinaryOutput infers over HTTP with the binary extension both ways
// and returns the output's bytes.
func (gs *grpcServer) httpBinaryOutput(t *testing.T, body []byte, hlen int) []byte {
	t.Helper()
	r := gs.do(t, "POST", "/v2/models/tiny/infer", "application/octet-stream", body, headerInferenceLength, strconv.Itoa(hlen))
	if r.code != 200 {
		t.Fatalf("HTTP infer: %d %s", r.code, r.body)
	}
	n, err := strconv.Atoi(r.header.Get(headerInferenceLength))
	if err != nil {
		t.Fatalf("HTTP infer answered no binary output: %s", r.body)
	}
	return r.body[n:]
}

// The metadata calls answer what their HTTP routes do; an unknown model or
// version is NotFound.
func TestGRPCMetadata(t *testing.T) {
	gs := startGRPC(t, tinyConfig(nil))
	ctx := grpcCtx(t)
	if r, err := gs.client.ServerLive(ctx, &inferencepb.ServerLiveRequest{}); err != nil || !r.Live {
		t.Fatalf("ServerLive: %v %v", r, err)
	}
	if r, err := gs.client.ServerReady(ctx, &inferencepb.ServerReadyRequest{}); err != nil || !r.Ready {
		t.Fatalf("ServerReady: %v %v", r, err)
	}
	if r, err := gs.client.ModelReady(ctx, &inferencepb.ModelReadyRequest{Name: "tiny", Version: "1"}); err != nil || !r.Ready {
		t.Fatalf("ModelReady: %v %v", r, err)
	}
	sm, err := gs.client.ServerMetadata(ctx, &inferencepb.ServerMetadataRequest{})
	if err != nil || sm.Name != "inferd" || sm.Version != Version || !strings.Contains(strings.Join(sm.Extensions, ","), "classification") {
		t.Fatalf("ServerMetadata: %v %v", sm, err)
	}

	md, err := gs.client.ModelMetadata(ctx, &inferencepb.ModelMetadataRequest{Name: "tiny"})
	if err != nil {
		t.Fatal(err)
	}
	var httpMD struct {
		Name     string
		Platform string
		Inputs   []struct {
			Name, Datatype string
			Shape          []int64
		}
		Outputs []struct {
			Name, Datatype string
			Shape          []int64
		}
	}
	gs.do(t, "GET", "/v2/models/tiny", "", nil).json(t, &httpMD)
	if md.Name != httpMD.Name || md.Platform != httpMD.Platform || len(md.Inputs) != len(httpMD.Inputs) || len(md.Outputs) != len(httpMD.Outputs) {
		t.Fatalf("ModelMetadata %v, HTTP %+v", md, httpMD)
	}
	for i, in := range md.Inputs {
		h := httpMD.Inputs[i]
		if in.Name != h.Name || in.Datatype != h.Datatype || !slices.Equal(in.Shape, h.Shape) {
			t.Errorf("input %d: gRPC %v, HTTP %+v", i, in, h)
		}
	}

	cfg, err := gs.client.ModelConfig(ctx, &inferencepb.ModelConfigRequest{Name: "tiny"})
	if err != nil {
		t.Fatal(err)
	}
	var httpCfg struct {
		MaxBatchSize int32 `json:"max_batch_size"`
		Input        []struct {
			Name     string
			DataType string `json:"data_type"`
			Dims     []int64
		}
		DynamicBatching struct {
			DefaultQueuePolicy struct {
				MaxQueueSize uint32 `json:"max_queue_size"`
			} `json:"default_queue_policy"`
		} `json:"dynamic_batching"`
	}
	gs.do(t, "GET", "/v2/models/tiny/config", "", nil).json(t, &httpCfg)
	c := cfg.Config
	if c.MaxBatchSize != httpCfg.MaxBatchSize || c.MaxBatchSize != 8 || len(c.Input) != 1 ||
		c.Input[0].DataType.String() != httpCfg.Input[0].DataType || !slices.Equal(c.Input[0].Dims, httpCfg.Input[0].Dims) ||
		c.GetDynamicBatching().GetDefaultQueuePolicy().GetMaxQueueSize() != httpCfg.DynamicBatching.DefaultQueuePolicy.MaxQueueSize {
		t.Errorf("ModelConfig %v, HTTP %+v", c, httpCfg)
	}

	if _, err := gs.client.ModelInfer(ctx, rawRequest(1, floats(3*224*224, 0))); err != nil {
		t.Fatal(err)
	}
	stats, err := gs.client.ModelStatistics(ctx, &inferencepb.ModelStatisticsRequest{})
	if err != nil || len(stats.ModelStats) != 1 {
		t.Fatalf("ModelStatistics: %v %v", stats, err)
	}
	if s := stats.ModelStats[0]; s.Name != "tiny" || s.InferenceCount != 1 || s.InferenceStats.Success.Count != 1 || s.LastInference == 0 {
		t.Errorf("statistics after one inference over gRPC: %v", s)
	}
	idx, err := gs.client.RepositoryIndex(ctx, &inferencepb.RepositoryIndexRequest{Ready: true})
	if err != nil || len(idx.Models) != 1 || idx.Models[0].Name != "tiny" || idx.Models[0].State != "READY" {
		t.Fatalf("RepositoryIndex: %v %v", idx, err)
	}

	_, err = gs.client.ModelMetadata(ctx, &inferencepb.ModelMetadataRequest{Name: "nope"})
	wantCode(t, err, codes.NotFound, `unknown model "nope"`)
	_, err = gs.client.ModelReady(ctx, &inferencepb.ModelReadyRequest{Name: "tiny", Version: "2"})
	wantCode(t, err, codes.NotFound, `has no version "2"`)
	_, err = gs.client.RepositoryModelLoad(ctx, &inferencepb.RepositoryModelLoadRequest{ModelName: "tiny"})
	wantCode(t, err, codes.InvalidArgument, "SIGHUP")
}

// ModelInfer answers the bytes HTTP's binary infer does for the same
// inputs, from raw and from typed contents, echoing the id, with the
// output in raw_output_contents; gzip both ways changes nothing.
func TestGRPCInferMatchesHTTP(t *testing.T) {
	gs := startGRPC(t, tinyConfig(nil))
	ctx := grpcCtx(t)
	const rows = 3
	in := floats(rows*3*224*224, 0.7)
	body, hlen := binaryInfer(rows, in, true)
	want := gs.httpBinaryOutput(t, body, hlen)

	raw := rawRequest(rows, in)
	raw.Id = "grpc-1"
	raw.Outputs = []*inferencepb.ModelInferRequest_InferRequestedOutputTensor{{Name: "output"}}
	typed := rawRequest(rows, in)
	typed.RawInputContents = nil
	typed.Inputs[0].Contents = &inferencepb.InferTensorContents{Fp32Contents: in}
	for name, req := range map[string]*inferencepb.ModelInferRequest{"raw": raw, "typed": typed} {
		for _, opts := range [][]grpc.CallOption{nil, {grpc.UseCompressor(gzip.Name)}} {
			resp, err := gs.client.ModelInfer(ctx, req, opts...)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if resp.ModelName != "tiny" || resp.ModelVersion != "1" || resp.Id != req.Id {
				t.Errorf("%s: model %q version %q id %q, want tiny 1 %q", name, resp.ModelName, resp.ModelVersion, resp.Id, req.Id)
			}
			if len(resp.Outputs) != 1 || len(resp.RawOutputContents) != 1 {
				t.Fatalf("%s: %d outputs, %d raw contents", name, len(resp.Outputs), len(resp.RawOutputContents))
			}
			o := resp.Outputs[0]
			if o.Name != "output" || o.Datatype != "FP32" || len(o.Shape) != 2 || o.Shape[0] != rows || o.Contents != nil {
				t.Errorf("%s: output %v", name, o)
			}
			if !bytes.Equal(resp.RawOutputContents[0], want) {
				t.Errorf("%s (compressed %v): output differs from HTTP's (%d and %d bytes)", name, opts != nil, len(resp.RawOutputContents[0]), len(want))
			}
		}
	}
}

// A uint8 model takes raw bytes and uint_contents alike, and answers as
// over HTTP.
func TestGRPCInferUint8(t *testing.T) {
	gs := startGRPC(t, tinyConfig(func(c *config.Config) { c.Models[0].Path = "builtin:tiny-uint8" }))
	ctx := grpcCtx(t)
	const rows = 2
	pixels := make([]byte, rows*224*224*3)
	u := make([]uint32, len(pixels))
	for i := range pixels {
		pixels[i] = byte(i * 7)
		u[i] = uint32(pixels[i])
	}
	hdr, _ := json.Marshal(map[string]any{
		"inputs": []any{map[string]any{"name": "input", "datatype": "UINT8", "shape": []int{rows, 224, 224, 3},
			"parameters": map[string]any{"binary_data_size": len(pixels)}}},
		"outputs": []any{map[string]any{"name": "output", "parameters": map[string]any{"binary_data": true}}},
	})
	want := gs.httpBinaryOutput(t, append(hdr, pixels...), len(hdr))
	in := []*inferencepb.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "UINT8", Shape: []int64{rows, 224, 224, 3}}}
	resp, err := gs.client.ModelInfer(ctx, &inferencepb.ModelInferRequest{ModelName: "tiny", Inputs: in, RawInputContents: [][]byte{pixels}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(resp.RawOutputContents[0], want) {
		t.Error("raw UINT8: output differs from HTTP's")
	}
	in[0].Contents = &inferencepb.InferTensorContents{UintContents: u}
	resp, err = gs.client.ModelInfer(ctx, &inferencepb.ModelInferRequest{ModelName: "tiny", Inputs: in})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(resp.RawOutputContents[0], want) {
		t.Error("typed UINT8: output differs from HTTP's")
	}
	u[5] = 256
	_, err = gs.client.ModelInfer(ctx, &inferencepb.ModelInferRequest{ModelName: "tiny", Inputs: in})
	wantCode(t, err, codes.InvalidArgument, "uint_contents[5] = 256 is out of range for UINT8")
}

// parameters.classification on a requested output answers the BYTES
// strings HTTP does.
func TestGRPCClassification(t *testing.T) {
	gs := startGRPC(t, tinyConfig(nil))
	ctx := grpcCtx(t)
	const rows, n = 2, 5
	in := floats(rows*3*224*224, 0.3)
	body, hlen := classificationRequest(rows, in, n, true)
	want := gs.httpBinaryOutput(t, body, hlen)

	req := rawRequest(rows, in)
	req.Outputs = []*inferencepb.ModelInferRequest_InferRequestedOutputTensor{{Name: "output",
		Parameters: map[string]*inferencepb.InferParameter{"classification": {ParameterChoice: &inferencepb.InferParameter_Int64Param{Int64Param: n}}}}}
	resp, err := gs.client.ModelInfer(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	o := resp.Outputs[0]
	if o.Datatype != "BYTES" || !slices.Equal(o.Shape, []int64{rows, n}) {
		t.Errorf("classification output %v: want BYTES [%d,%d]", o, rows, n)
	}
	if got := resp.RawOutputContents[0]; !bytes.Equal(got, want) {
		t.Errorf("classification: gRPC %q, HTTP %q", deserializeBytesTensor(t, got), deserializeBytesTensor(t, want))
	}
	if s := deserializeBytesTensor(t, want); len(s) != rows*n || strings.Count(s[0], ":") < 1 {
		t.Errorf("HTTP's classification strings %q", s)
	}
}

// Bad requests are InvalidArgument with HTTP's texts where the checks are
// shared; an unknown model is NotFound; a message over max_body_bytes is
// ResourceExhausted.
func TestGRPCBadRequests(t *testing.T) {
	gs := startGRPC(t, tinyConfig(func(c *config.Config) { c.Server.MaxBodyBytes = 2 << 20 }))
	ctx := grpcCtx(t)
	one := floats(3*224*224, 0.1)
	mod := func(f func(r *inferencepb.ModelInferRequest)) *inferencepb.ModelInferRequest {
		r := rawRequest(1, one)
		f(r)
		return r
	}
	for _, tc := range []struct {
		name string
		req  *inferencepb.ModelInferRequest
		code codes.Code
		want string
	}{
		{"unknown model", mod(func(r *inferencepb.ModelInferRequest) { r.ModelName = "nope" }), codes.NotFound, `unknown model "nope"`},
		// The shape check is checkInputs', the HTTP text word for word.
		{"wrong shape", mod(func(r *inferencepb.ModelInferRequest) {
			r.Inputs[0].Shape = []int64{1, 224, 224, 3}
		}), codes.InvalidArgument, `input "input": shape [1 224 224 3], model "tiny" takes [N,3,224,224]`},
		{"wrong datatype", mod(func(r *inferencepb.ModelInferRequest) {
			r.Inputs[0].Datatype = "INT32"
		}), codes.InvalidArgument, `input "input": datatype INT32, model "tiny" takes FP32`},
		{"raw size off by one", mod(func(r *inferencepb.ModelInferRequest) {
			r.RawInputContents[0] = r.RawInputContents[0][1:]
		}), codes.InvalidArgument, "raw_input_contents[0] is 602111 bytes, shape [1 3 224 224] of FP32 needs 602112"},
		{"raw count", mod(func(r *inferencepb.ModelInferRequest) {
			r.RawInputContents = append(r.RawInputContents, nil)
		}), codes.InvalidArgument, "raw_input_contents has 2 entries for 1 inputs"},
		{"typed count", mod(func(r *inferencepb.ModelInferRequest) {
			r.RawInputContents = nil
			r.Inputs[0].Contents = &inferencepb.InferTensorContents{Fp32Contents: one[:10]}
		}), codes.InvalidArgument, "fp32_contents has 10 elements, shape of FP32 needs 150528"},
		{"no contents", mod(func(r *inferencepb.ModelInferRequest) { r.RawInputContents = nil }), codes.InvalidArgument, "has no contents"},
		{"BYTES input", mod(func(r *inferencepb.ModelInferRequest) { r.Inputs[0].Datatype = "BYTES" }), codes.InvalidArgument, "string tensors are not supported"},
		{"unknown output", mod(func(r *inferencepb.ModelInferRequest) {
			r.Outputs = []*inferencepb.ModelInferRequest_InferRequestedOutputTensor{{Name: "logits"}}
		}), codes.InvalidArgument, `model "tiny" has no output "logits"`},
		{"timeout as a string", mod(func(r *inferencepb.ModelInferRequest) {
			r.Parameters = map[string]*inferencepb.InferParameter{"timeout": {ParameterChoice: &inferencepb.InferParameter_StringParam{StringParam: "1s"}}}
		}), codes.InvalidArgument, "parameters.timeout"},
		{"batch over max_batch", &inferencepb.ModelInferRequest{ModelName: "tiny",
			Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: []int64{9, 3, 224, 224},
				Contents: &inferencepb.InferTensorContents{}}}}, codes.InvalidArgument, "fp32_contents has 0 elements"},
		// 4 rows are 2.4 MB on the wire, over the 2 MiB max_body_bytes:
		// grpc-go refuses the message before the handler.
		{"over max_body_bytes", rawRequest(4, floats(4*3*224*224, 0)), codes.ResourceExhausted, "larger than max"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := gs.client.ModelInfer(ctx, tc.req)
			wantCode(t, err, tc.code, tc.want)
		})
	}
	// The same shape error over HTTP says the same.
	var hdr map[string]any
	body, hlen := binaryInfer(1, one, false)
	json.Unmarshal(body[:hlen], &hdr)
	hdr["inputs"].([]any)[0].(map[string]any)["shape"] = []int{1, 224, 224, 3}
	h, _ := json.Marshal(hdr)
	gs.do(t, "POST", "/v2/models/tiny/infer", "", append(h, body[hlen:]...), headerInferenceLength, strconv.Itoa(len(h))).
		wantError(t, 400, `input "input": shape [1 224 224 3], model "tiny" takes [N,3,224,224]`)
}

// A full queue is ResourceExhausted with a retry hint; a timeout of 1 µs,
// or a call deadline, the model cannot meet is DeadlineExceeded.
func TestGRPCOverloadAndDeadline(t *testing.T) {
	gs := startGRPC(t, tinyConfig(func(c *config.Config) {
		c.Models[0].Batcher.QueueCapacity = 1
		c.Models[0].Batcher.MaxDelay = 200 * time.Millisecond
	}))
	ctx := grpcCtx(t)
	req := rawRequest(1, floats(3*224*224, 0))
	var mu sync.Mutex
	got := map[codes.Code]int{}
	var trailer metadata.MD
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			var tr metadata.MD
			_, err := gs.client.ModelInfer(ctx, req, grpc.Trailer(&tr))
			mu.Lock()
			defer mu.Unlock()
			got[status.Code(err)]++
			if status.Code(err) == codes.ResourceExhausted {
				trailer = tr
				if !strings.Contains(err.Error(), "queue full") || !strings.Contains(err.Error(), "retry after") {
					t.Errorf("queue full: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if got[codes.ResourceExhausted] == 0 || got[codes.OK] == 0 {
		t.Errorf("codes from a queue of capacity 1: %v", got)
	}
	if len(trailer.Get("retry-after")) == 0 {
		t.Errorf("ResourceExhausted without a retry-after trailer: %v", trailer)
	}

	short := rawRequest(1, floats(3*224*224, 0))
	short.Parameters = map[string]*inferencepb.InferParameter{"timeout": {ParameterChoice: &inferencepb.InferParameter_Int64Param{Int64Param: 1}}}
	_, err := gs.client.ModelInfer(ctx, short)
	wantCode(t, err, codes.DeadlineExceeded, "cannot meet deadline")
	dctx, cancel := context.WithTimeout(ctx, time.Microsecond)
	defer cancel()
	_, err = gs.client.ModelInfer(dctx, req)
	wantCode(t, err, codes.DeadlineExceeded, "")
}

// While the models load, the inference service is Unavailable and health
// NOT_SERVING; once loaded, SERVING.
func TestGRPCNotReady(t *testing.T) {
	needLibrary(t)
	s := New(tinyConfig(nil), nil, quiet)
	s.loading.Store(true) // as LoadModels does while it opens the models
	gs := serveGRPCOn(t, &testServer{Server: s})
	t.Cleanup(func() {
		ctx, cancel := contextWithTimeout(10 * time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	ctx := grpcCtx(t)
	_, err := gs.client.ModelInfer(ctx, rawRequest(1, floats(3*224*224, 0)))
	wantCode(t, err, codes.Unavailable, `model "tiny" is loading`)
	if r, err := gs.client.ServerReady(ctx, &inferencepb.ServerReadyRequest{}); err != nil || r.Ready {
		t.Errorf("ServerReady while loading: %v %v", r, err)
	}
	for _, svc := range []string{"", "inference.GRPCInferenceService"} {
		if r, err := gs.health.Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: svc}); err != nil || r.Status != grpc_health_v1.HealthCheckResponse_NOT_SERVING {
			t.Errorf("health %q while loading: %v %v", svc, r, err)
		}
	}
	watch, err := gs.health.Watch(ctx, &grpc_health_v1.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := watch.Recv(); err != nil || r.Status != grpc_health_v1.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("first watch status: %v %v", r, err)
	}
	if err := s.LoadModels(); err != nil {
		t.Fatal(err)
	}
	if r, err := watch.Recv(); err != nil || r.Status != grpc_health_v1.HealthCheckResponse_SERVING {
		t.Errorf("watch after loading: %v %v", r, err)
	}
	for _, svc := range []string{"", "inference.GRPCInferenceService"} {
		if r, err := gs.health.Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: svc}); err != nil || r.Status != grpc_health_v1.HealthCheckResponse_SERVING {
			t.Errorf("health %q after loading: %v %v", svc, r, err)
		}
	}
	_, err = gs.health.Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: "other"})
	wantCode(t, err, codes.NotFound, "unknown service")
	if _, err := gs.client.ModelInfer(ctx, rawRequest(1, floats(3*224*224, 0))); err != nil {
		t.Errorf("infer after loading: %v", err)
	}
}

// Shutdown turns health NOT_SERVING at the drain, lets a call in progress
// finish, then refuses new ones.
func TestGRPCGracefulStop(t *testing.T) {
	gs := startGRPC(t, tinyConfig(func(c *config.Config) {
		c.Models[0].Batcher.MaxDelay = 300 * time.Millisecond // the call waits for its batch
		c.Server.DrainDelay = 200 * time.Millisecond
	}))
	ctx := grpcCtx(t)
	in := floats(3*224*224, 0.2)
	done := make(chan error, 1)
	go func() {
		_, err := gs.client.ModelInfer(ctx, rawRequest(1, in))
		done <- err
	}()
	m := gs.model("tiny")
	if _, ok := testbed.WaitFor(5*time.Second, func() bool { return m.QueueDepth() > 0 }); !ok {
		t.Fatal("the call never queued")
	}
	stopped := make(chan error, 1)
	go func() {
		sctx, cancel := contextWithTimeout(10 * time.Second)
		defer cancel()
		stopped <- gs.Shutdown(sctx)
	}()
	if _, ok := testbed.WaitFor(5*time.Second, func() bool {
		r, err := gs.health.Check(ctx, &grpc_health_v1.HealthCheckRequest{})
		return err == nil && r.Status == grpc_health_v1.HealthCheckResponse_NOT_SERVING
	}); !ok {
		t.Error("health never NOT_SERVING during the drain")
	}
	if err := <-done; err != nil {
		t.Errorf("the call in progress at shutdown: %v", err)
	}
	if err := <-stopped; err != nil {
		t.Errorf("shutdown: %v", err)
	}
	_, err := gs.client.ModelInfer(ctx, rawRequest(1, in))
	if c := status.Code(err); c != codes.Unavailable {
		t.Errorf("a call after the stop: %v, want Unavailable", err)
	}
}

// gRPC calls are counted in the request metrics under protocol="grpc",
// with the HTTP status the same request gets over HTTP.
func TestGRPCMetrics(t *testing.T) {
	gs := startGRPC(t, tinyConfig(nil))
	ctx := grpcCtx(t)
	for range 2 {
		if _, err := gs.client.ModelInfer(ctx, rawRequest(1, floats(3*224*224, 0))); err != nil {
			t.Fatal(err)
		}
	}
	gs.client.ModelInfer(ctx, &inferencepb.ModelInferRequest{ModelName: "nope"})
	gs.client.ServerLive(ctx, &inferencepb.ServerLiveRequest{})
	r := gs.do(t, "GET", "/metrics", "", nil)
	for _, want := range []string{
		`inferd_http_requests_total{model="tiny",endpoint="infer",code="200",protocol="grpc"} 2`,
		`inferd_http_requests_total{model="",endpoint="infer",code="404",protocol="grpc"} 1`,
		`inferd_http_requests_total{model="",endpoint="health",code="200",protocol="grpc"} 1`,
		`inferd_http_request_duration_seconds_bucket{model="tiny",endpoint="infer",code="200",protocol="grpc",le="+Inf"} 2`,
	} {
		if !bytes.Contains(r.body, []byte(want)) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// With auth on, the inference service takes the key from the
// authorization or x-api-key metadata, per model; health needs none.
func TestGRPCAuth(t *testing.T) {
	gs := startGRPC(t, authConfig(t, nil))
	ctx := grpcCtx(t)
	req := rawRequest(1, floats(3*224*224, 0))
	_, err := gs.client.ModelInfer(ctx, req)
	wantCode(t, err, codes.Unauthenticated, "missing API key")
	_, err = gs.client.ModelInfer(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer wrong"), req)
	wantCode(t, err, codes.Unauthenticated, "unknown API key")
	if _, err := gs.client.ModelInfer(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+keyB), req); err != nil {
		t.Errorf("a key allowed tiny*: %v", err)
	}
	if _, err := gs.client.ModelInfer(metadata.AppendToOutgoingContext(ctx, "x-api-key", keySteady), req); err != nil {
		t.Errorf("x-api-key: %v", err)
	}
	_, err = gs.client.ModelMetadata(metadata.AppendToOutgoingContext(ctx, "x-api-key", keyScraper), &inferencepb.ModelMetadataRequest{Name: "tiny"})
	wantCode(t, err, codes.PermissionDenied, `model "tiny" is not allowed for this key`)
	if r, err := gs.health.Check(ctx, &grpc_health_v1.HealthCheckRequest{}); err != nil || r.Status != grpc_health_v1.HealthCheckResponse_SERVING {
		t.Errorf("health without a key: %v %v", r, err)
	}
	if r, err := gs.client.ServerLive(ctx, &inferencepb.ServerLiveRequest{}); err != nil || !r.Live {
		t.Errorf("ServerLive without a key: %v %v", r, err)
	}
}

// A model with a response cache answers gRPC calls through it as HTTP
// requests: the second identical call is a hit with the same bytes, said
// in the x-inferd-cache header metadata; cache-control: no-cache
// bypasses it.
func TestGRPCResponseCache(t *testing.T) {
	gs := startGRPC(t, tinyConfig(func(c *config.Config) { c.Models[0].Cache = config.Cache{MaxBytes: 16 << 20} }))
	ctx := grpcCtx(t)
	req := rawRequest(1, floats(3*224*224, 0.9))
	var first []byte
	for i, want := range []string{"miss", "hit"} {
		var hdr metadata.MD
		resp, err := gs.client.ModelInfer(ctx, req, grpc.Header(&hdr))
		if err != nil {
			t.Fatal(err)
		}
		if got := hdr.Get("x-inferd-cache"); len(got) != 1 || got[0] != want {
			t.Errorf("call %d: x-inferd-cache %v, want %s", i, got, want)
		}
		if i == 0 {
			first = resp.RawOutputContents[0]
		} else if !bytes.Equal(resp.RawOutputContents[0], first) {
			t.Error("the hit answered other bytes than the miss")
		}
	}
	var hdr metadata.MD
	if _, err := gs.client.ModelInfer(metadata.AppendToOutgoingContext(ctx, "cache-control", "no-cache"), req, grpc.Header(&hdr)); err != nil {
		t.Fatal(err)
	}
	if got := hdr.Get("x-inferd-cache"); len(got) != 1 || got[0] != "bypass" {
		t.Errorf("no-cache: x-inferd-cache %v, want bypass", got)
	}
}

// With tls: set, gRPC serves TLS with the same certificate (ALPN h2),
// keys on top; a plaintext client gets no answer.
func TestGRPCTLS(t *testing.T) {
	s, _, certs, _ := startTLS(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.ServeGRPC(ln)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: certs.Pool})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := inferencepb.NewGRPCInferenceServiceClient(conn)
	ctx := grpcCtx(t)
	if r, err := client.ServerLive(ctx, &inferencepb.ServerLiveRequest{}); err != nil || !r.Live {
		t.Fatalf("ServerLive over TLS: %v %v", r, err)
	}
	if _, err := client.ModelInfer(metadata.AppendToOutgoingContext(ctx, "x-api-key", keyB), rawRequest(1, floats(3*224*224, 0))); err != nil {
		t.Errorf("ModelInfer over TLS: %v", err)
	}
	plain := dialGRPC(t, ln.Addr().String())
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := plain.ServerLive(pctx, &inferencepb.ServerLiveRequest{}); status.Code(err) != codes.Unavailable && status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("plaintext on the TLS port: %v", err)
	}
}

// Reflection lists the services, so grpcurl needs no proto.
func TestGRPCReflection(t *testing.T) {
	gs := startGRPC(t, tinyConfig(nil))
	stream, err := grpc_reflection_v1.NewServerReflectionClient(gs.conn).ServerReflectionInfo(grpcCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&grpc_reflection_v1.ServerReflectionRequest{MessageRequest: &grpc_reflection_v1.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	r, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range r.GetListServicesResponse().GetService() {
		names = append(names, s.Name)
	}
	for _, want := range []string{"inference.GRPCInferenceService", "grpc.health.v1.Health"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v, not %s", names, want)
		}
	}
}

// The gRPC listener holds clients to max_connections_per_client: a
// connection over it is closed at accept and counted.
func TestGRPCConnectionLimit(t *testing.T) {
	gs := startGRPC(t, tinyConfig(func(c *config.Config) { c.Server.MaxConnectionsPerClient = 1 }))
	ctx := grpcCtx(t)
	if _, err := gs.client.ServerLive(ctx, &inferencepb.ServerLiveRequest{}); err != nil {
		t.Fatal(err)
	}
	second := dialGRPC(t, gs.addr)
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := second.ServerLive(sctx, &inferencepb.ServerLiveRequest{}); err == nil {
		t.Fatal("a second connection from one address was served at max_connections_per_client 1")
	}
	r := gs.do(t, "GET", "/metrics", "", nil)
	if bytes.Contains(r.body, []byte(`inferd_http_connections_rejected_total{reason="per_client"} 0`)) {
		t.Error("the refused connection was not counted")
	}
	// The first connection still serves.
	if _, err := gs.client.ServerLive(ctx, &inferencepb.ServerLiveRequest{}); err != nil {
		t.Errorf("the connection within the limit: %v", err)
	}
}
