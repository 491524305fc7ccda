package server

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/inferd/inferd/inferencepb"
)

// grpcStreamInFlight bounds the requests of one ModelStreamInfer served at
// once: beyond it the stream reads no further request until one finishes,
// and HTTP/2 flow control holds the client back. It is what lets one
// stream fill batches, and what caps the memory budget one stream holds
// (each request reserves on it as a unary ModelInfer does).
const grpcStreamInFlight = 64

// ModelStreamInfer serves a bidirectional stream of inferences, as Triton
// does for models that are not decoupled: each request is served as a
// unary ModelInfer (the same admission, memory budget, checks, batcher,
// deadline, priority, classification, cache and statistics), up to
// grpcStreamInFlight at once, so that a client streaming many requests has
// them batched together. Each gets one response, sent as it completes:
// not in the order the requests came, so clients match them by id, as
// Triton's clients do. A failed request answers error_message (the text a
// unary call's status carries) with infer_response holding its id, model
// name and version; the stream goes on.
//
// The stream's deadline bounds each request's (with its own
// parameters.timeout, the shorter wins); when the client cancels, no
// further request is read and those in progress finish before the stream
// ends (a queued job is not withdrawn). The client's half-close ends the
// stream (OK) once every request is answered; StopGRPC ends it
// (Unavailable) once those in progress are. Each request is counted in the
// request metrics as a unary ModelInfer (protocol="grpc",
// endpoint="infer"); the stream itself is not.
//
// Raw inputs alias the received message as for ModelInfer
// (grpc_codec.go): each request is received into its own grpcInferCall,
// released when its response is sent.
func (g *grpcService) ModelStreamInfer(stream inferencepb.GRPCInferenceService_ModelStreamInferServer) error {
	ctx := stream.Context()
	stop := g.s.grpcStop()
	slots := make(chan struct{}, grpcStreamInFlight) // held from before a request is read until it is answered
	done := make(chan struct{})                      // closed when the handler stops taking requests
	recvd := make(chan streamRecv)

	// The receiver: one RecvMsg at a time (grpc-go allows one receiving
	// goroutine), each after a slot is free. It may outlive the handler,
	// blocked in RecvMsg until grpc-go ends the stream; what it receives
	// then is released unanswered (the stream has ended with a status).
	go func() {
		for {
			select {
			case slots <- struct{}{}:
			case <-done:
				return
			}
			select {
			case <-done:
				return
			default:
			}
			call := new(grpcInferCall)
			err := stream.RecvMsg(call)
			if err != nil {
				call = nil
			}
			select {
			case recvd <- streamRecv{call, err}:
				if err != nil {
					return
				}
			case <-done:
				if call != nil {
					call.release()
				}
				return
			}
		}
	}()

	var (
		wg      sync.WaitGroup
		sendMu  sync.Mutex            // grpc-go forbids concurrent Send on one stream
		sendErr error                 // the first failed Send; under sendMu
		failed  = make(chan struct{}) // closed by the first failed Send
	)
	send := func(r *inferencepb.ModelStreamInferResponse) {
		sendMu.Lock()
		defer sendMu.Unlock()
		if sendErr != nil {
			return
		}
		if sendErr = stream.Send(r); sendErr != nil {
			close(failed)
		}
	}
	var end error
loop:
	for {
		select {
		case r := <-recvd:
			if r.err != nil {
				if !errors.Is(r.err, io.EOF) {
					end = r.err
				}
				break loop
			}
			wg.Go(func() {
				defer func() { <-slots }()
				defer r.call.release()
				send(g.streamRequest(stream, r.call))
			})
		case <-failed:
			break loop // sendErr says why
		case <-stop:
			end = status.Error(codes.Unavailable, "server shutting down: requests not answered were not served, send them again")
			break loop
		case <-ctx.Done():
			end = status.FromContextError(ctx.Err()).Err()
			break loop
		}
	}
	close(done)
	wg.Wait()
	if end == nil {
		sendMu.Lock()
		end = sendErr
		sendMu.Unlock()
	}
	return end
}

// streamRequest serves one request of a stream and counts it in the
// request metrics, as grpcUnary does a ModelInfer.
func (g *grpcService) streamRequest(stream inferencepb.GRPCInferenceService_ModelStreamInferServer, call *grpcInferCall) *inferencepb.ModelStreamInferResponse {
	s := g.s
	pr := &call.req
	start := time.Now()
	s.stats.inFlight.Inc()
	var resp *inferencepb.ModelInferResponse
	err := call.refused // the budget could not hold its decoding: pr is empty
	if err == nil {
		resp, _, err = g.infer(stream.Context(), pr)
	}
	s.stats.inFlight.Dec()
	code := http.StatusOK
	if err != nil {
		code, _, err = grpcError(err)
	}
	s.stats.observeProto(s.grpcModelLabel(pr), epInfer, code, protoGRPC, time.Since(start))
	if err != nil {
		return &inferencepb.ModelStreamInferResponse{
			ErrorMessage:  status.Convert(err).Message(),
			InferResponse: &inferencepb.ModelInferResponse{ModelName: pr.ModelName, ModelVersion: pr.ModelVersion, Id: pr.Id},
		}
	}
	return &inferencepb.ModelStreamInferResponse{InferResponse: resp}
}

// grpcStop returns the channel StopGRPC closes.
func (s *Server) grpcStop() <-chan struct{} {
	s.grpc.mu.Lock()
	defer s.grpc.mu.Unlock()
	return s.grpc.stop
}

// streamRecv is what a stream's receiver hands its handler: a request, or
// the error that ended receiving (io.EOF: the client half-closed).
type streamRecv struct {
	call *grpcInferCall
	err  error
}
