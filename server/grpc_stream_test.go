package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/status"

	"github.com/inferd/inferd/config"
	"github.com/inferd/inferd/inferencepb"
	"github.com/inferd/inferd/internal/testbed"
)

// streamAll sends reqs on a new stream of client, from its own goroutine,
// half-closes it, and returns the responses by id, failing on a repeated
// id or a stream that does not end with io.EOF.
func streamAll(t *testing.T, ctx context.Context, client inferencepb.GRPCInferenceServiceClient, reqs []*inferencepb.ModelInferRequest, opts ...grpc.CallOption) map[string]*inferencepb.ModelStreamInferResponse {
	t.Helper()
	stream, err := client.ModelStreamInfer(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	sent := make(chan error, 1)
	go func() {
		for _, r := range reqs {
			if err := stream.Send(r); err != nil {
				sent <- err
				return
			}
		}
		sent <- stream.CloseSend()
	}()
	got := map[string]*inferencepb.ModelStreamInferResponse{}
	for {
		r, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d responses: %v", len(got), err)
		}
		id := r.GetInferResponse().GetId()
		if got[id] != nil {
			t.Fatalf("two responses for id %q", id)
		}
		got[id] = r
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	return got
}

// Many requests on one stream, more than it serves at once, with distinct
// ids and inputs of three sizes (1 to 3 rows): each id gets one response,
// and its output is its own input's, as a unary ModelInfer answers it.
// Outputs are compared within outputTolerance, not byte for byte: the
// stream's requests are batched together and the model's arithmetic
// differs slightly with the batch a row runs in. A request with the wrong
// shape in the middle answers error_message, the unary call's text, with
// its id, and the rest succeed. Under -race this is also the proof that
// raw inputs aliasing each request's received message (grpc_codec.go)
// stay valid until that request is answered: pooled message buffers of
// two sizes are reused all along the stream.
func TestGRPCStreamInfer(t *testing.T) {
	gs := startGRPC(t, tinyConfig(func(c *config.Config) { c.Models[0].MaxBatch = 16 }))
	// -race makes each request (gzip most) tens of times slower.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	type input struct {
		req  *inferencepb.ModelInferRequest
		want []float32
	}
	var inputs []input
	for i := range 6 {
		rows := 1 + i%3
		req := rawRequest(rows, floats(rows*3*224*224, float64(i)*1.3))
		resp, err := gs.client.ModelInfer(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, input{req, leFloats(resp.RawOutputContents[0])})
	}
	for i := range inputs {
		for j := range i {
			if n := min(len(inputs[i].want), len(inputs[j].want)); maxDiff(inputs[i].want[:n], inputs[j].want[:n]) < 100*outputTolerance {
				t.Fatalf("inputs %d and %d have outputs too alike to tell apart", i, j)
			}
		}
	}
	bad := rawRequest(1, floats(3*224*224, 0))
	bad.Inputs[0].Shape = []int64{1, 224, 224, 3}
	_, unaryErr := gs.client.ModelInfer(ctx, bad)
	wantCode(t, unaryErr, codes.InvalidArgument, "shape [1 224 224 3]")

	const n = grpcStreamInFlight + 16 // some requests wait for a slot
	var reqs []*inferencepb.ModelInferRequest
	which := map[string]int{}
	for i := range n {
		id := fmt.Sprint("req-", i)
		if i == n/2 {
			reqs = append(reqs, withID(bad, id))
			continue
		}
		reqs = append(reqs, withID(inputs[i%len(inputs)].req, id))
		which[id] = i % len(inputs)
	}
	// gzip, under -race, makes a request seconds long: the compressed
	// stream has the six requests around the bad one.
	gzipped := reqs[n/2-3 : n/2+3]
	for _, pass := range []struct {
		reqs []*inferencepb.ModelInferRequest
		opts []grpc.CallOption
	}{{reqs, nil}, {gzipped, []grpc.CallOption{grpc.UseCompressor(gzip.Name)}}} {
		got := streamAll(t, ctx, gs.client, pass.reqs, pass.opts...)
		if len(got) != len(pass.reqs) {
			t.Fatalf("%d responses to %d requests", len(got), len(pass.reqs))
		}
		for id, r := range got {
			in, ok := which[id]
			if !ok {
				if id != fmt.Sprint("req-", n/2) {
					t.Fatalf("a response for id %q, never sent", id)
				}
				if r.ErrorMessage != status.Convert(unaryErr).Message() {
					t.Errorf("the bad request: error_message %q, the unary call says %q", r.ErrorMessage, status.Convert(unaryErr).Message())
				}
				if ir := r.InferResponse; ir.ModelName != "tiny" || len(ir.RawOutputContents) != 0 {
					t.Errorf("the bad request's infer_response %v", ir)
				}
				continue
			}
			ir := r.InferResponse
			if r.ErrorMessage != "" || ir.ModelName != "tiny" || ir.ModelVersion != "1" || len(ir.RawOutputContents) != 1 {
				t.Fatalf("%s: error %q, response %v", id, r.ErrorMessage, ir)
			}
			want := inputs[in].want
			if got := leFloats(ir.RawOutputContents[0]); len(got) != len(want) || maxDiff(got, want) > outputTolerance {
				t.Errorf("%s: outputs are not its input's (input %d, max difference %g)", id, in, maxDiff(got, want))
			}
		}
	}

	// Each request is counted as a unary ModelInfer; the streams are not.
	m := gs.do(t, "GET", "/metrics", "", nil)
	for _, want := range []string{
		fmt.Sprintf(`inferd_http_requests_total{model="tiny",endpoint="infer",code="200",protocol="grpc"} %d`, len(inputs)+n-1+len(gzipped)-1),
		`inferd_http_requests_total{model="tiny",endpoint="infer",code="400",protocol="grpc"} 3`,
	} {
		if !bytes.Contains(m.body, []byte(want)) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if bytes.Contains(m.body, []byte(`endpoint="metadata",code="200",protocol="grpc"`)) {
		t.Error("a stream was counted as a request")
	}
}

// withID is a shallow copy of r with id id.
func withID(r *inferencepb.ModelInferRequest, id string) *inferencepb.ModelInferRequest {
	return &inferencepb.ModelInferRequest{ModelName: r.ModelName, ModelVersion: r.ModelVersion, Id: id,
		Parameters: r.Parameters, Inputs: r.Inputs, Outputs: r.Outputs, RawInputContents: r.RawInputContents}
}

// parameters.classification works over a stream, answering what a unary
// call does; an unknown model answers NotFound's text and the stream goes
// on.
func TestGRPCStreamClassification(t *testing.T) {
	gs := startGRPC(t, tinyConfig(nil))
	ctx := grpcCtx(t)
	req := rawRequest(2, floats(2*3*224*224, 0.3))
	req.Id = "cls"
	req.Outputs = []*inferencepb.ModelInferRequest_InferRequestedOutputTensor{{Name: "output",
		Parameters: map[string]*inferencepb.InferParameter{"classification": {ParameterChoice: &inferencepb.InferParameter_Int64Param{Int64Param: 3}}}}}
	unary, err := gs.client.ModelInfer(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	unknown := &inferencepb.ModelInferRequest{ModelName: "nope", Id: "nope"}
	got := streamAll(t, ctx, gs.client, []*inferencepb.ModelInferRequest{unknown, req})
	r := got["cls"]
	if r == nil || r.ErrorMessage != "" {
		t.Fatalf("classification over a stream: %v", r)
	}
	o := r.InferResponse.Outputs[0]
	if o.Datatype != "BYTES" || !slices.Equal(o.Shape, []int64{2, 3}) || !bytes.Equal(r.InferResponse.RawOutputContents[0], unary.RawOutputContents[0]) {
		t.Errorf("stream classification %v %q, unary %q", o, r.InferResponse.RawOutputContents[0], unary.RawOutputContents[0])
	}
	if e := got["nope"]; e == nil || e.ErrorMessage != `unknown model "nope" (this server has "tiny")` || e.InferResponse.ModelName != "nope" {
		t.Errorf("unknown model over a stream: %v", e)
	}
}

// A stream's requests are batched together: with a window long enough
// for them all to queue, the model runs fewer batches than inferences.
func TestGRPCStreamBatches(t *testing.T) {
	gs := startGRPC(t, tinyConfig(func(c *config.Config) {
		c.Models[0].Batcher.MaxDelay = time.Second // a batch waits for 8 rows or a second
	}))
	ctx := grpcCtx(t)
	var reqs []*inferencepb.ModelInferRequest
	for i := range 16 {
		r := rawRequest(1, floats(3*224*224, float64(i)))
		r.Id = fmt.Sprint(i)
		reqs = append(reqs, r)
	}
	for id, r := range streamAll(t, ctx, gs.client, reqs) {
		if r.ErrorMessage != "" {
			t.Fatalf("%s: %s", id, r.ErrorMessage)
		}
	}
	st, err := gs.client.ModelStatistics(ctx, &inferencepb.ModelStatisticsRequest{Name: "tiny"})
	if err != nil {
		t.Fatal(err)
	}
	s := st.ModelStats[0]
	if s.InferenceCount != 16 || s.ExecutionCount >= s.InferenceCount {
		t.Errorf("16 requests on one stream: %d inferences in %d executions, want fewer executions", s.InferenceCount, s.ExecutionCount)
	}
}

// Cancelling a stream ends it on both sides: the client's Recv says
// Canceled, and the server's handler returns, which Shutdown shows by
// stopping gRPC gracefully within its time (a handler still running
// would hold GracefulStop until the context cut it).
func TestGRPCStreamCancel(t *testing.T) {
	gs := startGRPC(t, tinyConfig(nil))
	ctx, cancel := context.WithCancel(grpcCtx(t))
	stream, err := gs.client.ModelStreamInfer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req := rawRequest(1, floats(3*224*224, 0.4))
	req.Id = "first"
	if err := stream.Send(req); err != nil {
		t.Fatal(err)
	}
	if r, err := stream.Recv(); err != nil || r.ErrorMessage != "" || r.InferResponse.Id != "first" {
		t.Fatalf("first response: %v %v", r, err)
	}
	cancel()
	if _, err := stream.Recv(); status.Code(err) != codes.Canceled {
		t.Errorf("Recv after cancel: %v, want Canceled", err)
	}
	sctx, scancel := contextWithTimeout(10 * time.Second)
	defer scancel()
	if err := gs.StopGRPC(sctx); err != nil {
		t.Errorf("StopGRPC after the stream was cancelled: %v", err)
	}
}

// At StopGRPC a stream's request in progress is answered, then the
// stream ends Unavailable; StopGRPC does not wait for the client to
// close it.
func TestGRPCStreamDrain(t *testing.T) {
	gs := startGRPC(t, tinyConfig(func(c *config.Config) {
		c.Models[0].Batcher.MaxDelay = 300 * time.Millisecond // the request waits for its batch
	}))
	ctx := grpcCtx(t)
	stream, err := gs.client.ModelStreamInfer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req := rawRequest(1, floats(3*224*224, 0.6))
	req.Id = "in-progress"
	if err := stream.Send(req); err != nil {
		t.Fatal(err)
	}
	if _, ok := testbed.WaitFor(5*time.Second, func() bool { return gs.model("tiny").QueueDepth() > 0 }); !ok {
		t.Fatal("the request never queued")
	}
	stopped := make(chan error, 1)
	go func() {
		sctx, cancel := contextWithTimeout(10 * time.Second)
		defer cancel()
		stopped <- gs.StopGRPC(sctx)
	}()
	if r, err := stream.Recv(); err != nil || r.ErrorMessage != "" || r.InferResponse.Id != "in-progress" {
		t.Fatalf("the request in progress at the stop: %v %v", r, err)
	}
	_, err = stream.Recv()
	wantCode(t, err, codes.Unavailable, "shutting down")
	if err := <-stopped; err != nil {
		t.Errorf("StopGRPC: %v", err)
	}
}
